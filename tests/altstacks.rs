//! Alternate signal stacks under dispatch: the SIGSYS handler runs on the
//! thread's own alternate stack, so a guest with no stack room is served; a
//! guest's sigaltstack is virtual where it must be (it reads back what it
//! set, its SA_ONSTACK handlers run there, trapped syscalls from them are
//! served, SS_AUTODISARM keeps the thread's state) and never reported done
//! and left undone.  Each test runs in a process of its own.

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
    __NR_getppid, __NR_sigaltstack, SA_ONSTACK, SA_RESTORER, SA_SIGINFO, SIGUSR1, SS_DISABLE,
};
use std::sync::atomic::Ordering;
use sud::{Action, Errno, Syscall, guest};

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
        assert_eq!(
            (real.sp, real.size),
            (theirs.sp, theirs.size),
            "the guest's stack is not really installed"
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
/// use (off it, so the kernel would allow it) either installs the new stack
/// for real or is refused: never reported done and left undone.  sud runs
/// the real sigaltstack a little below the guest's RSP, which there lies on
/// the old stack; it answers EPERM.
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
            match r {
                0 => assert_eq!(
                    (real.sp, real.size),
                    (second.sp, second.size),
                    "sigaltstack reported success, but the stack was not installed"
                ),
                r => {
                    assert_eq!(r, -(libc::EPERM as i64), "sigaltstack failed: {r}");
                    assert_eq!(
                        (real.sp, real.size),
                        (first.sp, first.size),
                        "refused, yet the stack changed"
                    );
                    assert_eq!(blocked(&thread, || guest_sigaltstack(None)).1.sp, first.sp);
                }
            }
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
            drop(memory);
        },
    );
}
