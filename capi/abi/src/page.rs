//! A page of its own for a Rust value that C holds by pointer.
//!
//! sud has no allocator and C's may not exist (a freestanding program has
//! none), so each such value (`struct sud_thread`, `struct
//! sud_guest_thread`) lives in an anonymous mapping of one page.

use linux_raw_sys::general::{
    __NR_mmap, __NR_munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};
use sud::{Errno, host};

/// The mapping one value lives in.
pub(crate) const PAGE: usize = 4096;

/// Maps a fresh page for a `T`, to be written before use.  The caller
/// checks (with a `const_assert!`) that a `T` fits a page.
pub(crate) fn map<T>() -> Result<*mut T, Errno> {
    // SAFETY: a fresh anonymous mapping, which nothing else knows of.
    let page = unsafe {
        host::syscall6(
            __NR_mmap,
            0,
            PAGE,
            (PROT_READ | PROT_WRITE) as usize,
            (MAP_PRIVATE | MAP_ANONYMOUS) as usize,
            usize::MAX,
            0,
        )
    }?;
    Ok(page as *mut T)
}

/// Gives back a page from [`map`], whose value was moved out or dropped.
///
/// # Safety
/// `page` came from [`map`] and nothing uses it any more.
pub(crate) unsafe fn unmap<T>(page: *mut T) {
    // SAFETY: the caller's promise; munmap of our own mapping cannot fail.
    let _ = unsafe { host::syscall2(__NR_munmap, page as usize, PAGE) };
}
