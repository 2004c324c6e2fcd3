//! Raw syscalls, in the two flavours a dispatch runtime needs: through the
//! trampolines of the allowed region (never dispatched), and inline (trapped
//! like guest code).

unsafe extern "C" {
    /// Trampoline: syscall `nr` with no argument, from the allowed region.
    pub(crate) fn sud_syscall0(nr: usize) -> usize;
    pub(crate) fn sud_syscall1(nr: usize, a1: usize) -> usize;
    pub(crate) fn sud_syscall2(nr: usize, a1: usize, a2: usize) -> usize;
    pub(crate) fn sud_syscall3(nr: usize, a1: usize, a2: usize, a3: usize) -> usize;
    pub(crate) fn sud_syscall4(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> usize;
    pub(crate) fn sud_syscall5(
        nr: usize,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
    ) -> usize;
    pub(crate) fn sud_syscall6(
        nr: usize,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
        a6: usize,
    ) -> usize;
}

/// Syscalls that are never dispatched: each goes through a trampoline in the
/// allowed region, so it runs natively whatever the selector says.  The
/// runtime makes every one of its own syscalls this way; host code that may
/// run while the selector says BLOCK (the SIGSYS callback under a NULL
/// selector, a signal handler, code called from a JIT) should too.
pub mod host {
    use crate::error::Errno;

    /// `syscall(nr)` from the allowed region.
    ///
    /// # Safety
    /// A raw syscall can do anything to the process; the caller answers for
    /// its arguments and effects, as for any raw syscall.
    #[inline]
    pub unsafe fn syscall0(nr: u32) -> Result<usize, Errno> {
        // SAFETY: the trampoline only moves registers and traps; the caller
        // answers for the syscall itself.
        Errno::result(unsafe { crate::sys::raw::sud_syscall0(nr as usize) })
    }

    /// `syscall(nr, a1)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall1(nr: u32, a1: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { crate::sys::raw::sud_syscall1(nr as usize, a1) })
    }

    /// `syscall(nr, a1, a2)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall2(nr: u32, a1: usize, a2: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { crate::sys::raw::sud_syscall2(nr as usize, a1, a2) })
    }

    /// `syscall(nr, a1, a2, a3)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall3(nr: u32, a1: usize, a2: usize, a3: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { crate::sys::raw::sud_syscall3(nr as usize, a1, a2, a3) })
    }

    /// `syscall(nr, a1, .., a4)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall4(
        nr: u32,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
    ) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { crate::sys::raw::sud_syscall4(nr as usize, a1, a2, a3, a4) })
    }

    /// `syscall(nr, a1, .., a5)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall5(
        nr: u32,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
    ) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { crate::sys::raw::sud_syscall5(nr as usize, a1, a2, a3, a4, a5) })
    }

    /// `syscall(nr, a1, .., a6)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall6(
        nr: u32,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
        a6: usize,
    ) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { crate::sys::raw::sud_syscall6(nr as usize, a1, a2, a3, a4, a5, a6) })
    }
}

/// Syscalls made the way guest code makes them: an inline `syscall`
/// instruction in the caller's own code, outside the allowed region, so the
/// kernel dispatches it whenever the thread is armed and its selector says
/// BLOCK.  For tests, tools and host code that wants to be trapped.
pub mod guest {
    use crate::error::Errno;

    /// An inline `syscall(nr)`; dispatched when the selector says BLOCK.
    ///
    /// # Safety
    /// A raw syscall can do anything to the process; and if it is
    /// dispatched, its result is whatever the SIGSYS callback decides.
    #[inline(always)]
    pub unsafe fn syscall0(nr: u32) -> Result<usize, Errno> {
        // SAFETY: the caller answers for the syscall and its outcome.
        Errno::result(unsafe { sc::syscall0(nr as usize) })
    }

    /// An inline `syscall(nr, a1)`.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline(always)]
    pub unsafe fn syscall1(nr: u32, a1: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { sc::syscall1(nr as usize, a1) })
    }

    /// An inline `syscall(nr, a1, a2)`.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline(always)]
    pub unsafe fn syscall2(nr: u32, a1: usize, a2: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { sc::syscall2(nr as usize, a1, a2) })
    }

    /// An inline `syscall(nr, a1, a2, a3)`.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline(always)]
    pub unsafe fn syscall3(nr: u32, a1: usize, a2: usize, a3: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { sc::syscall3(nr as usize, a1, a2, a3) })
    }

    /// An inline `syscall(nr, a1, .., a4)`.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline(always)]
    pub unsafe fn syscall4(
        nr: u32,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
    ) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { sc::syscall4(nr as usize, a1, a2, a3, a4) })
    }

    /// An inline `syscall(nr, a1, .., a5)`.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline(always)]
    pub unsafe fn syscall5(
        nr: u32,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
    ) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { sc::syscall5(nr as usize, a1, a2, a3, a4, a5) })
    }

    /// An inline `syscall(nr, a1, .., a6)`.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline(always)]
    pub unsafe fn syscall6(
        nr: u32,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
        a6: usize,
    ) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { sc::syscall6(nr as usize, a1, a2, a3, a4, a5, a6) })
    }
}
