//! What a freestanding test executable needs besides sud: `_start`, output,
//! exit, a panic handler, the memory functions the compiler calls, and a
//! harness that runs each case in a forked child and checks how it ended.
//! Every syscall here goes through sud's trampolines (`sud::host`), so the
//! harness keeps working while a case has its thread armed and blocked.

#![no_std]

use core::fmt::{self, Write};
use linux_raw_sys::general::{
    __NR_clone, __NR_exit_group, __NR_prlimit64, __NR_wait4, __NR_write, RLIMIT_CORE, SIGCHLD,
};
use sud::host;

core::arch::global_asm!(
    "
    .text
    .globl _start
    .type _start, @function
_start:
    xor ebp, ebp                # the outermost frame: no caller to unwind to
    mov rdi, rsp                # argc, argv and envp lie at the initial stack pointer
    and rsp, -16                # the ABI wants a 16-byte aligned stack at each call
    call {entry}                # never returns
    ud2                         # so this is never reached
    .size _start, . - _start
    ",
    entry = sym entry,
);

unsafe extern "Rust" {
    /// Each test executable's list of cases.
    safe fn test_main() -> i32;
}

extern "C" fn entry(_stack: *const usize) -> ! {
    // No core dumps from the cases that are meant to die of a signal.
    let no_core = [0u64; 2];
    // SAFETY: prlimit64 on ourselves with a valid rlimit.
    let _ = unsafe {
        host::syscall4(
            __NR_prlimit64,
            0,
            RLIMIT_CORE as usize,
            no_core.as_ptr() as usize,
            0,
        )
    };
    exit(test_main())
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group does not return.
    unsafe {
        let _ = host::syscall1(__NR_exit_group, code as usize);
    }
    unreachable!()
}

/// Standard output, unbuffered.
pub struct Stdout;

impl Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            // SAFETY: writes from a live buffer.
            match unsafe { host::syscall3(__NR_write, 1, rest.as_ptr() as usize, rest.len()) } {
                Ok(n) => rest = &rest[n..],
                Err(sud::Errno::EINTR) => {}
                Err(_) => return Err(fmt::Error),
            }
        }
        Ok(())
    }
}

/// `println!` for freestanding code.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Stdout, $($arg)*);
    }};
}

/// Fails the case (exit 1) with the location and a message unless `cond`.
#[macro_export]
macro_rules! check {
    ($cond:expr) => { $crate::check!($cond, "{}", stringify!($cond)) };
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::say!("  check failed at {}:{}: {}", file!(), line!(), format_args!($($arg)*));
            $crate::exit(1);
        }
    };
}

/// Fails the case unless `left == right`, showing both.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        $crate::check!(
            *left == *right,
            "{} == {}: {:?} != {:?}",
            stringify!($left),
            stringify!($right),
            left,
            right
        );
    }};
}

/// How a case must end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// Exit status 0.
    Pass,
    /// Killed by this signal.
    Signal(u32),
}

/// One test case: runs in a child process of its own.
pub struct Case {
    pub name: &'static str,
    pub run: fn(),
    pub expect: Expect,
}

/// A case that must exit 0.
#[macro_export]
macro_rules! case {
    ($name:ident) => {
        $crate::Case {
            name: stringify!($name),
            run: $name,
            expect: $crate::Expect::Pass,
        }
    };
    ($name:ident, signal $sig:expr) => {
        $crate::Case {
            name: stringify!($name),
            run: $name,
            expect: $crate::Expect::Signal($sig),
        }
    };
}

/// Runs every case in a forked child, prints `ok NAME` or `FAIL NAME: ...`
/// for each, and returns the number of failures.
pub fn run(cases: &[Case]) -> i32 {
    let mut failures = 0;
    for case in cases {
        // SAFETY: fork (clone with SIGCHLD); this process has a single thread.
        let pid = unsafe { host::syscall5(__NR_clone, SIGCHLD as usize, 0, 0, 0, 0) }
            .unwrap_or_else(|e| panic!("fork: {e}"));
        if pid == 0 {
            (case.run)();
            exit(0);
        }
        let mut status = 0i32;
        // SAFETY: waits for our own child, writing the status to a live int.
        unsafe { host::syscall4(__NR_wait4, pid, &mut status as *mut i32 as usize, 0, 0) }
            .unwrap_or_else(|e| panic!("wait4: {e}"));
        let ended = if status & 0x7f == 0 {
            Ended::Exit((status >> 8) & 0xff)
        } else {
            Ended::Signal((status & 0x7f) as u32)
        };
        let good = match (case.expect, ended) {
            (Expect::Pass, Ended::Exit(0)) => true,
            (Expect::Signal(want), Ended::Signal(got)) => want == got,
            _ => false,
        };
        if good {
            say!("ok {}", case.name);
        } else {
            say!(
                "FAIL {}: expected {:?}, ended {:?}",
                case.name,
                case.expect,
                ended
            );
            failures += 1;
        }
    }
    failures
}

#[derive(Clone, Copy, Debug)]
enum Ended {
    Exit(i32),
    Signal(u32),
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    say!("panic: {info}");
    exit(101)
}

/// Referenced by the unwind tables of the precompiled `core`; with
/// panic = "abort" nothing ever calls it.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

// The memory functions the compiler emits calls to; without libc, these.

/// # Safety
/// The C contract of `memcpy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller passes valid, non-overlapping buffers of n bytes.
    unsafe {
        core::arch::asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _,
            inout("rcx") n => _, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// The C contract of `memmove`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: copying forwards is safe when dst does not start inside src.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: copy backwards (DF set, then cleared again as the ABI requires).
    unsafe {
        core::arch::asm!("std", "rep movsb", "cld", inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _, inout("rcx") n => _, options(nostack));
    }
    dst
}

/// # Safety
/// The C contract of `memset`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, byte: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller passes a valid buffer of n bytes.
    unsafe {
        core::arch::asm!("rep stosb", inout("rdi") dst => _, in("al") byte as u8,
            inout("rcx") n => _, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// The C contract of `memcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller passes valid buffers of n bytes; volatile keeps
        // the compiler from turning this loop back into a memcmp call.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// # Safety
/// The C contract of `bcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
