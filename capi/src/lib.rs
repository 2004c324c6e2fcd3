//! sud's C library: `libsud_capi.a` and `libsud_capi.so`, declared by
//! `include/sud.h`.
//!
//! Every function of the interface is in `sud-capi-abi` (`abi/`), an rlib
//! that Rust programs can link too; what only a library for C may have is
//! here: the panic handler and the unwinder's personality routine.  No libc
//! is used or linked: the library makes its syscalls through sud's
//! trampolines, so it links into a glibc, musl or freestanding program
//! alike.
//!
//! Neither item exists in a build for `cargo test --all-targets`, which
//! links std and its own.

#![no_std]

// Linked for its exported functions, which nothing here names.
use sud_capi_abi as _;

#[cfg(not(test))]
mod abort {
    use core::fmt::{self, Write};
    use linux_raw_sys::general::__NR_write;

    /// Standard error, written through sud's trampolines: the panic may
    /// come while the selector says BLOCK.
    struct Stderr;

    impl Write for Stderr {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            // SAFETY: writes from a live buffer; a short or failed write
            // only loses the message.
            let _ = unsafe { sud::host::syscall3(__NR_write, 2, s.as_ptr() as usize, s.len()) };
            Ok(())
        }
    }

    /// A panic inside sud or its C interface (a bug: they do not panic on
    /// any input C can give): say where, and end the process with SIGILL,
    /// as Rust's own abort does, without a syscall that could be trapped or
    /// a libc call that may not exist.
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        let _ = writeln!(Stderr, "sud: panic in libsud_capi: {info}");
        // SAFETY: ud2 raises SIGILL and does not return.
        unsafe { core::arch::asm!("ud2", options(noreturn, nostack)) }
    }

    // The unwinder's personality routine for Rust frames, which the
    // toolchain's precompiled `core` names even though this library never
    // unwinds (it is built with panic = "abort"; an LTO build drops the
    // name).  It is reached only if something unwinds into Rust code, C++
    // throwing through sud, say: that ends the process, as an exception
    // through a `noexcept` function would.  Hidden: it links into a C
    // program from the static library, and the shared library does not
    // export it (a Rust library loaded next to it keeps its own).
    core::arch::global_asm!(
        ".text",
        ".globl rust_eh_personality",
        ".hidden rust_eh_personality",
        ".type rust_eh_personality, @function",
        "rust_eh_personality:",
        "    .cfi_startproc",
        "    ud2",
        "    .cfi_endproc",
        ".size rust_eh_personality, . - rust_eh_personality",
    );
}
