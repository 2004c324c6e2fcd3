//! What a freestanding test executable needs besides sud: `_start`, output,
//! exit, a panic handler and the memory functions (from
//! `sud::freestanding`), and a harness that runs each case in a forked child
//! and checks how it ended.  Every syscall here goes through sud's
//! trampolines (`sud::host`), so the harness keeps working while a case has
//! its thread armed and blocked.

#![no_std]

use core::sync::atomic::{AtomicPtr, Ordering};
use linux_raw_sys::general::{
    __NR_clone, __NR_dup2, __NR_prlimit64, __NR_wait4, RLIMIT_CORE, SIGCHLD,
};
use sud::freestanding::Startup;
pub use sud::freestanding::{Stdout, exit};
use sud::host;

// `_start`, the panic handler and the memory functions.
sud::freestanding::entry!(entry);

unsafe extern "Rust" {
    /// Each test executable's list of cases.
    safe fn test_main() -> i32;
}

/// What `entry` was given, in its frame, which lasts as long as the program.
static STARTUP: AtomicPtr<Startup> = AtomicPtr::new(core::ptr::null_mut());

/// What the process started with: its arguments, environment, auxiliary vector.
pub fn startup() -> Startup {
    // SAFETY: set by `entry` before `test_main` runs, to a value in its
    // frame, which stays until the process ends.
    unsafe { *STARTUP.load(Ordering::Acquire) }
}

fn entry(mut startup: Startup) -> i32 {
    STARTUP.store(&mut startup, Ordering::Release);
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
    // Panic messages go to stderr; the driver shows stdout: one stream.
    // SAFETY: dup2 of our own stdout onto stderr.
    let _ = unsafe { host::syscall2(__NR_dup2, 1, 2) };
    test_main()
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
