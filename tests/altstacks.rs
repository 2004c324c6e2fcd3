//! Alternate signal stacks under dispatch: the SIGSYS handler runs on the
//! thread's own alternate stack, so a guest with no stack room is served; a
//! guest's sigaltstack is virtual (it reads back what it set, its
//! SA_ONSTACK handlers run there, trapped syscalls from them are served,
//! SS_AUTODISARM keeps the thread's state, sud's stack stays installed),
//! and nested handlers fit a small guest stack as natively.  Each test runs
//! in a process of its own.

mod common;

use common::asm::guest_syscall2_at;
use common::guest::{
    FAKE_PPID, LAST_GETPPID_SELECTOR, armed_thread, blocked, emulate_getppid, trapped_getppid,
};
use common::signals::{
    GUEST_HANDLER_RESULT, GUEST_HANDLER_RSP, KernelSigaction, Stack, guest_handler,
    guest_rt_sigaction, raise_as_guest,
};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_getppid, __NR_sigaltstack, __NR_tgkill, SA_ONSTACK, SA_RESTORER, SA_SIGINFO, SIGUSR1,
    SIGUSR2, SS_DISABLE, SS_ONSTACK,
};
use std::sync::atomic::Ordering;
use sud::{Action, Errno, Syscall, Thread, guest};

/// The SIGSYS handler runs on the thread's alternate stack: a guest whose
/// stack pointer leaves no room for a signal frame is still served.
#[test]
fn sigsys_runs_on_the_alternate_stack() {
    isolated("sigsys_runs_on_the_alternate_stack", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        // 256 bytes of stack: far less than one signal frame (2.5-3.5 KB).
        let mut tiny = [0u64; 32];
        let top = tiny.as_mut_ptr() as usize + 32 * 8;
        // SAFETY: switches to the tiny stack for one trapped syscall and back.
        let result = blocked(&thread, || unsafe {
            let result: usize;
            core::arch::asm!(
                "mov r12, rsp",
                "mov rsp, {top}",
                "syscall",
                "mov rsp, r12",
                top = in(reg) top,
                inlateout("rax") __NR_getppid as usize => result,
                out("r12") _, lateout("rcx") _, lateout("r11") _,
            );
            result
        });
        assert_eq!(result, FAKE_PPID);
        let _ = tiny;
    });
}

/// sigaltstack(new, &old) made as guest code: its result and the old stack.
fn guest_sigaltstack(new: Option<&Stack>) -> (Result<usize, Errno>, Stack) {
    let mut old = Stack::default();
    let new = new.map_or(0, |n| n as *const Stack as usize);
    // SAFETY: valid stack_t pointers.
    let r = unsafe { guest::syscall2(__NR_sigaltstack, new, &mut old as *mut Stack as usize) };
    (r, old)
}

/// A guest's own alternate stack is honoured: it reads back what it set
/// (and SS_DISABLE before), its SA_ONSTACK handler runs on it, and trapped
/// syscalls from that handler are still served.
#[test]
fn guest_sigaltstack_is_honoured() {
    isolated("guest_sigaltstack_is_honoured", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let (r, before) = blocked(&thread, || guest_sigaltstack(None));
        assert_eq!(r, Ok(0));
        assert_eq!(
            before.flags, SS_DISABLE as i32,
            "the guest sees sud's own alternate stack"
        );
        let mut memory = vec![0u8; 64 * 1024];
        let theirs = Stack {
            sp: memory.as_mut_ptr() as u64,
            flags: 0,
            size: memory.len() as u64,
        };
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(Some(&theirs))).0,
            Ok(0)
        );
        assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1, theirs);
        let too_small = Stack {
            size: 1024,
            ..theirs
        };
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(Some(&too_small))).0,
            Err(Errno::ENOMEM)
        );
        let action = KernelSigaction {
            handler: guest_handler as *const () as usize,
            flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
            restorer: 0,
            mask: 0,
        };
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action))).0,
            Ok(0)
        );
        let mut real = Stack::default();
        // SAFETY: queries the real alternate stack (the selector says ALLOW).
        unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut real as *mut Stack) };
        assert_ne!(
            real.sp, theirs.sp,
            "the guest's stack is virtual: sud's own stays installed"
        );
        let r = raise_as_guest(&thread, SIGUSR1);
        assert_eq!(r, Ok(0));
        let rsp = GUEST_HANDLER_RSP.load(Ordering::SeqCst);
        assert!(
            (theirs.sp..theirs.sp + theirs.size).contains(&rsp),
            "the handler ran at {rsp:#x}, not on the guest's stack"
        );
        assert_eq!(
            GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
            FAKE_PPID as u64,
            "a syscall from the handler on the guest's stack was not served"
        );
        // Disabled again: the guest sees that; sud's own stack is back.
        let disable = Stack {
            flags: SS_DISABLE as i32,
            ..Default::default()
        };
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(Some(&disable))).0,
            Ok(0)
        );
        assert_eq!(
            blocked(&thread, || guest_sigaltstack(None)).1.flags,
            SS_DISABLE as i32
        );
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        drop(memory);
    });
}

