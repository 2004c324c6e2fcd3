//! Typed errors: an errno from the kernel, or a feature the kernel lacks.

use core::fmt;
use linux_raw_sys::errno;

/// An errno value, 1 to 4095, as the kernel returns it (negated) from a syscall.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(u16);

macro_rules! errno_consts {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno(errno::$name as u16);
            )*

            fn name(self) -> Option<&'static str> {
                $(if self == Self::$name { return Some(stringify!($name)); })*
                None
            }
        }
    };
}

errno_consts!(
    EPERM, ENOENT, ESRCH, EINTR, EIO, EBADF, ECHILD, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST,
    EINVAL, ENOSPC, EPIPE, ERANGE, ENOSYS, ETIMEDOUT,
);

impl Errno {
    /// The errno `raw`, if it is one (1 to 4095).
    pub const fn from_raw(raw: i32) -> Option<Errno> {
        if raw >= 1 && raw <= 4095 {
            Some(Errno(raw as u16))
        } else {
            None
        }
    }

    /// The errno as a positive number.
    pub const fn raw(self) -> i32 {
        self.0 as i32
    }

    /// The value a syscall leaves in RAX to report this error: `-errno`.
    pub const fn to_syscall_result(self) -> usize {
        (self.0 as isize).wrapping_neg() as usize
    }

    /// Decodes a raw syscall result: -4095 to -1 is an error, anything else a value.
    pub const fn result(raw: usize) -> Result<usize, Errno> {
        if raw > (-4096isize) as usize {
            Err(Errno(raw.wrapping_neg() as u16))
        } else {
            Ok(raw)
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (errno {})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// Why setting up or arming dispatch failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The kernel has no Syscall User Dispatch: it is older than 5.11, or was
    /// built without it.  Detected, never assumed.
    NoSyscallUserDispatch,
    /// The kernel has Syscall User Dispatch but not its inclusive mode
    /// (Linux 6.17).  Exclusive mode over the complement of the range is the
    /// fallback: see [`arm_inclusive`](crate::arm_inclusive).
    NoInclusiveMode,
    /// Arming was asked for before sud's SIGSYS handler was installed
    /// ([`install`](crate::install)): the first trapped syscall would kill
    /// the process.
    NotInstalled,
    /// The calling thread has a sud state already (a
    /// [`Thread`](crate::Thread), or [`arm`](crate::arm)): a second one's
    /// selector would never be read.  Drop the `Thread` or
    /// [`disarm`](crate::disarm) first.
    AlreadyManaged,
    /// The kernel refused with this errno: EINVAL for arguments it rejects,
    /// EFAULT for a selector that is not a user address, EPERM where arming
    /// is forbidden, and whatever else a syscall on the way returned.
    Os(Errno),
}

impl From<Errno> for Error {
    fn from(errno: Errno) -> Error {
        Error::Os(errno)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSyscallUserDispatch => {
                f.write_str("the kernel has no syscall user dispatch (Linux 5.11 or later needed)")
            }
            Error::NoInclusiveMode => f.write_str(
                "the kernel has no inclusive syscall user dispatch (Linux 6.17 or later needed)",
            ),
            Error::NotInstalled => {
                f.write_str("sud's SIGSYS handler is not installed: call sud::install first")
            }
            Error::AlreadyManaged => f.write_str(
                "this thread already has a sud state (a Thread, or sud::arm): drop or disarm it first",
            ),
            Error::Os(errno) => write!(f, "the kernel refused: {errno}"),
        }
    }
}

impl core::error::Error for Error {}
