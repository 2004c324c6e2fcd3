//! Typed wrappers for every syscall the runtime itself makes, each through
//! a trampoline of the allowed region, so that it runs natively whatever the
//! selector says (the rustix pattern: no raw `syscallN` in policy code).
//! They inline to the trampoline call; results are typed, errors an
//! [`Errno`].
//!
//! Also here: the public raw syscalls ([`host`], [`guest`]) and reading and
//! writing guest memory without faulting ([`guest_memory`]).

pub(crate) mod code;
pub(crate) mod guest_memory;
pub(crate) mod raw;

use crate::error::Errno;
use crate::kernel::SigInfo;
use crate::kernel::sigaction::{KernelSigaction, SIGSET_SIZE};
use crate::kernel::stack::stack_t;
use core::ptr::null;
use core::sync::atomic::AtomicI32;
use linux_raw_sys::general::{
    __NR_arch_prctl, __NR_close, __NR_futex, __NR_getpid, __NR_gettid, __NR_kcmp, __NR_kill,
    __NR_mmap, __NR_mprotect, __NR_munmap, __NR_openat, __NR_prctl, __NR_process_vm_readv,
    __NR_process_vm_writev, __NR_pwrite64, __NR_read, __NR_rt_sigaction, __NR_rt_sigprocmask,
    __NR_rt_tgsigqueueinfo, __NR_sched_yield, __NR_sigaltstack, AT_FDCWD, FUTEX_PRIVATE_FLAG,
    FUTEX_WAIT, FUTEX_WAKE, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, O_CLOEXEC, O_RDONLY,
    PROT_READ, PROT_WRITE, SIG_SETMASK,
};
use linux_raw_sys::prctl::PR_SET_SYSCALL_USER_DISPATCH;
pub use raw::{guest, host};

/// The calling thread's id.
#[inline]
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { host::syscall0(__NR_gettid) }.unwrap_or(0) as i32
}

/// Ends the process with status `code`.
#[cfg(feature = "freestanding")]
pub(crate) fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group takes no memory and does not return.
    let _ = unsafe { host::syscall1(linux_raw_sys::general::__NR_exit_group, code as usize) };
    unreachable!("exit_group returned")
}

/// Writes some of `bytes` to `fd`: how many.
#[cfg(feature = "freestanding")]
pub(crate) fn write(fd: i32, bytes: &[u8]) -> Result<usize, Errno> {
    // SAFETY: write from a live buffer of that length.
    unsafe {
        host::syscall3(
            linux_raw_sys::general::__NR_write,
            fd as usize,
            bytes.as_ptr() as usize,
            bytes.len(),
        )
    }
}

/// The calling process's id.
#[inline]
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { host::syscall0(__NR_getpid) }.unwrap_or(0) as i32
}

/// `rt_sigprocmask(SIG_SETMASK, mask, &old)`: installs `mask` (if given) as
/// the calling thread's signal mask, and returns the one it had.
#[inline]
pub(crate) fn sigprocmask_set(mask: Option<&u64>) -> u64 {
    let mut old = 0u64;
    let new = mask.map_or(null(), |mask| mask as *const u64);
    // SAFETY: valid sigsets in and out (or none in); SIG_SETMASK with a
    // valid size cannot fail.
    let _ = unsafe {
        host::syscall4(
            __NR_rt_sigprocmask,
            SIG_SETMASK as usize,
            new as usize,
            &mut old as *mut u64 as usize,
            SIGSET_SIZE,
        )
    };
    old
}

/// The calling thread's signal mask.
#[inline]
pub(crate) fn thread_mask() -> u64 {
    sigprocmask_set(None)
}

/// Sets the calling thread's signal mask.
#[inline]
pub(crate) fn set_thread_mask(mask: u64) {
    sigprocmask_set(Some(&mask));
}

/// Blocks every signal on the calling thread; returns the mask to restore.
#[inline]
pub(crate) fn block_all_signals() -> u64 {
    sigprocmask_set(Some(&!0))
}

/// `rt_sigaction(signal, new, &old)`: the disposition `signal` had.
pub(crate) fn sigaction(
    signal: u32,
    new: Option<&KernelSigaction>,
) -> Result<KernelSigaction, Errno> {
    let mut old = KernelSigaction::default();
    let new = new.map_or(null(), |new| new as *const KernelSigaction);
    // SAFETY: both pointers are valid kernel_sigaction structs (or null);
    // the handler addresses in `new` are the caller's responsibility.
    unsafe {
        host::syscall4(
            __NR_rt_sigaction,
            signal as usize,
            new as usize,
            &mut old as *mut KernelSigaction as usize,
            SIGSET_SIZE,
        )?;
    }
    Ok(old)
}

/// `sigaltstack(new, &old)`: the alternate stack the thread had.
pub(crate) fn sigaltstack(new: Option<&stack_t>) -> Result<stack_t, Errno> {
    let mut old = crate::kernel::stack::disabled_stack();
    let new = new.map_or(null(), |new| new as *const stack_t);
    // SAFETY: valid stack_t in and out (or none in).
    unsafe {
        host::syscall2(
            __NR_sigaltstack,
            new as usize,
            &mut old as *mut stack_t as usize,
        )?
    };
    Ok(old)
}

