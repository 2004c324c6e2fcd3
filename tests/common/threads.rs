//! A guest thread made by guest code's raw clone or clone3, checked against
//! what a native clone gives the child: its registers, flags, stack and
//! mask, the tid words, and that its syscalls are trapped on a selector of
//! its own.

use super::asm::{CloneTest, guest_clone};
use super::guest::{FAKE_PPID, LAST_GETPPID_SELECTOR, blocked};
use linux_raw_sys::general::{
    CLONE_CHILD_CLEARTID, CLONE_FILES, CLONE_FS, CLONE_PARENT_SETTID, CLONE_SIGHAND, CLONE_SYSVSEM,
    CLONE_THREAD, CLONE_VM,
};
use std::sync::atomic::{AtomicU32, Ordering};
use sud::Thread;

/// Gives this thread a mask of its own (SIGUSR2 blocked, not SIGSYS) for
/// a guest clone to keep, and returns it.
pub fn distinct_mask() -> u64 {
    // SAFETY: a valid sigset; this thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mask = super::sigblk(super::gettid());
    assert_ne!(mask & super::bit(libc::SIGUSR2), 0);
    mask
}

/// clone's flags for a thread, as a thread library passes them, with both
/// tid words.
pub const THREAD_FLAGS: u64 = (CLONE_VM
    | CLONE_FS
    | CLONE_FILES
    | CLONE_SIGHAND
    | CLONE_THREAD
    | CLONE_SYSVSEM
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID) as u64;

/// Creates a guest thread with raw clone or clone3 from guest code, waits
/// for it to exit, and checks what it saw.
pub fn run_guest_thread(thread: &Thread, use_clone3: bool) {
    let mask = distinct_mask();
    let mut stack = vec![0u8; 64 * 1024];
    let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
    let parent_tid = AtomicU32::new(0);
    let child_tid = AtomicU32::new(u32::MAX);
    let mut test = CloneTest {
        flags: THREAD_FLAGS,
        stack_top: top,
        ..Default::default()
    };
    test.parent_tid = parent_tid.as_ptr() as u64;
    test.child_tid = child_tid.as_ptr() as u64;
    if use_clone3 {
        test.clone3 = 1;
        // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, ...
        let base = stack.as_mut_ptr() as u64;
        test.args[..8].copy_from_slice(&[
            THREAD_FLAGS,
            0,
            test.child_tid,
            test.parent_tid,
            0,
            base,
            top - base,
            0,
        ]);
    }
    // SAFETY: the guest creates a thread on `stack`, which outlives it (we
    // wait for its exit below); the child writes only into `test`.
    let tid = blocked(thread, || unsafe { guest_clone(&mut test) });
    assert!(tid > 0, "clone failed: {tid}");
    assert_eq!(
        super::sigblk(super::gettid()),
        mask,
        "the parent's signal mask changed"
    );
    assert_eq!(
        parent_tid.load(Ordering::SeqCst),
        tid as u32,
        "CLONE_PARENT_SETTID"
    );
    // CLONE_CHILD_CLEARTID: the kernel zeroes child_tid and wakes us at its exit.
    super::wait_for_thread_exit(&child_tid, tid);
    assert_eq!(
        test.child_regs,
        [
            0x1111111111111111,
            0x2222222222222222,
            0x3333333333333333,
            0x4444444444444444,
            0x5555555555555555
        ]
    );
    // Every other register as native: the syscall's arguments, RFLAGS.
    let args = if use_clone3 {
        [
            test.args.as_ptr() as u64,
            std::mem::size_of::<linux_raw_sys::general::clone_args>() as u64,
            0,
            0,
            0,
        ]
    } else {
        [THREAD_FLAGS, top, test.parent_tid, test.child_tid, 0]
    };
    assert_eq!(test.child_args, args);
    assert_eq!(
        test.child_flags, test.parent_flags,
        "RFLAGS differ between parent and child"
    );
    assert_eq!(
        test.parent_flags & 1,
        1,
        "the carry flag set before the syscall was lost"
    );
    assert_eq!(test.child_rsp, top, "the child started on its own stack");
    assert_eq!(
        test.child_mask, mask,
        "the child's signal mask is not its parent's"
    );
    assert_eq!(
        test.child_getppid, FAKE_PPID as u64,
        "the child's syscalls were not trapped"
    );
    let child_selector = LAST_GETPPID_SELECTOR.load(Ordering::SeqCst);
    assert_ne!(
        child_selector,
        thread.selector().as_ptr() as u64,
        "the child shares its parent's selector"
    );
    assert_ne!(
        child_selector,
        sud::SELECTOR.as_ptr() as u64,
        "the child is on the global selector"
    );
}
