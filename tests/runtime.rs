//! The core runtime from an ordinary std program: emulate, reissue and deny,
//! and the callback's changes to the guest's registers taking effect;
//! reissued syscalls that block, are interrupted (EINTR) and are restarted
//! (SA_RESTART) outside signal context; foreign SIGSYS (seccomp) reaching
//! the previous disposition; typed errors, including kernels without the
//! feature (simulated with seccomp).  Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::guest::{armed_thread, blocked as thread_blocked, trapped_getppid};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_fork, __NR_getpid, __NR_getppid, __NR_getuid, __NR_prctl, __NR_read, __NR_rt_sigprocmask,
    __NR_vfork,
};
use linux_raw_sys::prctl::{PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_INCLUSIVE_ON};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use sud::{Action, Errno, Error, SELECTOR, Syscall, guest};

/// A syscall number no kernel has.
const MISSING: u32 = 501;

/// Runs `f` with this thread armed over the allowed region and the global
/// selector at BLOCK.
fn blocked<T>(f: impl FnOnce() -> T) -> T {
    sud::arm().expect("arm");
    // SAFETY: the tests' guest code only makes syscalls meant for the handler.
    unsafe { SELECTOR.block() };
    let out = f();
    SELECTOR.allow();
    sud::disarm().expect("disarm");
    out
}

#[test]
fn emulate_reissue_deny() {
    isolated("emulate_reissue_deny", Ends::Passing, || {
        static TRAPS: AtomicUsize = AtomicUsize::new(0);
        fn handler(call: &mut Syscall) -> Action {
            TRAPS.fetch_add(1, Ordering::SeqCst);
            match call.number() {
                __NR_getppid => Action::Emulate(4242),
                __NR_getpid => Action::Reissue,
                __NR_getuid => Action::Deny(Errno::EPERM),
                _ => Action::default(),
            }
        }
        sud::install(handler).unwrap();
        let pid = std::process::id() as usize;
        // SAFETY: syscalls without arguments or effects.
        let results = blocked(|| unsafe {
            [
                guest::syscall0(__NR_getppid),
                guest::syscall0(__NR_getpid),
                guest::syscall0(__NR_getuid),
                guest::syscall0(MISSING),
            ]
        });
        assert_eq!(
            results,
            [Ok(4242), Ok(pid), Err(Errno::EPERM), Err(Errno::ENOSYS)]
        );
        assert_eq!(TRAPS.load(Ordering::SeqCst), 4);
        // Unarmed, nothing is trapped.
        // SAFETY: as above.
        assert_ne!(unsafe { guest::syscall0(__NR_getppid) }, Ok(4242));
        assert_eq!(TRAPS.load(Ordering::SeqCst), 4);
    });
}

/// The callback can make ordinary syscalls (println!, allocation) because its
/// selector says ALLOW while it runs, and the guest resumes under BLOCK.
#[test]
fn callback_runs_under_allow_and_guest_resumes_blocked() {
    isolated(
        "callback_runs_under_allow_and_guest_resumes_blocked",
        Ends::Passing,
        || {
            static SEEN_BLOCKED: AtomicBool = AtomicBool::new(true);
            fn handler(call: &mut Syscall) -> Action {
                SEEN_BLOCKED.store(SELECTOR.is_blocked(), Ordering::SeqCst);
                let text = format!(
                    "callback: syscall {} from {:#x}",
                    call.number(),
                    call.call_addr()
                );
                println!("{text}");
                Action::Emulate(text.len())
            }
            sud::install(handler).unwrap();
            let (result, blocked_after) = blocked(|| {
                // SAFETY: getppid, trapped.
                let r = unsafe { guest::syscall0(__NR_getppid) };
                (r, SELECTOR.is_blocked())
            });
            assert!(result.unwrap() > 20);
            assert!(
                !SEEN_BLOCKED.load(Ordering::SeqCst),
                "the callback ran under BLOCK"
            );
            assert!(blocked_after, "the guest resumed under ALLOW");
        },
    );
}

