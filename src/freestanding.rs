//! A freestanding static executable on sud: no libc, no C runtime, nothing
//! but the kernel and this crate (feature `freestanding`).
//!
//! One line, [`entry!`]`(main)`, at the root of the binary crate defines
//! what a C runtime and libc otherwise give a Rust program:
//!
//! - `_start`, which hands the process's arguments, environment and
//!   auxiliary vector to `fn main(Startup) -> i32` ([`Startup`]) and exits
//!   with its value;
//! - the panic handler: the message to stderr, exit status 101;
//! - `rust_eh_personality`, which the precompiled `core` refers to;
//! - `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`, which the compiler
//!   calls, and `strlen`, which `core` calls ([`mem`]).
//!
//! Every syscall here goes through sud's trampolines ([`host`](crate::host)), so output,
//! exit and the panic message work whatever the selector says.
//!
//! The feature only adds this module: nothing is defined in any binary until
//! it invokes [`entry!`], so enabling it for a std program changes nothing
//! (invoking the macro there would clash with libc and std).  The binary
//! is linked with `-nostartfiles -nostdlib -static -no-pie` and built with
//! `panic = "abort"`: the README's freestanding template (in the repository,
//! `templates/freestanding/`) is the whole recipe.

use crate::error::Errno;
use crate::sys;
use core::ffi::{CStr, c_char};
use core::fmt;
use linux_raw_sys::auxvec::AT_NULL;

/// Defines `_start`, the panic handler, `rust_eh_personality` and the
/// memory functions in the binary that invokes it, at its crate root; the
/// process runs `main` (a `fn(Startup) -> i32`) and exits with its value.
///
/// ```ignore
/// #![no_std]
/// #![no_main]
///
/// sud::freestanding::entry!(main);
///
/// fn main(startup: sud::freestanding::Startup) -> i32 {
///     startup.args().count() as i32
/// }
/// ```
#[doc(inline)]
pub use crate::__sud_freestanding_entry as entry;

#[doc(hidden)]
#[macro_export]
macro_rules! __sud_freestanding_entry {
    ($main:path) => {
        // The kernel enters `_start` with RSP at argc, no return address
        // and no frame: start one chain of frames at zero, align the stack
        // as a call expects it, and never come back.
        ::core::arch::global_asm!(
            ".globl _start",
            ".type _start, @function",
            "_start:",
            "xor ebp, ebp",
            "mov rdi, rsp",
            "and rsp, -16",
            "call {start}",
            "ud2",
            ".size _start, . - _start",
            start = sym __sud_freestanding_start,
        );

        extern "C" fn __sud_freestanding_start(stack: *const usize) -> ! {
            // SAFETY: `_start` passes the initial stack pointer.
            let startup = unsafe { $crate::freestanding::Startup::from_stack(stack) };
            $crate::freestanding::exit($main(startup))
        }

        const _: () = {
            #[panic_handler]
            fn panic(info: &::core::panic::PanicInfo<'_>) -> ! {
                $crate::freestanding::panic_exit(info)
            }

            /// Referenced by the unwind tables of the precompiled `core`;
            /// with panic = "abort" nothing calls it.
            #[unsafe(no_mangle)]
            extern "C" fn rust_eh_personality() {}

            /// # Safety
            /// The C library's contract: `n` bytes readable at `src`, writable at `dst`, not overlapping.
            #[unsafe(no_mangle)]
            unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
                // SAFETY: the caller keeps memcpy's contract.
                unsafe { $crate::freestanding::mem::memcpy(dst, src, n) }
            }

            /// # Safety
            /// The C library's contract: `n` bytes readable at `src` and writable at `dst`.
            #[unsafe(no_mangle)]
            unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
                // SAFETY: the caller keeps memmove's contract.
                unsafe { $crate::freestanding::mem::memmove(dst, src, n) }
            }

            /// # Safety
            /// The C library's contract: `n` bytes writable at `dst`.
            #[unsafe(no_mangle)]
            unsafe extern "C" fn memset(dst: *mut u8, byte: i32, n: usize) -> *mut u8 {
                // SAFETY: the caller keeps memset's contract.
                unsafe { $crate::freestanding::mem::memset(dst, byte, n) }
            }

            /// # Safety
            /// The C library's contract: `n` bytes readable at `a` and at `b`.
            #[unsafe(no_mangle)]
            unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
                // SAFETY: the caller keeps memcmp's contract.
                unsafe { $crate::freestanding::mem::memcmp(a, b, n) }
            }

            /// # Safety
            /// The C library's contract: `n` bytes readable at `a` and at `b`.
            #[unsafe(no_mangle)]
            unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
                // SAFETY: bcmp's contract is memcmp's.
                unsafe { $crate::freestanding::mem::memcmp(a, b, n) }
            }

            /// # Safety
            /// The C library's contract: `s` is a readable NUL-terminated string.
            #[unsafe(no_mangle)]
            unsafe extern "C" fn strlen(s: *const ::core::ffi::c_char) -> usize {
                // SAFETY: the caller keeps strlen's contract.
                unsafe { $crate::freestanding::mem::strlen(s) }
            }
        };
    };
}

