//! The syscalls that rewriting code in place needs (`rewrite/`): writing
//! bytes into code the process executes, whatever its pages' protection;
//! making every core see them; mapping thunks near a site.

use super::host;
use crate::error::Errno;
use linux_raw_sys::general::{
    __NR_close, __NR_membarrier, __NR_mmap, __NR_munmap, __NR_openat, __NR_pwrite64, AT_FDCWD,
    MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, O_CLOEXEC, O_RDWR, PROT_EXEC, PROT_READ,
    membarrier_cmd,
};

/// `/proc/self/mem`, open for writing: writes through it reach pages that
/// are not writable (as a debugger's do), so the guest's code never has to
/// be made writable, and no protection has to be remembered and put back.
pub(crate) struct CodeWriter(usize);

impl CodeWriter {
    pub(crate) fn open() -> Result<CodeWriter, Errno> {
        // SAFETY: a NUL-terminated path.
        let fd = unsafe {
            host::syscall4(
                __NR_openat,
                AT_FDCWD as usize,
                c"/proc/self/mem".as_ptr() as usize,
                (O_RDWR | O_CLOEXEC) as usize,
                0,
            )
        }?;
        Ok(CodeWriter(fd))
    }

    /// Writes `bytes` at `at`, all of them or an error.
    ///
    /// # Safety
    /// Code at `at` may be executing: the caller makes every state the
    /// bytes pass through one that executes correctly.
    pub(crate) unsafe fn write(&self, at: usize, bytes: &[u8]) -> Result<(), Errno> {
        // SAFETY: our buffer; the kernel checks the target.
        let written = unsafe {
            host::syscall4(
                __NR_pwrite64,
                self.0,
                bytes.as_ptr() as usize,
                bytes.len(),
                at,
            )
        }?;
        if written == bytes.len() {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }
}

impl Drop for CodeWriter {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        let _ = unsafe { host::syscall1(__NR_close, self.0) };
    }
}

/// Registers the process for [`sync_cores`].
pub(crate) fn register_sync_cores() -> Result<(), Errno> {
    let cmd = membarrier_cmd::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE as usize;
    // SAFETY: membarrier touches no memory of ours.
    unsafe { host::syscall3(__NR_membarrier, cmd, 0, 0) }.map(drop)
}

/// Makes every thread of the process serialize its instruction stream
/// before it next runs user code: the user-space counterpart of the
/// kernel's text_poke_sync, after a cross-modifying write.
pub(crate) fn sync_cores() -> Result<(), Errno> {
    let cmd = membarrier_cmd::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE as usize;
    // SAFETY: as above.
    unsafe { host::syscall3(__NR_membarrier, cmd, 0, 0) }.map(drop)
}

/// `len` bytes of fresh, zeroed, readable and executable memory exactly at
/// `at`, if nothing is mapped there.
pub(crate) fn mmap_exec_at(at: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let got = unsafe {
        host::syscall6(
            __NR_mmap,
            at,
            len,
            (PROT_READ | PROT_EXEC) as usize,
            (MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) as usize,
            usize::MAX,
            0,
        )
    }?;
    if got != at {
        // A kernel before 4.17 took the flag as a hint.
        // SAFETY: the mapping just made, never published.
        let _ = unsafe { host::syscall2(__NR_munmap, got, len) };
        return Err(Errno::EEXIST);
    }
    Ok(got)
}
