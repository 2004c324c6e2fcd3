//! Threads on the global selector (`sud::arm`) whose guest creates threads:
//! each new thread gets a selector of its own, so one thread's time in its
//! callback (the global selector at ALLOW) never lets another's syscalls
//! run untrapped.  Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::guest::FAKE_PPID;
use common::threads::THREAD_FLAGS;
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_clone, __NR_exit, __NR_getpid, __NR_getppid, __NR_rt_sigprocmask, CLONE_PARENT_SETTID,
    SIG_BLOCK,
};
use std::mem::offset_of;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use sud::{Action, SELECTOR, Syscall};

/// What `guest_clone_masking_child` reads and writes.
#[repr(C)]
#[derive(Default)]
struct MaskingChild {
    flags: u64,
    stack: u64,
    child_tid: u64,
    gate: AtomicU64,
    masked: AtomicU64,
    first: u64,
    second: u64,
}

core::arch::global_asm!(
    include_str!("common/masking_child.s"),
    NR_CLONE = const __NR_clone,
    NR_RT_SIGPROCMASK = const __NR_rt_sigprocmask,
    NR_GETPPID = const __NR_getppid,
    NR_EXIT = const __NR_exit,
    SIG_BLOCK = const SIG_BLOCK,
    M_FLAGS = const offset_of!(MaskingChild, flags),
    M_STACK = const offset_of!(MaskingChild, stack),
    M_CHILD_TID = const offset_of!(MaskingChild, child_tid),
    M_GATE = const offset_of!(MaskingChild, gate),
    M_MASKED = const offset_of!(MaskingChild, masked),
    M_FIRST = const offset_of!(MaskingChild, first),
    M_SECOND = const offset_of!(MaskingChild, second),
);

unsafe extern "C" {
    fn guest_clone_masking_child(t: *mut MaskingChild) -> i64;
}

/// The child the callback opens the gate for.
static CHILD: AtomicPtr<MaskingChild> = AtomicPtr::new(std::ptr::null_mut());

/// getppid emulated; the parent's getpid is where it lingers in its
/// callback (the global selector at ALLOW) until the child has blocked
/// every signal and made a syscall; everything else reissued.
fn policy(call: &mut Syscall) -> Action {
    match call.number() {
        nr if nr == __NR_getppid => Action::Emulate(FAKE_PPID),
        nr if nr == __NR_getpid => {
            // SAFETY: the test's child outlives the callback.
            let child = unsafe { &*CHILD.load(Ordering::SeqCst) };
            child.gate.store(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.masked.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                std::thread::yield_now();
            }
            Action::Emulate(4242)
        }
        _ => Action::Reissue,
    }
}

/// A guest thread made on the global selector blocks every signal, SIGSYS
/// included (glibc's thread exit does), while its creator is in its
/// callback, and then makes trapped syscalls: it is trapped throughout and
/// the process lives.  On one shared selector its mask went through
/// natively, SIGSYS was really blocked, and its next trap killed the process.
#[test]
fn guest_threads_of_the_global_selector_have_selectors_of_their_own() {
    isolated(
        "guest_threads_of_the_global_selector_have_selectors_of_their_own",
        Ends::Passing,
        || {
            sud::install(policy).unwrap();
            sud::arm().unwrap();
            let mut stack = vec![0u8; 64 * 1024];
            let child_tid = AtomicU32::new(u32::MAX);
            let mut child = Box::new(MaskingChild {
                flags: THREAD_FLAGS & !(CLONE_PARENT_SETTID as u64),
                stack: (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15,
                child_tid: child_tid.as_ptr() as u64,
                ..Default::default()
            });
            CHILD.store(&mut *child, Ordering::SeqCst);
            // SAFETY: guest code until allow(): the child runs on `stack`,
            // which outlives it (we wait for its exit), and writes only `child`.
            let (tid, lingered) = unsafe {
                SELECTOR.block();
                let tid = guest_clone_masking_child(&mut *child);
                let lingered = sud::guest::syscall0(__NR_getpid);
                child.gate.store(2, Ordering::SeqCst);
                if tid > 0 {
                    common::wait_for_thread_exit(&child_tid, tid);
                }
                SELECTOR.allow();
                (tid, lingered)
            };
            assert!(tid > 0, "clone: {tid}");
            assert_eq!(lingered, Ok(4242));
            assert_eq!(child.masked.load(Ordering::SeqCst), 1);
            assert_eq!(
                child.first, FAKE_PPID as u64,
                "trapped while its creator was in its callback"
            );
            assert_eq!(child.second, FAKE_PPID as u64, "trapped after");
            drop(stack);
        },
    );
}
