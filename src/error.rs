//! Typed errors: an errno from the kernel, or a feature the kernel lacks.

use core::fmt;
use linux_raw_sys::errno;

/// An errno value, 1 to 4095, as the kernel returns it (negated) from a syscall.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(u16);

macro_rules! errno_consts {
    ($($name:ident: $text:literal,)*) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`: ", $text, ".")]
                pub const $name: Errno = Errno(errno::$name as u16);
            )*

            /// The errno's name (`"ENOENT"`), if Linux gives it one.
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

// Every errno of Linux's uapi (`asm-generic/errno-base.h`, `errno.h`), as
// linux-raw-sys has them, with the C library's description.  The two
// aliases follow.
errno_consts! {
    EPERM: "Operation not permitted",
    ENOENT: "No such file or directory",
    ESRCH: "No such process",
    EINTR: "Interrupted system call",
    EIO: "Input/output error",
    ENXIO: "No such device or address",
    E2BIG: "Argument list too long",
    ENOEXEC: "Exec format error",
    EBADF: "Bad file descriptor",
    ECHILD: "No child processes",
    EAGAIN: "Resource temporarily unavailable",
    ENOMEM: "Cannot allocate memory",
    EACCES: "Permission denied",
    EFAULT: "Bad address",
    ENOTBLK: "Block device required",
    EBUSY: "Device or resource busy",
    EEXIST: "File exists",
    EXDEV: "Invalid cross-device link",
    ENODEV: "No such device",
    ENOTDIR: "Not a directory",
    EISDIR: "Is a directory",
    EINVAL: "Invalid argument",
    ENFILE: "Too many open files in system",
    EMFILE: "Too many open files",
    ENOTTY: "Inappropriate ioctl for device",
    ETXTBSY: "Text file busy",
    EFBIG: "File too large",
    ENOSPC: "No space left on device",
    ESPIPE: "Illegal seek",
    EROFS: "Read-only file system",
    EMLINK: "Too many links",
    EPIPE: "Broken pipe",
    EDOM: "Numerical argument out of domain",
    ERANGE: "Numerical result out of range",
    EDEADLK: "Resource deadlock avoided",
    ENAMETOOLONG: "File name too long",
    ENOLCK: "No locks available",
    ENOSYS: "Function not implemented",
    ENOTEMPTY: "Directory not empty",
    ELOOP: "Too many levels of symbolic links",
    ENOMSG: "No message of desired type",
    EIDRM: "Identifier removed",
    ECHRNG: "Channel number out of range",
    EL2NSYNC: "Level 2 not synchronized",
    EL3HLT: "Level 3 halted",
    EL3RST: "Level 3 reset",
    ELNRNG: "Link number out of range",
    EUNATCH: "Protocol driver not attached",
    ENOCSI: "No CSI structure available",
    EL2HLT: "Level 2 halted",
    EBADE: "Invalid exchange",
    EBADR: "Invalid request descriptor",
    EXFULL: "Exchange full",
    ENOANO: "No anode",
    EBADRQC: "Invalid request code",
    EBADSLT: "Invalid slot",
    EBFONT: "Bad font file format",
    ENOSTR: "Device not a stream",
    ENODATA: "No data available",
    ETIME: "Timer expired",
    ENOSR: "Out of streams resources",
    ENONET: "Machine is not on the network",
    ENOPKG: "Package not installed",
    EREMOTE: "Object is remote",
    ENOLINK: "Link has been severed",
    EADV: "Advertise error",
    ESRMNT: "Srmount error",
    ECOMM: "Communication error on send",
    EPROTO: "Protocol error",
    EMULTIHOP: "Multihop attempted",
    EDOTDOT: "RFS specific error",
    EBADMSG: "Bad message",
    EOVERFLOW: "Value too large for defined data type",
    ENOTUNIQ: "Name not unique on network",
    EBADFD: "File descriptor in bad state",
    EREMCHG: "Remote address changed",
    ELIBACC: "Can not access a needed shared library",
    ELIBBAD: "Accessing a corrupted shared library",
    ELIBSCN: ".lib section in a.out corrupted",
    ELIBMAX: "Attempting to link in too many shared libraries",
    ELIBEXEC: "Cannot exec a shared library directly",
    EILSEQ: "Invalid or incomplete multibyte or wide character",
    ERESTART: "Interrupted system call should be restarted",
    ESTRPIPE: "Streams pipe error",
    EUSERS: "Too many users",
    ENOTSOCK: "Socket operation on non-socket",
    EDESTADDRREQ: "Destination address required",
    EMSGSIZE: "Message too long",
    EPROTOTYPE: "Protocol wrong type for socket",
    ENOPROTOOPT: "Protocol not available",
    EPROTONOSUPPORT: "Protocol not supported",
    ESOCKTNOSUPPORT: "Socket type not supported",
    EOPNOTSUPP: "Operation not supported",
    EPFNOSUPPORT: "Protocol family not supported",
    EAFNOSUPPORT: "Address family not supported by protocol",
    EADDRINUSE: "Address already in use",
    EADDRNOTAVAIL: "Cannot assign requested address",
    ENETDOWN: "Network is down",
    ENETUNREACH: "Network is unreachable",
    ENETRESET: "Network dropped connection on reset",
    ECONNABORTED: "Software caused connection abort",
    ECONNRESET: "Connection reset by peer",
    ENOBUFS: "No buffer space available",
    EISCONN: "Transport endpoint is already connected",
    ENOTCONN: "Transport endpoint is not connected",
    ESHUTDOWN: "Cannot send after transport endpoint shutdown",
    ETOOMANYREFS: "Too many references: cannot splice",
    ETIMEDOUT: "Connection timed out",
    ECONNREFUSED: "Connection refused",
    EHOSTDOWN: "Host is down",
    EHOSTUNREACH: "No route to host",
    EALREADY: "Operation already in progress",
    EINPROGRESS: "Operation now in progress",
    ESTALE: "Stale file handle",
    EUCLEAN: "Structure needs cleaning",
    ENOTNAM: "Not a XENIX named type file",
    ENAVAIL: "No XENIX semaphores available",
    EISNAM: "Is a named type file",
    EREMOTEIO: "Remote I/O error",
    EDQUOT: "Disk quota exceeded",
    ENOMEDIUM: "No medium found",
    EMEDIUMTYPE: "Wrong medium type",
    ECANCELED: "Operation canceled",
    ENOKEY: "Required key not available",
    EKEYEXPIRED: "Key has expired",
    EKEYREVOKED: "Key has been revoked",
    EKEYREJECTED: "Key was rejected by service",
    EOWNERDEAD: "Owner died",
    ENOTRECOVERABLE: "State not recoverable",
    ERFKILL: "Operation not possible due to RF-kill",
    EHWPOISON: "Memory page has hardware error",
}

impl Errno {
    /// `EWOULDBLOCK`: the same errno as [`EAGAIN`](Self::EAGAIN).
    pub const EWOULDBLOCK: Errno = Errno(errno::EWOULDBLOCK as u16);
    /// `EDEADLOCK`: the same errno as [`EDEADLK`](Self::EDEADLK).
    pub const EDEADLOCK: Errno = Errno(errno::EDEADLOCK as u16);
}

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
    /// The name (`ENOENT`), or `errno N` for a number Linux has no name for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
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
    /// [`Thread`](crate::Thread), or `sud::arm()`): a second one's
    /// selector would never be read.  Drop the `Thread` or
    /// [`disarm`](crate::disarm) first.
    AlreadyManaged,
    /// sud has no memory for another thread's state: the kernel refused it
    /// (mmap or mprotect failed with ENOMEM: out of memory, or the
    /// process's map count or address-space limit reached), or the
    /// address space sud reserves for thread states is used up (over a
    /// million threads at once).  Not an errno, so that it cannot pass for
    /// the kernel's answer to a syscall; a guest's clone that sud cannot
    /// give a state fails with ENOMEM, as a native clone does when the
    /// kernel has no memory for a new task.
    OutOfMemory,
    /// The kernel does not enable the FSGSBASE instructions (Linux 5.9 on a
    /// CPU that has them), which rewritten trap sites
    /// ([`rewrite_sites`](crate::rewrite_sites)) need.
    NoFsGsBase,
    /// The kernel refused with this errno: EINVAL for arguments it rejects,
    /// EFAULT for a selector that is not a user address, EPERM where arming
    /// is forbidden, and whatever else a syscall on the way returned.
    Os(Errno),
}

impl Error {
    /// The errno a guest's task-creating syscall gets when sud fails it
    /// with this error: the kernel's own; ENOMEM for
    /// [`OutOfMemory`](Error::OutOfMemory), as a native clone is told when
    /// the kernel has no memory for the task; EAGAIN for the rest.
    pub(crate) fn guest_errno(self) -> Errno {
        match self {
            Error::Os(errno) => errno,
            Error::OutOfMemory => Errno::ENOMEM,
            _ => Errno::EAGAIN,
        }
    }
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
            Error::OutOfMemory => f.write_str(
                "sud has no memory for another thread's state (out of memory or address space)",
            ),
            Error::NoFsGsBase => f.write_str(
                "the kernel does not enable FSGSBASE (Linux 5.9 and a CPU with it needed)",
            ),
            Error::Os(errno) => write!(f, "the kernel refused: {errno}"),
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    /// Every number in Linux's errno range has its name, but the two it
    /// leaves unused (41 and 58); aliases give the first name.
    #[test]
    fn every_linux_errno_is_named() {
        let unnamed: std::vec::Vec<i32> = (1..=errno::EHWPOISON as i32)
            .filter(|&raw| Errno::from_raw(raw).unwrap().name().is_none())
            .collect();
        assert_eq!(unnamed, [41, 58]);
        assert_eq!(Errno::EWOULDBLOCK.to_string(), "EAGAIN");
        assert_eq!(Errno::from_raw(errno::ETIME as i32), Some(Errno::ETIME));
        assert_eq!(Errno::ENOENT.to_string(), "ENOENT");
        assert_eq!(Errno::from_raw(4000).unwrap().to_string(), "errno 4000");
    }
}