/// With SS_AUTODISARM, the kernel disarms a guest's alternate stack while a
/// handler runs on it: a syscall trapped in that handler still reaches the
/// thread's own state (its selector, flipped to ALLOW for a callback that
/// prints and allocates).
#[test]
fn guest_autodisarm_altstack_keeps_the_threads_state() {
    isolated(
        "guest_autodisarm_altstack_keeps_the_threads_state",
        Ends::Passing,
        || {
            fn talkative(call: &mut Syscall) -> Action {
                if call.number() == __NR_getppid {
                    // Ordinary syscalls in the callback (an allocation, a
                    // write): they must run under ALLOW.
                    let line = format!(
                        "callback: getppid on selector {:p}",
                        call.selector().as_ptr()
                    );
                    eprintln!("{line}");
                }
                emulate_getppid(call)
            }
            sud::install(talkative).unwrap();
            let thread = armed_thread();
            let mut memory = vec![0u8; 64 * 1024];
            let theirs = Stack {
                sp: memory.as_mut_ptr() as u64,
                flags: linux_raw_sys::general::SS_AUTODISARM as i32,
                size: memory.len() as u64,
            };
            assert_eq!(
                blocked(&thread, || guest_sigaltstack(Some(&theirs))).0,
                Ok(0)
            );
            assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1, theirs);
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
                restorer: 0,
                mask: 0,
            };
            assert_eq!(
                blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action))).0,
                Ok(0)
            );
            let r = raise_as_guest(&thread, SIGUSR1);
            assert_eq!(r, Ok(0));
            let rsp = GUEST_HANDLER_RSP.load(Ordering::SeqCst);
            assert!(
                (theirs.sp..theirs.sp + theirs.size).contains(&rsp),
                "the handler ran at {rsp:#x}"
            );
            assert_eq!(
                GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
                FAKE_PPID as u64
            );
            assert_eq!(
                LAST_GETPPID_SELECTOR.load(Ordering::SeqCst),
                thread.selector().as_ptr() as u64,
                "the trap in the handler went to another state"
            );
            assert!(
                !sud::SELECTOR.is_blocked(),
                "the global selector was left at BLOCK"
            );
            drop(memory);
        },
    );
}

/// A guest's sigaltstack made with RSP just above its alternate stack in
/// use (off it, so the kernel allows it) takes effect: the guest reads the
/// new stack back, and sud's own stays installed.
#[test]
fn guest_sigaltstack_just_above_the_old_stack() {
    isolated(
        "guest_sigaltstack_just_above_the_old_stack",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let mut memory = vec![0u8; 3 * 64 * 1024];
            let base = (memory.as_mut_ptr() as u64 + 15) & !15;
            let first = Stack {
                sp: base,
                flags: 0,
                size: 64 * 1024,
            };
            let second = Stack {
                sp: base + 2 * 64 * 1024,
                ..first
            };
            assert_eq!(
                blocked(&thread, || guest_sigaltstack(Some(&first))).0,
                Ok(0)
            );
            // RSP 64 bytes above the first stack: off it, as the kernel judges.
            let rsp = first.sp + first.size + 64;
            // SAFETY: the guest syscall runs on `memory`, which is ours.
            let r = blocked(&thread, || unsafe {
                guest_syscall2_at(
                    rsp,
                    __NR_sigaltstack as u64,
                    &second as *const Stack as u64,
                    0,
                )
            });
            let mut real = Stack::default();
            // SAFETY: queries the real alternate stack (the selector says ALLOW).
            unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut real as *mut Stack) };
            assert_eq!(r, 0, "sigaltstack failed");
            assert_ne!(real.sp, first.sp, "sud's own stack stays installed");
            assert_ne!(real.sp, second.sp, "sud's own stack stays installed");
            assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1, second);
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
            drop(memory);
        },
    );
}