/// `prctl(PR_SET_SYSCALL_USER_DISPATCH, op, offset, len, selector)` for the
/// calling thread.
///
/// # Safety
/// The configuration must keep the runtime working: see
/// [`set_syscall_user_dispatch`](crate::set_syscall_user_dispatch).
#[inline]
pub(crate) unsafe fn prctl_syscall_user_dispatch(
    op: u32,
    offset: usize,
    len: usize,
    selector: usize,
) -> Result<(), Errno> {
    // SAFETY: the caller answers for the configuration.
    unsafe {
        host::syscall5(
            __NR_prctl,
            PR_SET_SYSCALL_USER_DISPATCH as usize,
            op as usize,
            offset,
            len,
            selector,
        )
    }
    .map(drop)
}

/// Reserves `len` bytes of address space: PROT_NONE, MAP_NORESERVE.
pub(crate) fn mmap_reserve(len: usize) -> Result<usize, Errno> {
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    unsafe {
        host::syscall6(
            __NR_mmap,
            0,
            len,
            0,
            (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE) as usize,
            usize::MAX,
            0,
        )
    }
}

/// `len` bytes of fresh memory, readable, writable and zeroed.
pub(crate) fn mmap_read_write(len: usize) -> Result<usize, Errno> {
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    unsafe {
        host::syscall6(
            __NR_mmap,
            0,
            len,
            (PROT_READ | PROT_WRITE) as usize,
            (MAP_PRIVATE | MAP_ANONYMOUS) as usize,
            usize::MAX,
            0,
        )
    }
}

/// Makes `addr..addr + len`, part of a reservation of the caller's,
/// readable and writable.
///
/// # Safety
/// The range is the caller's own memory.
pub(crate) unsafe fn mprotect_read_write(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller owns the range.
    unsafe { host::syscall3(__NR_mprotect, addr, len, (PROT_READ | PROT_WRITE) as usize) }.map(drop)
}

/// Unmaps `addr..addr + len`.
///
/// # Safety
/// Nothing refers to the range any more.
pub(crate) unsafe fn munmap(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller answers for the range.
    unsafe { host::syscall2(__NR_munmap, addr, len) }.map(drop)
}

/// `KCMP_VM` of `enum kcmp_type` (include/uapi/linux/kcmp.h).
pub(crate) const KCMP_VM: u32 = 1;
/// `KCMP_SIGHAND` of `enum kcmp_type`.
pub(crate) const KCMP_SIGHAND: u32 = 4;

/// `kcmp(pid1, pid2, what, 0, 0)`: 0 if the two tasks share the resource,
/// 1, 2 or 3 if they do not (an ordering of the two).
pub(crate) fn kcmp(pid1: i32, pid2: i32, what: u32) -> Result<usize, Errno> {
    // SAFETY: kcmp only compares two tasks' resources.
    unsafe { host::syscall5(__NR_kcmp, pid1 as usize, pid2 as usize, what as usize, 0, 0) }
}

/// Whether a task `tid` exists, in any process (`kill(tid, 0)`).
pub(crate) fn task_exists(tid: i32) -> bool {
    // SAFETY: signal 0 only checks for the task.
    (unsafe { host::syscall2(__NR_kill, tid as usize, 0) }) != Err(Errno::ESRCH)
}

/// `rt_tgsigqueueinfo(getpid(), gettid(), signal, info)`: queues `info`
/// to the calling thread.
pub(crate) fn queue_to_self(signal: u32, info: &SigInfo) -> Result<(), Errno> {
    let mut info = *info;
    // SAFETY: a signal to this very thread, with a valid siginfo.
    unsafe {
        host::syscall4(
            __NR_rt_tgsigqueueinfo,
            getpid() as usize,
            gettid() as usize,
            signal as usize,
            &mut info as *mut SigInfo as usize,
        )
    }
    .map(drop)
}

/// `arch_prctl(code, value)`: sets a thread pointer (ARCH_SET_FS or
/// ARCH_SET_GS) of the calling thread.
///
/// # Safety
/// Code that runs on the thread afterwards finds its thread-local data
/// through the new pointer.
#[inline]
pub(crate) unsafe fn arch_prctl_set(code: u32, value: u64) -> Result<(), Errno> {
    // SAFETY: the caller answers for the new pointer.
    unsafe { host::syscall2(__NR_arch_prctl, code as usize, value as usize) }.map(drop)
}

/// `arch_prctl(code, &value)`: reads a thread pointer (ARCH_GET_FS or
/// ARCH_GET_GS) of the calling thread.
#[inline]
pub(crate) fn arch_prctl_get(code: u32) -> Result<u64, Errno> {
    let mut value = 0u64;
    // SAFETY: the kernel writes one u64 into a local.
    unsafe {
        host::syscall2(
            __NR_arch_prctl,
            code as usize,
            &mut value as *mut u64 as usize,
        )?
    };
    Ok(value)
}

