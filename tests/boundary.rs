//! The boundary between a std host and its guest: host code reached from
//! guest code (the callback, host handlers) runs with the host's thread
//! pointer, on a stack of sud's with room to spare, and a panic there ends
//! the process with its message; faults go to whoever's code faulted; and
//! misuse is a typed error.  Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::guest::GuestTls;
use common::{Ends, isolated, isolated_output};
use linux_raw_sys::general::{
    __NR_arch_prctl, __NR_getppid, __NR_tgkill, ARCH_SET_FS, SA_RESTORER, SA_SIGINFO, SIGSEGV,
    SIGUSR1,
};
use std::cell::Cell;
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use sud::{Action, Error, SELECTOR, Syscall, Thread};

/// `ARCH_GET_FS` (arch/x86/include/uapi/asm/prctl.h; linux-raw-sys has only
/// ARCH_SET_FS).
const ARCH_GET_FS: u32 = 0x1003;

core::arch::global_asm!(
    include_str!("common/pointers.s"),
    NR_ARCH_PRCTL = const __NR_arch_prctl,
    NR_GETPPID = const __NR_getppid,
    NR_TGKILL = const __NR_tgkill,
    ARCH_SET_FS = const ARCH_SET_FS,
    ARCH_GET_FS = const ARCH_GET_FS,
);

unsafe extern "C" {
    /// See `common/pointers.s`.
    fn guest_with_own_fs(fs: u64, getppids: u64, pid: u64, tid: u64, signal: u64) -> u64;
}

/// What the emulated getppid answers.
const FAKE_PPID: usize = 4242;

thread_local! {
    /// The host's thread-locals, as the callback and host handlers use them.
    static CALLBACKS: Cell<u64> = const { Cell::new(0) };
    static HOST_HANDLED: Cell<u64> = const { Cell::new(0) };
}
/// What the callback saw, kept as std code keeps things.
static SEEN: Mutex<Option<HashMap<u32, u64>>> = Mutex::new(None);

/// A callback that uses what std code uses: thread-locals, a lock, a
/// HashMap, formatting and stderr.
fn std_callback(call: &mut Syscall) -> Action {
    let nr = call.number();
    CALLBACKS.with(|count| count.set(count.get() + 1));
    *SEEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(nr)
        .or_default() += 1;
    let call_addr = format!("{:#x}", call.call_addr());
    eprintln!("callback: syscall {nr} at {call_addr}");
    if nr == __NR_getppid {
        Action::Emulate(FAKE_PPID)
    } else {
        Action::Reissue
    }
}

/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn std_host_handler(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
    HOST_HANDLED.with(|count| count.set(count.get() + 1));
}

/// The guest moves FS to a thread area of its own and makes 8 trapped
/// getppids and a tgkill: natively (unarmed) and under sud, it reads back
/// the FS it set, and nothing writes its thread area; under sud the
/// callback and the host handler find the host's thread-locals (every
/// callback counted, the handler once).
fn guest_thread_pointer_is_the_guests(blocked: impl Fn(&dyn Fn() -> u64) -> u64) {
    let (pid, tid) = (std::process::id() as u64, common::gettid() as u64);
    let native = GuestTls::new();
    // SAFETY: the guest code restores FS before it returns.
    let read_back = unsafe { guest_with_own_fs(native.fs(), 8, pid, tid, 0) };
    assert_eq!(read_back, native.fs(), "natively, ARCH_GET_FS reads back");
    assert!(native.untouched());

    sud::install_host_handler(SIGUSR1, std_host_handler, 0, 0).unwrap();
    let tls = GuestTls::new();
    // SAFETY: as above; every syscall it makes is trapped and reissued,
    // getppid emulated.
    let read_back =
        blocked(&|| unsafe { guest_with_own_fs(tls.fs(), 8, pid, tid, SIGUSR1 as u64) });
    assert_eq!(read_back, tls.fs(), "under sud, ARCH_GET_FS reads back");
    assert!(
        tls.untouched(),
        "host code wrote into the guest's thread area"
    );
    // getppid 8 times, arch_prctl 4 times, tgkill once.
    assert_eq!(CALLBACKS.with(Cell::get), 13);
    assert_eq!(HOST_HANDLED.with(Cell::get), 1);
    let seen = SEEN.lock().unwrap();
    assert_eq!(seen.as_ref().unwrap()[&__NR_getppid], 8);
}

/// The guest's thread pointer test on the global path (`sud::arm`).
fn on_the_global_path() {
    sud::install(std_callback).unwrap();
    sud::arm().unwrap();
    guest_thread_pointer_is_the_guests(|guest| {
        // SAFETY: only the guest code runs until allow().
        unsafe { SELECTOR.block() };
        let out = guest();
        SELECTOR.allow();
        out
    });
    sud::disarm().unwrap();
}

#[test]
fn host_code_runs_with_the_hosts_thread_pointer_on_the_global_path() {
    isolated(
        "host_code_runs_with_the_hosts_thread_pointer_on_the_global_path",
        Ends::Passing,
        on_the_global_path,
    );
}