/// What the nested handlers of [`nested_handlers_on_a_small_guest_stack`]
/// saw: [SIGUSR1's, SIGUSR2's] RSP, sigaltstack read-back flags, getppid
/// result; SIGUSR1's sigaltstack change from inside; SIGUSR2 handled inside.
mod nested {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicU64};

    pub static RSP: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    pub static FLAGS: [AtomicI64; 2] = [AtomicI64::new(-1), AtomicI64::new(-1)];
    pub static PPID: [AtomicI64; 2] = [AtomicI64::new(0), AtomicI64::new(0)];
    pub static CHANGE: AtomicI64 = AtomicI64::new(1);
    pub static INNER_DONE_FIRST: AtomicI64 = AtomicI64::new(0);

    fn report(level: usize) {
        RSP[level].store(common::guest::stack_pointer(), Ordering::SeqCst);
        let mut old = Stack::default();
        // SAFETY: a valid stack_t out.
        let r = unsafe { guest::syscall2(__NR_sigaltstack, 0, &mut old as *mut Stack as usize) };
        FLAGS[level].store(r.map_or(-1, |_| old.flags as i64), Ordering::SeqCst);
        // SAFETY: getppid has no arguments or effects.
        let ppid = unsafe { guest::syscall0(__NR_getppid) };
        PPID[level].store(ppid.map_or(-1, |p| p as i64), Ordering::SeqCst);
    }

    /// SIGUSR1's handler: reports, tries to move the alternate stack (EPERM
    /// on it), raises SIGUSR2 (handled at once, nested) and sees it done.
    pub extern "C" fn outer(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        report(0);
        let elsewhere = Stack {
            sp: 0x1000_0000,
            flags: 0,
            size: 64 * 1024,
        };
        // SAFETY: a valid stack_t in; refused while on the current one.
        let r =
            unsafe { guest::syscall2(__NR_sigaltstack, &elsewhere as *const Stack as usize, 0) };
        CHANGE.store(
            r.map_or_else(|e| -(e.raw() as i64), |v| v as i64),
            Ordering::SeqCst,
        );
        let (pid, tid) = (std::process::id() as usize, common::proc::gettid() as usize);
        // SAFETY: SIGUSR2 to this thread, whose handler is `inner`.
        let _ = unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGUSR2 as usize) };
        INNER_DONE_FIRST.store(
            (PPID[1].load(Ordering::SeqCst) != 0) as i64,
            Ordering::SeqCst,
        );
    }

    /// SIGUSR2's handler, run inside `outer`.
    pub extern "C" fn inner(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        report(1);
    }

    /// What the run saw, each field in turn.
    pub fn seen() -> ([u64; 2], [i64; 2], [i64; 2], i64, i64) {
        let load = |a: &[AtomicU64; 2]| [a[0].load(Ordering::SeqCst), a[1].load(Ordering::SeqCst)];
        let loadi = |a: &[AtomicI64; 2]| [a[0].load(Ordering::SeqCst), a[1].load(Ordering::SeqCst)];
        (
            load(&RSP),
            loadi(&FLAGS),
            loadi(&PPID),
            CHANGE.load(Ordering::SeqCst),
            INNER_DONE_FIRST.load(Ordering::SeqCst),
        )
    }
}