/// The callback may change the saved registers: what is reissued, and
/// what the guest resumes with, is what it leaves there.
#[test]
fn callback_changes_to_registers_take_effect() {
    isolated(
        "callback_changes_to_registers_take_effect",
        Ends::Passing,
        || {
            fn handler(call: &mut Syscall) -> Action {
                match call.number() {
                    // Reissue something else: getpid instead of getppid.
                    __NR_getppid => {
                        call.regs_mut().rax = __NR_getpid as u64;
                        Action::Reissue
                    }
                    // Emulate, and hand the guest a register of our choosing.
                    _ => {
                        call.regs_mut().r12 = 0xfeed_f00d;
                        Action::Emulate(5)
                    }
                }
            }
            sud::install(handler).unwrap();
            let thread = armed_thread();
            let pid = std::process::id() as usize;
            assert_eq!(
                thread_blocked(&thread, trapped_getppid),
                Ok(pid),
                "the changed syscall number was not reissued"
            );
            // SAFETY: a trapped syscall 500, r12 given and read back.
            let (result, r12) = thread_blocked(&thread, || unsafe {
                let (result, r12): (usize, u64);
                core::arch::asm!("syscall", inlateout("rax") 500usize => result, inlateout("r12") 1u64 => r12,
                lateout("rcx") _, lateout("r11") _);
                (result, r12)
            });
            assert_eq!((result, r12), (5, 0xfeed_f00d));
        },
    );
}

static HANDLED_SIGNALS: AtomicU32 = AtomicU32::new(0);
extern "C" fn count_signal(_: i32) {
    HANDLED_SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// A reissued `read` on an empty pipe, in a guest thread, with a SIGUSR1
/// handler installed with `flags`; another thread interrupts the read with
/// SIGUSR1, then (for SA_RESTART) writes to the pipe.  Returns the read's
/// result, the number of dispatched syscalls, the instruction pointer the
/// thread was blocked at and its signal mask while blocked.
fn interrupted_read(
    flags: i32,
    write_after_signal: bool,
) -> (Result<usize, Errno>, usize, usize, u64) {
    static READS: AtomicUsize = AtomicUsize::new(0);
    fn handler(call: &mut Syscall) -> Action {
        if call.number() == __NR_read {
            READS.fetch_add(1, Ordering::SeqCst);
        }
        Action::Reissue
    }
    sud::install(handler).unwrap();
    common::libc_handler(libc::SIGUSR1, count_signal, flags);
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read_fd, write_fd) = (fds[0], fds[1]);
    let tid = std::sync::Arc::new(AtomicI32::new(0));
    let guest = {
        let tid = tid.clone();
        std::thread::spawn(move || {
            // The guest's own mask: SIGUSR2 blocked.  The reissued read must
            // run under it, not under the handler's all-blocked mask.
            // SAFETY: a valid sigset.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR2);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            tid.store(common::gettid(), Ordering::SeqCst);
            let mut buf = [0u8; 16];
            // SAFETY: read into a live buffer.
            blocked(|| unsafe {
                guest::syscall3(__NR_read, read_fd as usize, buf.as_mut_ptr() as usize, 16)
            })
        })
    };
    while tid.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let tid = tid.load(Ordering::SeqCst);
    let pc = common::wait_blocked_in(tid, __NR_read as i64);
    let mask = common::sigblk(tid);
    // SAFETY: a signal to our own thread.
    assert_eq!(
        unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) },
        0
    );
    if write_after_signal {
        // The read must be blocked again, restarted, before the data comes.
        while HANDLED_SIGNALS.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        common::wait_blocked_in(tid, __NR_read as i64);
        // SAFETY: writes 5 bytes from a live buffer.
        assert_eq!(
            unsafe { libc::write(write_fd, b"hello".as_ptr().cast(), 5) },
            5
        );
    }
    let result = guest.join().unwrap();
    (result, READS.load(Ordering::SeqCst), pc, mask)
}

/// Checks where and how the reissued read blocked: in sud_reissue (outside
/// signal context), under the guest's own mask.
fn check_blocked_in_reissue_stub(pc: usize, mask: u64) {
    let stub = sud::region_symbols().reissue;
    assert!(
        (stub..stub + 16).contains(&pc),
        "read blocked at {pc:#x}, not in sud_reissue at {stub:#x}"
    );
    assert_eq!(
        mask,
        common::bit(libc::SIGUSR2),
        "the reissued read ran under mask {mask:#x}"
    );
}

#[test]
fn reissued_read_interrupted_gives_eintr() {
    isolated(
        "reissued_read_interrupted_gives_eintr",
        Ends::Passing,
        || {
            let (result, reads, pc, mask) = interrupted_read(0, false);
            check_blocked_in_reissue_stub(pc, mask);
            assert_eq!(result, Err(Errno::EINTR));
            assert_eq!(HANDLED_SIGNALS.load(Ordering::SeqCst), 1);
            assert_eq!(reads, 1);
        },
    );
}

