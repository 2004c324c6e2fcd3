//! sud's demonstration: guest machine code, written at run time into an
//! mmap'd page, makes raw `syscall`s under Syscall User Dispatch; each one
//! is trapped, shown, and emulated, reissued or denied by a Rust callback.
//!
//!     cargo run --release --example demo

#![allow(non_upper_case_globals)]

use linux_raw_sys::general::{
    __NR_getpid, __NR_getppid, __NR_mmap, __NR_mprotect, __NR_munmap, __NR_openat, __NR_write,
    AT_FDCWD, MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use sud::{Action, Errno, Syscall, host};

/// A syscall number no kernel has.
const NR_MISSING: u32 = 500;
/// What the emulated getppid answers.
const FAKE_PPID: usize = 4242;

/// One trapped call, as the callback saw it.
#[derive(Clone, Copy)]
struct Trap {
    number: u32,
    args: [usize; 6],
    call_addr: usize,
    action: Action,
}

/// The callback's log: filled in signal context, without locks or allocation.
struct Log {
    len: AtomicUsize,
    traps: [std::cell::Cell<Option<Trap>>; 16],
}
// SAFETY: only the guest's thread writes, and only while the main code waits
// for the guest; the main code reads after the guest returned.
unsafe impl Sync for Log {}

static LOG: Log = Log {
    len: AtomicUsize::new(0),
    traps: [const { std::cell::Cell::new(None) }; 16],
};
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The policy: emulate getppid, let write and getpid run, refuse file opens,
/// and deny (ENOSYS) anything else.
fn on_syscall(call: &mut Syscall) -> Action {
    let action = match call.number() {
        __NR_getppid => Action::Emulate(FAKE_PPID),
        __NR_write | __NR_getpid => Action::Reissue,
        __NR_openat => Action::Deny(Errno::EACCES),
        _ => Action::default(),
    };
    if !COUNTING.load(Ordering::Relaxed) {
        let i = LOG.len.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = LOG.traps.get(i) {
            slot.set(Some(Trap {
                number: call.number(),
                args: call.args(),
                call_addr: call.call_addr(),
                action,
            }));
        }
    }
    action
}

/// A few x86-64 instructions, encoded by hand.
struct Code(Vec<u8>);

impl Code {
    /// `mov r32, imm32` for eax (0), edx (2), esi (6), edi (7).
    fn mov_imm32(&mut self, reg: u8, imm: u32) {
        self.0.push(0xb8 + reg);
        self.0.extend_from_slice(&imm.to_le_bytes());
    }
    /// `mov r64, imm64` for rsi (6), rdi (7), rdx (2).
    fn mov_imm64(&mut self, reg: u8, imm: u64) {
        self.0.extend_from_slice(&[0x48, 0xb8 + reg]);
        self.0.extend_from_slice(&imm.to_le_bytes());
    }
    fn syscall(&mut self) {
        self.0.extend_from_slice(&[0x0f, 0x05]);
    }
    /// `mov [rbx + 8*slot], rax`: keep a result in the caller's array.
    fn store_rax(&mut self, slot: u8) {
        self.0.extend_from_slice(&[0x48, 0x89, 0x43, slot * 8]);
    }
    fn prologue(&mut self) {
        self.0.extend_from_slice(&[0x53, 0x48, 0x89, 0xfb]); // push rbx; mov rbx, rdi
    }
    fn epilogue(&mut self) {
        self.0.extend_from_slice(&[0x5b, 0xc3]); // pop rbx; ret
    }
}

/// An executable page holding `code`, mapped and protected with sud's own
/// (never dispatched) syscalls.
struct Page(*mut u8);

impl Page {
    fn new(code: &[u8]) -> Page {
        assert!(code.len() <= 4096);
        // SAFETY: a fresh anonymous mapping, written then made executable.
        unsafe {
            let page = host::syscall6(
                __NR_mmap,
                0,
                4096,
                (PROT_READ | PROT_WRITE) as usize,
                (MAP_PRIVATE | MAP_ANONYMOUS) as usize,
                usize::MAX,
                0,
            )
            .expect("mmap") as *mut u8;
            page.copy_from_nonoverlapping(code.as_ptr(), code.len());
            host::syscall3(
                __NR_mprotect,
                page as usize,
                4096,
                (PROT_READ | PROT_EXEC) as usize,
            )
            .expect("mprotect");
            Page(page)
        }
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.0 as usize..self.0 as usize + 4096
    }

    /// Runs the page as `extern "C" fn(*mut u64)` with the selector at BLOCK.
    fn run_blocked(&self, results: &mut [u64]) {
        // SAFETY: the page holds a complete function of that type; every
        // syscall it makes is trapped and answered by on_syscall.
        unsafe {
            let f: extern "C" fn(*mut u64) = std::mem::transmute(self.0);
            sud::SELECTOR.block();
            f(results.as_mut_ptr());
            sud::SELECTOR.allow();
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing runs from it any more.
        unsafe { host::syscall2(__NR_munmap, self.0 as usize, 4096).expect("munmap") };
    }
}

fn name(number: u32) -> &'static str {
    match number {
        __NR_getppid => "getppid",
        __NR_getpid => "getpid",
        __NR_write => "write",
        __NR_openat => "openat",
        NR_MISSING => "syscall 500",
        _ => "?",
    }
}

fn main() -> Result<(), sud::Error> {
    let support = sud::support();
    println!(
        "kernel: syscall user dispatch {}, inclusive mode {}",
        if support.exclusive { "yes" } else { "no" },
        if support.inclusive { "yes" } else { "no" }
    );
    let region = sud::allowed_region();
    println!(
        "allowed region: {:#x}..{:#x} ({} bytes); selector `sud_selector` at {:p}",
        region.start,
        region.end,
        region.len(),
        sud::SELECTOR.as_ptr()
    );

    // The guest: five raw syscalls, each result kept in results[i].
    let message = b"  guest: hello from guest code (a reissued write)\n";
    let path = b"/etc/passwd\0";
    let mut code = Code(Vec::new());
    code.prologue();
    code.mov_imm32(0, __NR_getppid);
    code.syscall();
    code.store_rax(0);
    code.mov_imm32(0, __NR_write);
    code.mov_imm32(7, 1);
    code.mov_imm64(6, message.as_ptr() as u64);
    code.mov_imm32(2, message.len() as u32);
    code.syscall();
    code.store_rax(1);
    code.mov_imm32(0, __NR_getpid);
    code.syscall();
    code.store_rax(2);
    code.mov_imm32(0, __NR_openat);
    code.mov_imm64(7, AT_FDCWD as i64 as u64);
    code.mov_imm64(6, path.as_ptr() as u64);
    code.mov_imm32(2, 0);
    code.syscall();
    code.store_rax(3);
    code.mov_imm32(0, NR_MISSING);
    code.syscall();
    code.store_rax(4);
    code.epilogue();
    let guest = Page::new(&code.0);
    println!(
        "guest code: {} bytes at {:#x}",
        code.0.len(),
        guest.range().start
    );

    sud::install(on_syscall)?;
    sud::arm()?;
    let mut results = [0u64; 5];
    guest.run_blocked(&mut results);

    println!("\ntrapped syscalls:");
    for (i, slot) in LOG
        .traps
        .iter()
        .take(LOG.len.load(Ordering::Relaxed))
        .enumerate()
    {
        let trap = slot.get().expect("logged");
        let outcome = match trap.action {
            Action::Emulate(v) => format!("emulated -> {v}"),
            Action::Reissue => format!("reissued -> {}", results[i] as i64),
            Action::Deny(e) => format!("denied -> {e}"),
            _ => unreachable!(),
        };
        let args = trap.args[..3]
            .iter()
            .map(|a| format!("{a:#x}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "  {:<12} ({args}) from guest+{:#x}: {outcome}",
            name(trap.number),
            trap.call_addr - guest.range().start,
        );
        assert!(guest.range().contains(&trap.call_addr));
    }
    let pid = std::process::id() as u64;
    assert_eq!(
        results,
        [
            FAKE_PPID as u64,
            message.len() as u64,
            pid,
            Errno::EACCES.to_syscall_result() as u64,
            Errno::ENOSYS.to_syscall_result() as u64,
        ]
    );

    // Cost: a one-syscall guest, run many times, emulated vs. reissued, next
    // to the same syscall made natively with dispatch off.
    let mut one = Code(Vec::new());
    one.prologue();
    one.mov_imm32(0, __NR_getppid);
    one.syscall();
    one.store_rax(0);
    one.epilogue();
    let one_getppid = Page::new(&one.0);
    let mut pid_code = Code(Vec::new());
    pid_code.prologue();
    pid_code.mov_imm32(0, __NR_getpid);
    pid_code.syscall();
    pid_code.store_rax(0);
    pid_code.epilogue();
    let one_getpid = Page::new(&pid_code.0);

    COUNTING.store(true, Ordering::Relaxed);
    const N: u32 = 100_000;
    let time = |page: &Page, blocked: bool| {
        let mut r = [0u64; 1];
        let start = Instant::now();
        for _ in 0..N {
            if blocked {
                page.run_blocked(&mut r);
            } else {
                // SAFETY: the page is a complete `extern "C" fn(*mut u64)`.
                let f: extern "C" fn(*mut u64) = unsafe { std::mem::transmute(page.0) };
                f(r.as_mut_ptr());
            }
        }
        (start.elapsed().as_nanos() as f64 / N as f64, r[0])
    };
    let (emulate_ns, v) = time(&one_getppid, true);
    assert_eq!(v, FAKE_PPID as u64);
    let (reissue_ns, v) = time(&one_getpid, true);
    assert_eq!(v, pid);
    sud::disarm()?;
    let (native_ns, _) = time(&one_getpid, false);
    println!(
        "\ncost per guest syscall: emulate {emulate_ns:.0} ns, reissue {reissue_ns:.0} ns, native (unarmed) {native_ns:.0} ns"
    );
    Ok(())
}