/// The same where the thread pointers are switched through arch_prctl, as
/// on a machine without FSGSBASE.
#[test]
fn host_code_runs_with_the_hosts_thread_pointer_through_arch_prctl() {
    isolated(
        "host_code_runs_with_the_hosts_thread_pointer_through_arch_prctl",
        Ends::Passing,
        || {
            sud::__thread_pointers_through_arch_prctl();
            on_the_global_path();
        },
    );
}

#[test]
fn host_code_runs_with_the_hosts_thread_pointer_on_a_thread() {
    isolated(
        "host_code_runs_with_the_hosts_thread_pointer_on_a_thread",
        Ends::Passing,
        || {
            sud::install(std_callback).unwrap();
            let thread = Thread::new().unwrap();
            thread.arm().unwrap();
            guest_thread_pointer_is_the_guests(|guest| common::guest::blocked(&thread, guest));
        },
    );
}

/// The callback on the global path runs on sud's stack, with room for 32 KiB
/// of locals (std's own alternate stack, which it used to run on, has 8).
#[test]
fn callback_with_32_kib_of_locals_on_the_global_path() {
    isolated(
        "callback_with_32_kib_of_locals_on_the_global_path",
        Ends::Passing,
        || {
            static SUM: AtomicU64 = AtomicU64::new(0);
            sud::install(|call| {
                let mut locals = [0u8; 32 * 1024];
                for (i, byte) in std::hint::black_box(&mut locals).iter_mut().enumerate() {
                    *byte = i as u8;
                }
                let sum: u64 = std::hint::black_box(&locals)
                    .iter()
                    .map(|&b| b as u64)
                    .sum();
                SUM.store(sum, Ordering::SeqCst);
                if call.number() == __NR_getppid {
                    Action::Emulate(FAKE_PPID)
                } else {
                    Action::Reissue
                }
            })
            .unwrap();
            sud::arm().unwrap();
            // SAFETY: only the trapped getppid runs until allow().
            unsafe { SELECTOR.block() };
            let ppid = common::guest::trapped_getppid();
            SELECTOR.allow();
            sud::disarm().unwrap();
            assert_eq!(ppid, Ok(FAKE_PPID));
            assert_eq!(SUM.load(Ordering::SeqCst), 128 * 255 * 128);
        },
    );
}

/// Runs `body` in a process of its own, which must die of SIGABRT with
/// `message` on stderr, soon.
fn aborts_with(name: &str, message: &str, body: impl FnOnce()) {
    let Some(out) = isolated_output(name, Duration::from_secs(20), body) else {
        return;
    };
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "ended {}; stderr:\n{}",
        out.status,
        out.stderr
    );
    assert!(out.stderr.contains(message), "stderr:\n{}", out.stderr);
}

#[test]
fn panicking_callback_aborts_with_its_message() {
    aborts_with(
        "panicking_callback_aborts_with_its_message",
        "the callback panics on purpose",
        || {
            sud::install(|_| panic!("the callback panics on purpose")).unwrap();
            sud::arm().unwrap();
            // SAFETY: the trapped getppid is meant to reach the callback.
            unsafe { SELECTOR.block() };
            let _ = common::guest::trapped_getppid();
            SELECTOR.allow();
        },
    );
}

#[test]
fn panicking_redirect_function_aborts_with_its_message() {
    aborts_with(
        "panicking_redirect_function_aborts_with_its_message",
        "the redirect function panics on purpose",
        || {
            sud::install(|_| Action::Redirect).unwrap();
            sud::install_redirect(|_| panic!("the redirect function panics on purpose")).unwrap();
            sud::arm().unwrap();
            // SAFETY: the trapped getppid is meant to be redirected.
            unsafe { SELECTOR.block() };
            let _ = common::guest::trapped_getppid();
            SELECTOR.allow();
        },
    );
}

#[test]
fn panicking_host_handler_aborts_with_its_message() {
    /// # Safety
    /// Only the kernel calls it, as a signal handler with its frame.
    unsafe extern "C" fn panics(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
        panic!("the host handler panics on purpose");
    }
    aborts_with(
        "panicking_host_handler_aborts_with_its_message",
        "the host handler panics on purpose",
        || {
            sud::install(|_| Action::Reissue).unwrap();
            sud::install_host_handler(SIGUSR1, panics, 0, 0).unwrap();
            let thread = common::guest::armed_thread();
            let _ = common::signals::raise_as_guest(&thread, SIGUSR1);
        },
    );
}

/// Host code that prints while the selector says BLOCK, with every trapped
/// syscall denied: its write fails, its panic cannot print or abort by
/// signal, and it ends (glibc's abort falls back on `hlt`, a fault, whose
/// default action is taken) instead of spinning in std's fault handler.
#[test]
fn println_under_block_with_the_default_deny_ends() {
    let Some(out) = isolated_output(
        "println_under_block_with_the_default_deny_ends",
        Duration::from_secs(20),
        || {
            sud::install(|_| Action::default()).unwrap();
            sud::arm().unwrap();
            // SAFETY: host code under BLOCK on purpose.
            unsafe { SELECTOR.block() };
            println!("printed under BLOCK");
            SELECTOR.allow();
        },
    ) else {
        return;
    };
    assert!(!out.status.success(), "the child ended {}", out.status);
}