/// Two nested SA_ONSTACK guest handlers that make syscalls, on an alternate
/// stack of `size` bytes: natively (unarmed, the kernel's own handling) if
/// `thread` is None, else as guest code under sud.  What they saw.
fn nested_handlers_on(
    size: usize,
    thread: Option<&Thread>,
) -> ([u64; 2], [i64; 2], [i64; 2], i64, i64) {
    let as_guest = |f: &mut dyn FnMut()| match thread {
        Some(thread) => blocked(thread, f),
        None => f(),
    };
    let mut memory = vec![0u8; size];
    let theirs = Stack {
        sp: memory.as_mut_ptr() as u64,
        flags: 0,
        size: size as u64,
    };
    as_guest(&mut || assert_eq!(guest_sigaltstack(Some(&theirs)).0, Ok(0)));
    for (signal, handler) in [
        (SIGUSR1, nested::outer as *const () as usize),
        (SIGUSR2, nested::inner as *const () as usize),
    ] {
        match thread {
            Some(_) => {
                let action = KernelSigaction {
                    handler,
                    flags: (SA_SIGINFO | SA_RESTORER | SA_ONSTACK) as u64,
                    restorer: 0,
                    mask: 0,
                };
                as_guest(&mut || assert_eq!(guest_rt_sigaction(signal, Some(&action)).0, Ok(0)));
            }
            None => {
                // SAFETY: a zeroed sigaction with a valid handler; libc
                // supplies the restorer the kernel needs.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = handler;
                    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                    assert_eq!(
                        libc::sigaction(signal as i32, &action, std::ptr::null_mut()),
                        0
                    );
                }
            }
        }
    }
    let (pid, tid) = (std::process::id() as usize, common::proc::gettid() as usize);
    // SAFETY: SIGUSR1 to this thread, whose handler is ready.
    as_guest(&mut || {
        assert_eq!(
            unsafe { guest::syscall3(__NR_tgkill, pid, tid, SIGUSR1 as usize) },
            Ok(0)
        )
    });
    let disable = Stack {
        flags: SS_DISABLE as i32,
        ..Default::default()
    };
    as_guest(&mut || assert_eq!(guest_sigaltstack(Some(&disable)).0, Ok(0)));
    let seen = nested::seen();
    for rsp in seen.0 {
        assert!(
            (theirs.sp..theirs.sp + theirs.size).contains(&rsp),
            "a handler ran at {rsp:#x}, not on the guest's stack {:#x}+{size:#x}",
            theirs.sp
        );
    }
    drop(memory);
    seen
}

/// The guest alternate stack of the nested-handler tests: SIGSTKSZ.
const SMALL_ALTSTACK: usize = 8 * 1024;

/// Two nested SA_ONSTACK handlers that make syscalls, natively, on an 8 KiB
/// (SIGSTKSZ) alternate stack: they run, on it, and see SS_ONSTACK, EPERM for
/// a change from inside, the inner one run inside the outer one.  What
/// [`nested_handlers_on_a_small_guest_stack`] holds sud to.
#[test]
fn nested_handlers_on_a_small_stack_natively() {
    isolated(
        "nested_handlers_on_a_small_stack_natively",
        Ends::Passing,
        || {
            let (_, flags, ppid, change, inner_first) = nested_handlers_on(SMALL_ALTSTACK, None);
            assert_eq!(flags, [SS_ONSTACK as i64; 2]);
            assert!(ppid.iter().all(|&p| p > 0), "{ppid:?}");
            assert_eq!((change, inner_first), (-(libc::EPERM as i64), 1));
        },
    );
}

/// The same guest handlers fit the same 8 KiB guest alternate stack under
/// sud, and see the same (their syscalls served by the callback).
#[test]
fn nested_handlers_on_a_small_guest_stack() {
    isolated(
        "nested_handlers_on_a_small_guest_stack",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let (_, flags, ppid, change, inner_first) =
                nested_handlers_on(SMALL_ALTSTACK, Some(&thread));
            assert_eq!(flags, [SS_ONSTACK as i64; 2]);
            assert_eq!(ppid, [FAKE_PPID as i64; 2]);
            assert_eq!((change, inner_first), (-(libc::EPERM as i64), 1));
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        },
    );
}