#[test]
fn reissued_read_restarts_under_sa_restart() {
    isolated(
        "reissued_read_restarts_under_sa_restart",
        Ends::Passing,
        || {
            let (result, reads, pc, mask) = interrupted_read(libc::SA_RESTART, true);
            check_blocked_in_reissue_stub(pc, mask);
            assert_eq!(result, Ok(5));
            assert_eq!(HANDLED_SIGNALS.load(Ordering::SeqCst), 1);
            // Restarted by the kernel in the stub, not dispatched again.
            assert_eq!(reads, 1);
        },
    );
}

// seccomp SECCOMP_RET_TRAP raises a SIGSYS with si_code SYS_SECCOMP (1):
// not dispatch, so it belongs to whoever handled SIGSYS before sud.

static PREVIOUS_CODE: AtomicI32 = AtomicI32::new(0);
static PREVIOUS_SYSCALL: AtomicI32 = AtomicI32::new(0);
static PREVIOUS_SELECTOR_BLOCKED: AtomicBool = AtomicBool::new(true);

/// The application's own SIGSYS handler, installed with libc before sud.
extern "C" fn previous_sigsys(_: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo and ucontext for this SIGSYS.
    unsafe {
        let info = &*(info as *const sud::SigInfo);
        PREVIOUS_CODE.store(info.si_code, Ordering::SeqCst);
        PREVIOUS_SYSCALL.store(info.si_syscall, Ordering::SeqCst);
        PREVIOUS_SELECTOR_BLOCKED.store(SELECTOR.is_blocked(), Ordering::SeqCst);
        let uc = &mut *(uc as *mut libc::ucontext_t);
        uc.uc_mcontext.gregs[libc::REG_RAX as usize] = 777;
    }
}

fn install_previous_sigsys() {
    // SAFETY: a zeroed sigaction with an SA_SIGINFO handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = previous_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn seccomp_trap_reaches_previous_handler() {
    isolated(
        "seccomp_trap_reaches_previous_handler",
        Ends::Passing,
        || {
            static DISPATCHED: AtomicUsize = AtomicUsize::new(0);
            fn handler(call: &mut Syscall) -> Action {
                DISPATCHED.fetch_add(1, Ordering::SeqCst);
                if call.number() == MISSING {
                    Action::Reissue
                } else {
                    Action::Emulate(5)
                }
            }
            install_previous_sigsys();
            sud::install(handler).unwrap();
            common::seccomp(MISSING, &[], libc::SECCOMP_RET_TRAP);
            // Not armed: seccomp's SIGSYS goes to the previous handler.
            // SAFETY: a syscall that only traps.
            assert_eq!(unsafe { guest::syscall0(MISSING) }, Ok(777));
            assert_eq!(
                PREVIOUS_CODE.load(Ordering::SeqCst),
                linux_raw_sys::general::SYS_SECCOMP as i32
            );
            assert_eq!(PREVIOUS_SYSCALL.load(Ordering::SeqCst), MISSING as i32);
            assert_eq!(DISPATCHED.load(Ordering::SeqCst), 0);
            // Armed and blocked: dispatch comes before seccomp, so sud's callback
            // sees it; reissued from the allowed region, seccomp traps it there,
            // and that SIGSYS again goes to the previous handler, which runs
            // under ALLOW.
            PREVIOUS_CODE.store(0, Ordering::SeqCst);
            // SAFETY: as above.
            let (other, missing) =
                blocked(|| unsafe { (guest::syscall0(__NR_getppid), guest::syscall0(MISSING)) });
            assert_eq!(other, Ok(5));
            assert_eq!(missing, Ok(777));
            assert_eq!(DISPATCHED.load(Ordering::SeqCst), 2);
            assert_eq!(
                PREVIOUS_CODE.load(Ordering::SeqCst),
                linux_raw_sys::general::SYS_SECCOMP as i32
            );
            assert!(!PREVIOUS_SELECTOR_BLOCKED.load(Ordering::SeqCst));
        },
    );
}