#[test]
fn misuse_is_a_typed_error() {
    isolated("misuse_is_a_typed_error", Ends::Passing, || {
        // No SIGSYS handler: arming is refused, and the thread is not armed.
        assert_eq!(sud::arm(), Err(Error::NotInstalled));
        let thread = Thread::new().unwrap();
        assert_eq!(thread.arm(), Err(Error::NotInstalled));
        sud::install(|_| Action::Emulate(FAKE_PPID)).unwrap();
        // One state per thread: a second Thread, or the global path on top.
        assert_eq!(Thread::new().err(), Some(Error::AlreadyManaged));
        assert_eq!(sud::arm(), Err(Error::AlreadyManaged));
        thread.arm().unwrap();
        assert_eq!(
            common::guest::blocked(&thread, common::guest::trapped_getppid),
            Ok(FAKE_PPID)
        );
        drop(thread);
        sud::arm().unwrap();
        assert_eq!(Thread::new().err(), Some(Error::AlreadyManaged));
        sud::disarm().unwrap();
        let thread = Thread::new().unwrap();
        drop(thread);
    });
}

/// How many times the guest's SIGSEGV handler ran, and at what address.
static GUEST_FAULTS: AtomicUsize = AtomicUsize::new(0);
static GUEST_FAULT_ADDR: AtomicU64 = AtomicU64::new(1);

/// The guest's SIGSEGV handler: steps over the faulting load (8 bytes).
extern "C" fn guest_segv_handler(_: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo and ucontext, as sud passes them on.
    unsafe {
        GUEST_FAULT_ADDR.store((*info).si_addr() as u64, Ordering::SeqCst);
        let uc = uc as *mut libc::ucontext_t;
        (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] += 8;
    }
    GUEST_FAULTS.fetch_add(1, Ordering::SeqCst);
}

/// A load from address 0: `mov rax, [0]`, 8 bytes.
fn load_from_null() -> u64 {
    let value: u64;
    // SAFETY: faults, on purpose; a handler steps over it.
    unsafe { core::arch::asm!("mov {}, qword ptr [0]", out(reg) value) };
    value
}

/// A fault in guest code goes to the guest's own handler, as natively, even
/// though the host (std) has a SIGSEGV handler of its own.
#[test]
fn guest_fault_goes_to_the_guests_handler() {
    isolated(
        "guest_fault_goes_to_the_guests_handler",
        Ends::Passing,
        || {
            sud::install(|_| Action::Reissue).unwrap();
            // std's SIGSEGV handler, a host handler from now on (install adopts
            // it already; this says so for older versions too).
            sud::adopt_signal(SIGSEGV).unwrap();
            let thread = common::guest::armed_thread();
            let action = common::signals::KernelSigaction {
                handler: guest_segv_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0,
                mask: 0,
            };
            let (set, _) = common::guest::blocked(&thread, || {
                common::signals::guest_rt_sigaction(SIGSEGV, Some(&action))
            });
            assert_eq!(set, Ok(0));
            common::guest::blocked(&thread, || std::hint::black_box(load_from_null()));
            assert_eq!(GUEST_FAULTS.load(Ordering::SeqCst), 1);
            assert_eq!(GUEST_FAULT_ADDR.load(Ordering::SeqCst), 0);
        },
    );
}

/// A fault in guest code with no guest handler takes the default action, as
/// natively (std's handler, which is the host's, is not run for it: under
/// BLOCK its own syscalls would be trapped).
#[test]
fn guest_fault_without_a_handler_is_fatal() {
    let Some(out) = isolated_output(
        "guest_fault_without_a_handler_is_fatal",
        Duration::from_secs(20),
        || {
            sud::install(|_| Action::default()).unwrap();
            let thread = common::guest::armed_thread();
            common::guest::blocked(&thread, || std::hint::black_box(load_from_null()));
        },
    ) else {
        return;
    };
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "ended {}; stderr:\n{}",
        out.status,
        out.stderr
    );
}

/// A fault in host code still reaches the host's handler: std's, which
/// reports a stack overflow of an armed thread and aborts.
#[test]
fn host_stack_overflow_is_reported_by_std() {
    #[allow(unconditional_recursion)]
    fn recurse(depth: u64) -> u64 {
        let frame = std::hint::black_box([depth; 64]);
        recurse(frame[0] + 1) + frame[63]
    }
    aborts_with(
        "host_stack_overflow_is_reported_by_std",
        "has overflowed its stack",
        || {
            sud::install(|_| Action::Reissue).unwrap();
            sud::arm().unwrap();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(|| {
                    sud::arm().unwrap();
                    recurse(0)
                })
                .unwrap()
                .join()
                .unwrap();
        },
    );
}