/// The value of `key` in the process's auxiliary vector
/// (/proc/self/auxv), if it has one.
pub(crate) fn auxv(key: u32) -> Option<u64> {
    let mut auxv = [0u8; 128 * 16];
    let len = read_file(c"/proc/self/auxv", &mut auxv).ok()?;
    auxv[..len].chunks_exact(16).find_map(|pair| {
        let word = |at: usize| u64::from_ne_bytes(pair[at..at + 8].try_into().unwrap());
        (word(0) == key as u64).then(|| word(8))
    })
}

/// `futex(addr, FUTEX_WAIT_PRIVATE, expected)`: sleeps while `*addr ==
/// expected` (or until a wake or a signal).
pub(crate) fn futex_wait(addr: &AtomicI32, expected: i32) {
    // SAFETY: a futex wait on a live i32 of ours; no timeout.
    let _ = unsafe {
        host::syscall4(
            __NR_futex,
            addr.as_ptr() as usize,
            (FUTEX_WAIT | FUTEX_PRIVATE_FLAG) as usize,
            expected as u32 as usize,
            0,
        )
    };
}

/// `futex(addr, FUTEX_WAKE_PRIVATE, 1)`: wakes a [`futex_wait`]er.
pub(crate) fn futex_wake_private(addr: &AtomicI32) {
    // SAFETY: a wake only reads the address's futex queue.
    let _ = unsafe {
        host::syscall3(
            __NR_futex,
            addr.as_ptr() as usize,
            (FUTEX_WAKE | FUTEX_PRIVATE_FLAG) as usize,
            1,
        )
    };
}

/// `futex(addr, FUTEX_WAKE, count)` as the kernel makes it for
/// CLONE_CHILD_CLEARTID: shared, on any address (a guest's), which is what
/// its waiters (a thread library's join) wait with.
pub(crate) fn futex_wake_shared(addr: usize, count: u32) {
    // SAFETY: a wake only reads the address's futex queue.
    let _ = unsafe { host::syscall3(__NR_futex, addr, FUTEX_WAKE as usize, count as usize) };
}

/// Gives up the CPU.
pub(crate) fn sched_yield() {
    // SAFETY: sched_yield has no arguments.
    let _ = unsafe { host::syscall0(__NR_sched_yield) };
}

/// A file descriptor of sud's own, closed when dropped.
pub(crate) struct Fd(usize);

impl Fd {
    /// `openat(AT_FDCWD, path, flags | O_CLOEXEC)`.
    pub(crate) fn open(path: &core::ffi::CStr, flags: u32) -> Result<Fd, Errno> {
        // SAFETY: a NUL-terminated path.
        let fd = unsafe {
            host::syscall4(
                __NR_openat,
                AT_FDCWD as usize,
                path.as_ptr() as usize,
                (flags | O_CLOEXEC) as usize,
                0,
            )
        }?;
        Ok(Fd(fd))
    }

    /// `read` into `buf`: the bytes read.
    pub(crate) fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: our buffer, its length.
        unsafe { host::syscall3(__NR_read, self.0, buf.as_mut_ptr() as usize, buf.len()) }
    }

    /// `pwrite64` of `bytes` at offset `at`: the bytes written.
    pub(crate) fn pwrite(&self, bytes: &[u8], at: usize) -> Result<usize, Errno> {
        // SAFETY: our buffer, its length; the kernel checks the offset.
        unsafe {
            host::syscall4(
                __NR_pwrite64,
                self.0,
                bytes.as_ptr() as usize,
                bytes.len(),
                at,
            )
        }
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        let _ = unsafe { host::syscall1(__NR_close, self.0) };
    }
}

/// Reads the start of the file `path` (NUL-terminated) into `buf`: the
/// bytes read.
pub(crate) fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    Fd::open(path, O_RDONLY)?.read(buf)
}

/// `process_vm_readv` of `len` bytes at `remote` in this process into
/// `local`: the bytes copied.
fn process_vm_readv(local: *mut u8, remote: usize, len: usize) -> Result<usize, Errno> {
    process_vm(__NR_process_vm_readv, local, remote, len)
}

/// `process_vm_writev` of `len` bytes from `local` to `remote` in this
/// process: the bytes copied.
fn process_vm_writev(local: *const u8, remote: usize, len: usize) -> Result<usize, Errno> {
    process_vm(__NR_process_vm_writev, local.cast_mut(), remote, len)
}

/// `struct iovec`.
#[repr(C)]
struct IoVec {
    base: *mut u8,
    len: usize,
}

fn process_vm(nr: u32, local: *mut u8, remote: usize, len: usize) -> Result<usize, Errno> {
    let local = IoVec { base: local, len };
    let remote = IoVec {
        base: remote as *mut u8,
        len,
    };
    // SAFETY: both iovecs describe `len` bytes; the local one is the
    // caller's and valid, the remote one is checked by the kernel.
    unsafe {
        host::syscall6(
            nr,
            getpid() as usize,
            &local as *const IoVec as usize,
            1,
            &remote as *const IoVec as usize,
            1,
            0,
        )
    }
}
