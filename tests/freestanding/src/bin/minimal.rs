//! The smallest useful program on sud: no libc, static, its own `_start`
//! (from this crate's lib).  It installs a callback, arms its thread, and
//! from guest-style inline syscalls gets one getppid emulated and one write
//! reissued; exit status 0 if both came back as they should.  BENCHMARKS.md
//! gives its stripped size.

#![no_std]
#![no_main]
#![allow(non_upper_case_globals)]

use linux_raw_sys::general::{__NR_getppid, __NR_write};
use sud::{Action, SELECTOR, Syscall, guest};
// `_start`, the panic handler and the memory functions.
use sud_freestanding as _;

fn on_syscall(call: &mut Syscall) -> Action {
    match call.number() {
        __NR_getppid => Action::Emulate(42),
        _ => Action::Reissue,
    }
}

#[unsafe(no_mangle)]
fn test_main() -> i32 {
    if sud::install(on_syscall).is_err() || sud::arm().is_err() {
        return 2;
    }
    let message = b"minimal: getppid emulated, write reissued\n";
    // SAFETY: the two syscalls below are answered by on_syscall.
    let (ppid, written) = unsafe {
        SELECTOR.block();
        let ppid = guest::syscall0(__NR_getppid);
        let written = guest::syscall3(__NR_write, 1, message.as_ptr() as usize, message.len());
        SELECTOR.allow();
        (ppid, written)
    };
    if ppid == Ok(42) && written == Ok(message.len()) {
        0
    } else {
        1
    }
}