/// What the kernel hands a new process on its stack: the arguments, the
/// environment and the auxiliary vector.  The strings live as long as the
/// process, unless it writes over them.
#[derive(Clone, Copy, Debug)]
pub struct Startup {
    argc: usize,
    argv: *const *const c_char,
    envp: *const *const c_char,
    auxv: *const [usize; 2],
}

impl Startup {
    /// Reads the initial stack: argc, then argv and envp (each ended by a
    /// null pointer), then the auxiliary vector (ended by `AT_NULL`).
    ///
    /// # Safety
    /// `stack` is the stack pointer the kernel started the process with,
    /// and nothing has written over what it points to.
    pub unsafe fn from_stack(stack: *const usize) -> Startup {
        // SAFETY: the caller passes the initial stack, laid out as above.
        unsafe {
            let argc = *stack;
            let argv = stack.add(1).cast::<*const c_char>();
            let envp = argv.add(argc + 1);
            let mut end = envp;
            while !(*end).is_null() {
                end = end.add(1);
            }
            Startup {
                argc,
                argv,
                envp,
                auxv: end.add(1).cast(),
            }
        }
    }

    /// The arguments, `argv[0]` first.
    pub fn args(&self) -> Strings {
        Strings { next: self.argv }
    }

    /// The environment, as `NAME=value` strings.
    pub fn env(&self) -> Strings {
        Strings { next: self.envp }
    }

    /// The number of arguments.
    pub fn argc(&self) -> usize {
        self.argc
    }

    /// `argv`, null-terminated, as `execve` takes it.
    pub fn argv(&self) -> *const *const c_char {
        self.argv
    }

    /// `envp`, null-terminated, as `execve` takes it.
    pub fn envp(&self) -> *const *const c_char {
        self.envp
    }

    /// The auxiliary vector's entries, `(AT_PAGESZ, 4096)` and so on
    /// (keys in `linux_raw_sys::auxvec`), without the final `AT_NULL`.
    pub fn auxv(&self) -> impl Iterator<Item = (u32, usize)> + use<> {
        let mut next = self.auxv;
        core::iter::from_fn(move || {
            // SAFETY: the vector runs up to its AT_NULL entry, and the
            // iterator stops there.
            let [key, value] = unsafe { *next };
            (key != AT_NULL as usize).then(|| {
                // SAFETY: not past the AT_NULL entry.
                next = unsafe { next.add(1) };
                (key as u32, value)
            })
        })
    }

    /// The value of the auxiliary vector's `key` (`AT_PAGESZ`, `AT_RANDOM`,
    /// `AT_MINSIGSTKSZ` ...), if the kernel gave one.
    pub fn aux(&self, key: u32) -> Option<usize> {
        self.auxv().find(|&(k, _)| k == key).map(|(_, value)| value)
    }
}

/// The strings of `argv` or `envp`, up to its null pointer.
#[derive(Clone, Debug)]
pub struct Strings {
    next: *const *const c_char,
}

impl Iterator for Strings {
    type Item = &'static CStr;

    fn next(&mut self) -> Option<&'static CStr> {
        // SAFETY: the array runs up to a null pointer, and the iterator
        // stops there; each entry before it is a C string of the initial
        // stack, which lives as long as the process.
        unsafe {
            let string = *self.next;
            if string.is_null() {
                return None;
            }
            self.next = self.next.add(1);
            Some(CStr::from_ptr(string))
        }
    }
}

/// Ends the process (`exit_group`) with status `code`.
pub fn exit(code: i32) -> ! {
    sys::exit_group(code)
}