/// A fork or vfork that sud reissues and seccomp traps (SECCOMP_RET_TRAP)
/// raises its SIGSYS in sud's task stub, which blocks other signals around
/// the clone: SIGSYS must stay deliverable there, reach the previous
/// handler, and the guest must get that handler's answer with its own mask.
#[test]
fn seccomp_trap_of_a_reissued_fork_reaches_previous_handler() {
    isolated(
        "seccomp_trap_of_a_reissued_fork_reaches_previous_handler",
        Ends::Passing,
        || {
            install_previous_sigsys();
            sud::install(|_| Action::Reissue).unwrap();
            common::seccomp(__NR_fork, &[], libc::SECCOMP_RET_TRAP);
            common::seccomp(__NR_vfork, &[], libc::SECCOMP_RET_TRAP);
            let mask = common::sigblk(common::gettid());
            for nr in [__NR_fork, __NR_vfork] {
                PREVIOUS_SYSCALL.store(0, Ordering::SeqCst);
                // SAFETY: seccomp traps it: no child is ever made.
                let r = blocked(|| unsafe { guest::syscall0(nr) });
                assert_eq!(r, Ok(777), "syscall {nr}");
                assert_eq!(PREVIOUS_SYSCALL.load(Ordering::SeqCst), nr as i32);
                assert_eq!(
                    common::sigblk(common::gettid()),
                    mask,
                    "syscall {nr}: the guest's mask was not put back"
                );
            }
        },
    );
}

/// With no previous handler the default action applies: death by SIGSYS.
#[test]
fn seccomp_trap_without_previous_handler_kills() {
    isolated(
        "seccomp_trap_without_previous_handler_kills",
        Ends::KilledBy(libc::SIGSYS),
        || {
            sud::install(|_| Action::Emulate(0)).unwrap();
            common::seccomp(MISSING, &[], libc::SECCOMP_RET_TRAP);
            // SAFETY: a syscall that only traps.
            let _ = unsafe { guest::syscall0(MISSING) };
            println!("unreachable: the seccomp SIGSYS was swallowed");
        },
    );
}

/// An ignored SIGSYS from the kernel is forced: the default action again.
#[test]
fn seccomp_trap_with_previous_ignore_kills() {
    isolated(
        "seccomp_trap_with_previous_ignore_kills",
        Ends::KilledBy(libc::SIGSYS),
        || {
            // SAFETY: ignoring SIGSYS.
            unsafe { libc::signal(libc::SIGSYS, libc::SIG_IGN) };
            sud::install(|_| Action::Emulate(0)).unwrap();
            common::seccomp(MISSING, &[], libc::SECCOMP_RET_TRAP);
            // SAFETY: a syscall that only traps.
            let _ = unsafe { guest::syscall0(MISSING) };
            println!("unreachable: the seccomp SIGSYS was ignored");
        },
    );
}

/// An ignored SIGSYS sent by a process stays ignored, as without sud.
#[test]
fn sent_sigsys_with_previous_ignore_is_ignored() {
    isolated(
        "sent_sigsys_with_previous_ignore_is_ignored",
        Ends::Passing,
        || {
            // SAFETY: ignoring SIGSYS, then sending it to ourselves.
            unsafe {
                libc::signal(libc::SIGSYS, libc::SIG_IGN);
                sud::install(|_| Action::Emulate(0)).unwrap();
                assert_eq!(libc::raise(libc::SIGSYS), 0);
            }
        },
    );
}

/// uninstall() puts the previous handler back.
#[test]
fn uninstall_restores_previous_handler() {
    isolated("uninstall_restores_previous_handler", Ends::Passing, || {
        install_previous_sigsys();
        sud::install(|_| Action::Emulate(0)).unwrap();
        sud::uninstall().unwrap();
        // SAFETY: reading the current disposition.
        let current = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGSYS, std::ptr::null(), &mut action);
            action
        };
        assert_eq!(current.sa_sigaction, previous_sigsys as *const () as usize);
        // SAFETY: kill ourselves with SIGSYS: the previous handler gets it.
        unsafe { libc::raise(libc::SIGSYS) };
        assert_eq!(PREVIOUS_CODE.load(Ordering::SeqCst), libc::SI_TKILL);
    });
}

#[test]
fn support_is_detected() {
    let support = sud::support();
    // This project's machines run Linux 6.18.
    assert_eq!(
        support,
        sud::Support {
            exclusive: true,
            inclusive: true
        }
    );
}

