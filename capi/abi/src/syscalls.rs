//! Host syscalls for C: [`sud::host`].  (Guest syscalls need no library
//! code: `sud_guest_syscall` is an inline `syscall` in the header.)

use core::ffi::c_long;

/// `long sud_host_syscall(long number, long a1, ..., long a6)`:
/// [`sud::host::syscall6`], with the raw result (-4095 to -1 is -errno).
///
/// # Safety
/// A raw syscall: the caller answers for its arguments and effects.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_host_syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let args = [a1, a2, a3, a4, a5, a6].map(|a| a as usize);
    // SAFETY: the caller's promise.
    let result = unsafe {
        sud::host::syscall6(
            number as u32,
            args[0],
            args[1],
            args[2],
            args[3],
            args[4],
            args[5],
        )
    };
    match result {
        Ok(value) => value as c_long,
        Err(errno) => -c_long::from(errno.raw()),
    }
}
