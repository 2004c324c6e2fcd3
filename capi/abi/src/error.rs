//! Status codes: how a [`sud::Error`] reaches C.
//!
//! 0 is success; `-errno` (-4095 to -1) is [`Error::Os`], as the kernel and
//! the raw syscall interface report it; the kernel features sud detects
//! have codes of their own below that range, so that no errno can pass for
//! one.

use core::ffi::{c_char, c_int};
use sud::Error;

/// `SUD_ERR_NO_SYSCALL_USER_DISPATCH`: [`Error::NoSyscallUserDispatch`].
pub const SUD_ERR_NO_SYSCALL_USER_DISPATCH: c_int = -4096;
/// `SUD_ERR_NO_INCLUSIVE_MODE`: [`Error::NoInclusiveMode`].
pub const SUD_ERR_NO_INCLUSIVE_MODE: c_int = -4097;
/// `SUD_ERR_UNKNOWN`: an [`Error`] variant newer than this interface.
pub const SUD_ERR_UNKNOWN: c_int = -4098;
/// `SUD_ERR_NOT_INSTALLED`: [`Error::NotInstalled`].
pub const SUD_ERR_NOT_INSTALLED: c_int = -4099;
/// `SUD_ERR_ALREADY_MANAGED`: [`Error::AlreadyManaged`].
pub const SUD_ERR_ALREADY_MANAGED: c_int = -4100;
/// `SUD_ERR_OUT_OF_MEMORY`: [`Error::OutOfMemory`].
pub const SUD_ERR_OUT_OF_MEMORY: c_int = -4101;
/// `SUD_ERR_NO_FSGSBASE`: [`Error::NoFsGsBase`].
pub const SUD_ERR_NO_FSGSBASE: c_int = -4102;

/// The status code of `error`.
pub fn code(error: Error) -> c_int {
    match error {
        Error::NoSyscallUserDispatch => SUD_ERR_NO_SYSCALL_USER_DISPATCH,
        Error::NoInclusiveMode => SUD_ERR_NO_INCLUSIVE_MODE,
        Error::NotInstalled => SUD_ERR_NOT_INSTALLED,
        Error::AlreadyManaged => SUD_ERR_ALREADY_MANAGED,
        Error::OutOfMemory => SUD_ERR_OUT_OF_MEMORY,
        Error::NoFsGsBase => SUD_ERR_NO_FSGSBASE,
        Error::Os(errno) => -errno.raw(),
        _ => SUD_ERR_UNKNOWN,
    }
}

/// The status code of `result`: 0 or [`code`].
pub fn status(result: Result<(), Error>) -> c_int {
    result.map_or_else(code, |()| 0)
}

/// `-EINVAL`, for a NULL where the interface needs a pointer.
pub(crate) fn invalid() -> c_int {
    -sud::Errno::EINVAL.raw()
}

/// `const char *sud_strerror(int status)`: what a status code means, as a
/// static string (an errno is only said to be one: `strerror(-status)`
/// names it where there is a libc).
#[unsafe(no_mangle)]
pub extern "C" fn sud_strerror(status: c_int) -> *const c_char {
    let text = match status {
        0 => c"success",
        SUD_ERR_NO_SYSCALL_USER_DISPATCH => {
            c"the kernel has no syscall user dispatch (Linux 5.11 or later needed)"
        }
        SUD_ERR_NO_INCLUSIVE_MODE => {
            c"the kernel has no inclusive syscall user dispatch (Linux 6.17 or later needed)"
        }
        SUD_ERR_NOT_INSTALLED => {
            c"sud's SIGSYS handler is not installed: call sud_install first"
        }
        SUD_ERR_ALREADY_MANAGED => {
            c"this thread already has a sud state (a sud_thread, or sud_arm): free or disarm it first"
        }
        SUD_ERR_OUT_OF_MEMORY => {
            c"sud has no memory for another thread's state (out of memory or address space)"
        }
        SUD_ERR_NO_FSGSBASE => {
            c"the kernel does not enable FSGSBASE (Linux 5.9 or later and a CPU with it needed)"
        }
        SUD_ERR_UNKNOWN => c"an error this version of sud.h has no code for",
        -4095..=-1 => c"the kernel refused (the status is -errno)",
        _ => c"not a sud status code",
    };
    text.as_ptr()
}