#[test]
fn bad_arming_arguments_are_typed_errors() {
    isolated(
        "bad_arming_arguments_are_typed_errors",
        Ends::Passing,
        || {
            // Arming succeeds only with sud's SIGSYS handler installed.
            sud::install(|_| Action::default()).unwrap();
            let region = sud::allowed_region();
            let einval = Err(Error::Os(Errno::EINVAL));
            assert_eq!(sud::arm_inclusive(0x1000..0x1000), einval, "empty range");
            assert_eq!(
                sud::arm_inclusive(region.start - 8..region.start + 8),
                einval,
                "overlaps region"
            );
            assert_eq!(
                sud::arm_inclusive(region.end - 1..region.end + 100),
                einval,
                "overlaps region end"
            );
            // SAFETY: all refused by the kernel before it changes anything.
            unsafe {
                assert_eq!(
                    sud::set_syscall_user_dispatch(1, 0, 1, usize::MAX as *const u8),
                    Err(Error::Os(Errno::EFAULT))
                );
                assert_eq!(
                    sud::set_syscall_user_dispatch(1, usize::MAX, 2, SELECTOR.as_ptr()),
                    einval
                );
                assert_eq!(
                    sud::set_syscall_user_dispatch(7, 0, 0, std::ptr::null()),
                    einval
                );
                assert_eq!(
                    sud::set_syscall_user_dispatch(0, 1, 0, std::ptr::null()),
                    einval
                );
            }
            // A good range next to the region is accepted.
            assert_eq!(sud::arm_inclusive(region.end..region.end + 1), Ok(()));
            assert_eq!(sud::disarm(), Ok(()));
        },
    );
}

/// Where arming is forbidden (a kernel sysctl is being discussed for it;
/// here a seccomp filter answers EPERM), the EPERM comes back as it is.
#[test]
fn arming_forbidden_is_eperm() {
    isolated("arming_forbidden_is_eperm", Ends::Passing, || {
        common::seccomp(
            __NR_prctl,
            &[PR_SET_SYSCALL_USER_DISPATCH],
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        );
        assert_eq!(sud::arm(), Err(Error::Os(Errno::EPERM)));
    });
}

/// A kernel without syscall user dispatch answers EINVAL to everything;
/// seccomp makes this one do that.  sud detects it and says so.
#[test]
fn kernel_without_sud_is_detected() {
    isolated("kernel_without_sud_is_detected", Ends::Passing, || {
        common::seccomp(
            __NR_prctl,
            &[PR_SET_SYSCALL_USER_DISPATCH],
            libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32,
        );
        assert_eq!(
            sud::support(),
            sud::Support {
                exclusive: false,
                inclusive: false
            }
        );
        assert_eq!(sud::arm(), Err(Error::NoSyscallUserDispatch));
        assert_eq!(sud::disarm(), Err(Error::NoSyscallUserDispatch));
        let region = sud::allowed_region();
        assert_eq!(
            sud::arm_inclusive(region.end..region.end + 1),
            Err(Error::NoSyscallUserDispatch)
        );
    });
}

/// A kernel before 6.17 knows exclusive mode but answers EINVAL for
/// inclusive mode; seccomp makes this one do that.
#[test]
fn kernel_without_inclusive_mode_is_detected() {
    isolated(
        "kernel_without_inclusive_mode_is_detected",
        Ends::Passing,
        || {
            common::seccomp(
                __NR_prctl,
                &[PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_INCLUSIVE_ON],
                libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32,
            );
            // Arming succeeds only with sud's SIGSYS handler installed.
            sud::install(|_| Action::default()).unwrap();
            assert_eq!(
                sud::support(),
                sud::Support {
                    exclusive: true,
                    inclusive: false
                }
            );
            let region = sud::allowed_region();
            assert_eq!(
                sud::arm_inclusive(region.end..region.end + 1),
                Err(Error::NoInclusiveMode)
            );
            assert_eq!(sud::arm(), Ok(()));
            assert_eq!(sud::disarm(), Ok(()));
        },
    );
}

/// While a thread is blocked, the runtime's own syscalls (here
/// rt_sigprocmask through sud::host) are never dispatched.
#[test]
fn host_syscalls_are_never_dispatched() {
    isolated("host_syscalls_are_never_dispatched", Ends::Passing, || {
        static TRAPS: AtomicUsize = AtomicUsize::new(0);
        sud::install(|_| {
            TRAPS.fetch_add(1, Ordering::SeqCst);
            Action::Emulate(0)
        })
        .unwrap();
        let mut old = 0u64;
        // SAFETY: reads the mask into a live u64.
        let r = blocked(|| unsafe {
            sud::host::syscall4(__NR_rt_sigprocmask, 0, 0, &mut old as *mut u64 as usize, 8)
        });
        assert_eq!(r, Ok(0));
        assert_eq!(TRAPS.load(Ordering::SeqCst), 0);
    });
}