/// Writes all of `bytes` to `fd`, again after a partial write or EINTR.
pub fn write_all(fd: i32, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// Standard output (fd 1), unbuffered: `writeln!(Stdout, ...)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stdout;

/// Standard error (fd 2), unbuffered: `writeln!(Stderr, ...)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_all(1, s.as_bytes()).map_err(|_| fmt::Error)
    }
}

impl fmt::Write for Stderr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_all(2, s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// What the panic handler [`entry!`] defines does: writes the message to
/// stderr (`panicked at src/main.rs:7:5:` and the message, as std does),
/// then exits with status 101, as an unwinding std program would.
pub fn panic_exit(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = fmt::Write::write_fmt(&mut Stderr, format_args!("{info}\n"));
    exit(101)
}

/// The C functions that compiled code and `core` call, as [`entry!`]
/// defines them: string instructions, and byte loops for the comparisons
/// and `strlen`.  None of
/// them calls another memory function, so none can end up calling itself.
pub mod mem {
    use core::ffi::c_char;

    /// `memcpy`.
    ///
    /// # Safety
    /// `dst` and `src` are valid for `n` bytes and do not overlap.
    #[inline]
    pub unsafe fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller passes valid, non-overlapping buffers of n
        // bytes; DF is clear, as the ABI keeps it.
        unsafe {
            core::arch::asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _,
                inout("rcx") n => _, options(nostack, preserves_flags));
        }
        dst
    }

    /// `memmove`.
    ///
    /// # Safety
    /// `dst` and `src` are valid for `n` bytes; they may overlap.
    #[inline]
    pub unsafe fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if (dst as usize).wrapping_sub(src as usize) >= n {
            // SAFETY: dst does not start inside src, so a forward copy reads
            // every byte before it writes over it.
            return unsafe { memcpy(dst, src, n) };
        }
        // SAFETY: dst starts inside src: copy backwards from the last byte,
        // with DF set, then cleared again as the ABI requires.
        unsafe {
            core::arch::asm!("std", "rep movsb", "cld", inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _, inout("rcx") n => _, options(nostack));
        }
        dst
    }

    /// `memset`.
    ///
    /// # Safety
    /// `dst` is valid for `n` bytes.
    #[inline]
    pub unsafe fn memset(dst: *mut u8, byte: i32, n: usize) -> *mut u8 {
        // SAFETY: the caller passes a valid buffer of n bytes; DF is clear.
        unsafe {
            core::arch::asm!("rep stosb", inout("rdi") dst => _, in("al") byte as u8,
                inout("rcx") n => _, options(nostack, preserves_flags));
        }
        dst
    }

    /// `memcmp` (and `bcmp`).
    ///
    /// # Safety
    /// `a` and `b` are valid for `n` bytes.
    #[inline]
    pub unsafe fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: the caller passes valid buffers of n bytes; volatile
            // keeps the compiler from turning this loop into a memcmp call.
            let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
            if x != y {
                return x as i32 - y as i32;
            }
        }
        0
    }

    /// `strlen`, which `core` calls for `CStr::from_ptr`.
    ///
    /// # Safety
    /// `s` points to a NUL-terminated string.
    #[inline]
    pub unsafe fn strlen(s: *const c_char) -> usize {
        let mut n = 0;
        // SAFETY: the string runs up to its NUL, where the loop stops;
        // volatile keeps the compiler from turning it into a strlen call.
        while unsafe { s.add(n).read_volatile() } != 0 {
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::mem;

    #[test]
    fn memory_functions() {
        let mut buf = *b"0123456789";
        // SAFETY: all within `buf`.
        unsafe {
            let p = buf.as_mut_ptr();
            mem::memmove(p.add(2), p, 6);
            assert_eq!(&buf, b"0101234589");
            mem::memmove(p, p.add(4), 6);
            assert_eq!(&buf, b"2345894589");
            mem::memset(p, b'x' as i32, 3);
            assert_eq!(&buf, b"xxx5894589");
            mem::memcpy(p, b"abc".as_ptr(), 3);
            assert_eq!(&buf, b"abc5894589");
            assert_eq!(mem::memcmp(p, b"abd".as_ptr(), 3), -1);
            assert_eq!(mem::memcmp(p, b"abc".as_ptr(), 3), 0);
            mem::memmove(p, p, 0);
            assert_eq!(mem::strlen(c"sud".as_ptr()), 3);
            assert_eq!(mem::strlen(c"".as_ptr()), 0);
        }
    }
}
