//! Raw syscalls, in the two flavours a dispatch runtime needs.

/// Syscalls that are never dispatched: each goes through a trampoline in the
/// allowed region, so it runs natively whatever the selector says.  The
/// runtime makes every one of its own syscalls this way; host code that may
/// run while the selector says BLOCK (the SIGSYS callback under a NULL
/// selector, a signal handler, code called from a JIT) should too.
pub mod host {
    use crate::asm;
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
        Errno::result(unsafe { asm::sud_syscall0(nr as usize) })
    }

    /// `syscall(nr, a1)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall1(nr: u32, a1: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { asm::sud_syscall1(nr as usize, a1) })
    }

    /// `syscall(nr, a1, a2)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall2(nr: u32, a1: usize, a2: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { asm::sud_syscall2(nr as usize, a1, a2) })
    }

    /// `syscall(nr, a1, a2, a3)` from the allowed region.
    ///
    /// # Safety
    /// As for [`syscall0`].
    #[inline]
    pub unsafe fn syscall3(nr: u32, a1: usize, a2: usize, a3: usize) -> Result<usize, Errno> {
        // SAFETY: as in syscall0.
        Errno::result(unsafe { asm::sud_syscall3(nr as usize, a1, a2, a3) })
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
        Errno::result(unsafe { asm::sud_syscall4(nr as usize, a1, a2, a3, a4) })
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
        Errno::result(unsafe { asm::sud_syscall5(nr as usize, a1, a2, a3, a4, a5) })
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
        Errno::result(unsafe { asm::sud_syscall6(nr as usize, a1, a2, a3, a4, a5, a6) })
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

/// Reading and writing guest memory from signal context without ever
/// faulting: the kernel copies through `process_vm_readv`/`writev` on this
/// very process, and an address the guest may not access is EFAULT, exactly
/// as the syscall being emulated would report it.
pub(crate) mod guest_memory {
    use crate::error::Errno;
    use core::mem::{MaybeUninit, size_of};
    use linux_raw_sys::general::{__NR_getpid, __NR_process_vm_readv, __NR_process_vm_writev};

    /// `struct iovec`.
    #[repr(C)]
    struct IoVec {
        base: usize,
        len: usize,
    }

    fn copy(nr: u32, local: usize, remote: usize, len: usize) -> Result<(), Errno> {
        let local = IoVec { base: local, len };
        let remote = IoVec { base: remote, len };
        // SAFETY: both iovecs describe `len` bytes; the local one is ours and
        // valid, the remote one is checked by the kernel.
        unsafe {
            let pid = super::host::syscall0(__NR_getpid)?;
            let done = super::host::syscall6(
                nr,
                pid,
                &local as *const IoVec as usize,
                1,
                &remote as *const IoVec as usize,
                1,
                0,
            )?;
            if done == len {
                Ok(())
            } else {
                Err(Errno::EFAULT)
            }
        }
    }

    /// A `T` read from guest address `addr`.
    pub(crate) fn read<T: Copy>(addr: usize) -> Result<T, Errno> {
        let mut value = MaybeUninit::<T>::uninit();
        copy(
            __NR_process_vm_readv,
            value.as_mut_ptr() as usize,
            addr,
            size_of::<T>(),
        )?;
        // SAFETY: the kernel filled every byte; T is plain data (integers).
        Ok(unsafe { value.assume_init() })
    }

    /// Writes `value` to guest address `addr`.
    pub(crate) fn write<T: Copy>(addr: usize, value: &T) -> Result<(), Errno> {
        copy(
            __NR_process_vm_writev,
            value as *const T as usize,
            addr,
            size_of::<T>(),
        )
    }
}
