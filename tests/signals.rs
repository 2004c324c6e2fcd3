//! Signal dispositions and handlers under dispatch: a guest's handlers are
//! guest code (trapped syscalls, a virtual SIGSYS in their masks), its own
//! SIGSYS disposition is virtual, its rt_sigaction keeps sud's record and
//! the kernel in step (also against a concurrent one, and apart from a vfork
//! child's); host handlers, and handlers adopted from others, run under
//! ALLOW, and a guest's action for a host signal is kept aside.  Each test
//! runs in a process of its own.

mod common;

use common::asm::guest_vfork_sigaction;
use common::guest::{
    FAKE_PPID, armed_thread, blocked, emulate_getppid, stack_pointer, trapped_getppid,
};
use common::proc::wait_status;
use common::signals::{
    GUEST_HANDLED, GUEST_HANDLER_RESULT, KernelSigaction, Stack, guest_handler, guest_rt_sigaction,
    raise_as_guest,
};
use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_rt_sigprocmask, SA_RESTORER, SA_SIGINFO, SIGSYS, SIGUSR1};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use sud::guest;

/// A guest's rt_sigaction with every signal in its mask: SIGSYS is left out
/// of what is installed, but the guest reads back its own mask; its handler
/// runs as guest code, and SIGSYS set in its frame's mask stays virtual.
#[test]
fn guest_handlers_are_guest_code_with_virtual_masks() {
    isolated(
        "guest_handlers_are_guest_code_with_virtual_masks",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0x1234,
                mask: u64::MAX,
            };
            let (r, _) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action)));
            assert_eq!(r, Ok(0));
            let (r, old) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, None));
            assert_eq!(r, Ok(0));
            assert_eq!(
                old,
                KernelSigaction {
                    mask: !(common::bit(libc::SIGKILL) | common::bit(libc::SIGSTOP)),
                    ..action
                }
            );
            // The real disposition never blocks SIGSYS.
            // SAFETY: reads the current disposition.
            let real = unsafe {
                let mut real: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut real);
                real
            };
            // SAFETY: a valid sigset.
            assert_eq!(unsafe { libc::sigismember(&real.sa_mask, libc::SIGSYS) }, 0);
            // Raise it from guest code: the handler runs as guest code (its getppid trapped).
            let r = raise_as_guest(&thread, SIGUSR1);
            assert_eq!(r, Ok(0));
            assert_eq!(GUEST_HANDLED.load(Ordering::SeqCst), 1);
            assert_eq!(
                GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
                FAKE_PPID as u64
            );
            // Its frame asked for SIGSYS blocked: virtual only.
            let mut mask = 0u64;
            // SAFETY: reads the mask.
            let r = blocked(&thread, || unsafe {
                guest::syscall4(__NR_rt_sigprocmask, 0, 0, &mut mask as *mut u64 as usize, 8)
            });
            assert_eq!(r, Ok(0));
            assert_ne!(
                mask & common::bit(libc::SIGSYS),
                0,
                "the guest's frame mask was lost"
            );
            assert_eq!(
                common::sigblk(common::gettid()) & common::bit(libc::SIGSYS),
                0
            );
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        },
    );
}

static GUEST_SIGSYS: AtomicUsize = AtomicUsize::new(0);
extern "C" fn guest_sigsys_handler(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo.
    let code = unsafe { (*info).si_code };
    GUEST_SIGSYS.store((code + 1000) as usize, Ordering::SeqCst);
    // Guest code: its syscalls are dispatched, even here.
    GUEST_HANDLER_RESULT.store(trapped_getppid().unwrap_or(0) as u64, Ordering::SeqCst);
}

/// The guest's own SIGSYS handler is virtual: it is reported back, receives
/// the SIGSYS that are not dispatch, and dispatch goes on; an ignored SIGSYS
/// is virtual too.
#[test]
fn guest_sigsys_disposition_is_virtual() {
    isolated("guest_sigsys_disposition_is_virtual", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let action = KernelSigaction {
            handler: guest_sigsys_handler as *const () as usize,
            flags: (SA_SIGINFO | SA_RESTORER) as u64,
            restorer: 0x1234,
            mask: 0,
        };
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGSYS, Some(&action))).0,
            Ok(0)
        );
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGSYS, None)).1,
            action
        );
        // Dispatch still works, and a SIGSYS sent to this thread reaches the guest.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        let r = raise_as_guest(&thread, SIGSYS);
        assert_eq!(r, Ok(0));
        assert_eq!(
            GUEST_SIGSYS.load(Ordering::SeqCst),
            (libc::SI_TKILL + 1000) as usize
        );
        assert_eq!(
            GUEST_HANDLER_RESULT.load(Ordering::SeqCst),
            FAKE_PPID as u64
        );
        // SIG_IGN: virtual; dispatch still works.
        let ignore = KernelSigaction {
            handler: libc::SIG_IGN,
            ..Default::default()
        };
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGSYS, Some(&ignore))).0,
            Ok(0)
        );
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        // An ignored SIGSYS to this thread.
        let r = raise_as_guest(&thread, SIGSYS);
        assert_eq!(r, Ok(0));
    });
}

/// Two threads setting the same signal's disposition at the same moment,
/// round after round: what the guest reads back (sud's record) and what is
/// installed always agree: SIG_IGN recorded is SIG_IGN installed, a handler
/// recorded is sud's entry installed.
#[test]
fn concurrent_guest_rt_sigaction_keeps_record_and_kernel_in_step() {
    isolated(
        "concurrent_guest_rt_sigaction_keeps_record_and_kernel_in_step",
        Ends::Passing,
        || {
            extern "C" fn ignore(_: i32) {}
            sud::install(emulate_getppid).unwrap();
            const ROUNDS: usize = 3000;
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
            let setter = |handler: usize| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let thread = armed_thread();
                    let action = KernelSigaction {
                        handler,
                        flags: (SA_SIGINFO | SA_RESTORER) as u64,
                        restorer: 0,
                        mask: 0,
                    };
                    for _ in 0..ROUNDS {
                        barrier.wait();
                        let (r, _) = blocked(&thread, || {
                            guest_rt_sigaction(libc::SIGUSR2 as u32, Some(&action))
                        });
                        assert_eq!(r, Ok(0));
                        barrier.wait();
                    }
                })
            };
            let threads = [setter(libc::SIG_IGN), setter(ignore as *const () as usize)];
            let mut disagreements = 0;
            for _ in 0..ROUNDS {
                barrier.wait();
                barrier.wait();
                let recorded = sud::guest_action(libc::SIGUSR2 as u32).unwrap().handler;
                // SAFETY: reads the installed disposition.
                let installed = unsafe {
                    let mut real: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut real);
                    real.sa_sigaction
                };
                if (recorded == libc::SIG_IGN) != (installed == libc::SIG_IGN) {
                    disagreements += 1;
                }
            }
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(
                disagreements, 0,
                "recorded and installed dispositions disagreed in {disagreements} of {ROUNDS} rounds"
            );
        },
    );
}

/// A vfork child shares its parent's memory, where sud keeps the guest's
/// dispositions, but not its handler table: what it sets (as a posix_spawn
/// child resets every handled signal to SIG_DFL before it execs) stays its
/// own.  The parent still reads back its handler, and its handler still
/// runs.
#[test]
fn vfork_child_rt_sigaction_leaves_the_parents_handlers() {
    isolated(
        "vfork_child_rt_sigaction_leaves_the_parents_handlers",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0,
                mask: 0,
            };
            let (r, _) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action)));
            assert_eq!(r, Ok(0));
            let default = KernelSigaction::default();
            // SAFETY: the vfork child only makes syscalls and exits.
            let pid = blocked(&thread, || unsafe { guest_vfork_sigaction(&default) });
            assert!(pid > 0, "vfork failed: {pid}");
            let status = wait_status(pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the child's rt_sigaction failed: {status:#x}"
            );
            assert_eq!(
                sud::guest_action(SIGUSR1).map(|a| a.handler),
                Some(action.handler),
                "the child's SIG_DFL became the parent's"
            );
            let (r, old) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, None));
            assert_eq!(r, Ok(0));
            assert_eq!(old.handler, action.handler);
            let before = GUEST_HANDLED.load(Ordering::SeqCst);
            let r = raise_as_guest(&thread, SIGUSR1);
            assert_eq!(r, Ok(0));
            assert_eq!(
                GUEST_HANDLED.load(Ordering::SeqCst),
                before + 1,
                "the parent's handler did not run"
            );
        },
    );
}

static HOST_RUNS: AtomicUsize = AtomicUsize::new(0);
static HOST_SYSCALL_OK: AtomicBool = AtomicBool::new(false);
static HOST_RSP: AtomicU64 = AtomicU64::new(0);
static HOST_SAW_ALLOW: AtomicBool = AtomicBool::new(false);
static SPIN_FLAG: AtomicU64 = AtomicU64::new(0);
static THREAD_SELECTOR: AtomicU64 = AtomicU64::new(0);

/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn host_handler(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
    HOST_RUNS.fetch_add(1, Ordering::SeqCst);
    HOST_RSP.store(stack_pointer(), Ordering::SeqCst);
    let selector = THREAD_SELECTOR.load(Ordering::SeqCst) as *const u8;
    // SAFETY: the armed thread's selector byte, alive for the test.
    HOST_SAW_ALLOW.store(unsafe { selector.read_volatile() } == 0, Ordering::SeqCst);
    // Under ALLOW: an ordinary syscall runs natively.
    HOST_SYSCALL_OK.store(trapped_getppid() != Ok(FAKE_PPID), Ordering::SeqCst);
    SPIN_FLAG.store(1, Ordering::SeqCst);
}

/// Guest code that spins, making no syscall, until `flag` is set.
fn spin_until(flag: &AtomicU64) {
    // SAFETY: reads the flag in a loop; no syscall, no stack.
    unsafe {
        core::arch::asm!("2:", "cmp qword ptr [{0}], 0", "je 2b", in(reg) flag.as_ptr(), options(nostack));
    }
}

/// Host handlers run under ALLOW, whatever the interrupted thread's
/// selector said, on the thread's alternate stack, and the selector is put
/// back on return: here the signal lands while guest code spins under BLOCK.
#[test]
fn host_handlers_run_under_allow() {
    isolated("host_handlers_run_under_allow", Ends::Passing, || {
        static TRAPS: AtomicUsize = AtomicUsize::new(0);
        sud::install(|call| {
            TRAPS.fetch_add(1, Ordering::SeqCst);
            emulate_getppid(call)
        })
        .unwrap();
        sud::install_host_handler(SIGUSR1, host_handler, 0, 0).unwrap();
        let thread = armed_thread();
        THREAD_SELECTOR.store(thread.selector().as_ptr() as u64, Ordering::SeqCst);
        let tid = common::gettid();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            // SAFETY: a signal to the spinning thread.
            unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) };
        });
        let still_blocked = blocked(&thread, || {
            spin_until(&SPIN_FLAG);
            thread.selector().is_blocked()
        });
        sender.join().unwrap();
        assert!(still_blocked, "the selector was not put back");
        assert_eq!(HOST_RUNS.load(Ordering::SeqCst), 1);
        assert!(
            HOST_SAW_ALLOW.load(Ordering::SeqCst),
            "the host handler ran under BLOCK"
        );
        assert!(
            HOST_SYSCALL_OK.load(Ordering::SeqCst),
            "the host handler's syscall was trapped"
        );
        assert_eq!(TRAPS.load(Ordering::SeqCst), 0, "something was trapped");
        // On the thread's alternate stack.
        let mut altstack = Stack::default();
        // SAFETY: queries the alternate stack.
        unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut altstack as *mut Stack) };
        let rsp = HOST_RSP.load(Ordering::SeqCst);
        assert!(
            (altstack.sp..altstack.sp + altstack.size).contains(&rsp),
            "the host handler ran at {rsp:#x}, off {altstack:x?}"
        );
    });
}

/// A guest's rt_sigaction for a signal with a host handler is recorded,
/// not installed: the host handler keeps the signal, and guest_action()
/// tells it what the guest asked for.
#[test]
fn guest_action_for_a_host_signal_is_kept_aside() {
    isolated(
        "guest_action_for_a_host_signal_is_kept_aside",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            sud::install_host_handler(SIGUSR1, host_handler, 0, 0).unwrap();
            let thread = armed_thread();
            THREAD_SELECTOR.store(thread.selector().as_ptr() as u64, Ordering::SeqCst);
            assert_eq!(sud::guest_action(SIGUSR1), None);
            let action = KernelSigaction {
                handler: guest_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0x1234,
                mask: 1 << 3,
            };
            assert_eq!(
                blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action))).0,
                Ok(0)
            );
            assert_eq!(
                sud::guest_action(SIGUSR1).map(|a| (a.handler, a.flags, a.mask)),
                Some((action.handler, action.flags, action.mask))
            );
            let r = raise_as_guest(&thread, SIGUSR1);
            assert_eq!(r, Ok(0));
            assert_eq!(
                HOST_RUNS.load(Ordering::SeqCst),
                1,
                "the host handler lost its signal"
            );
            assert_eq!(
                GUEST_HANDLED.load(Ordering::SeqCst),
                0,
                "the guest's handler was installed"
            );
        },
    );
}

static ADOPTED_RUNS: AtomicUsize = AtomicUsize::new(0);
extern "C" fn someone_elses_handler(_: i32) {
    ADOPTED_RUNS.fetch_add(1, Ordering::SeqCst);
    // An ordinary libc call inside it: must run natively.
    // SAFETY: getppid has no effect.
    if unsafe { libc::getppid() } as usize == FAKE_PPID {
        ADOPTED_RUNS.fetch_add(100, Ordering::SeqCst);
    }
}

/// A handler someone else installed (here with libc) is adopted: it then
/// runs under ALLOW like a host handler.
#[test]
fn adopted_handler_runs_under_allow() {
    isolated("adopted_handler_runs_under_allow", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        common::libc_handler(libc::SIGUSR1, someone_elses_handler, 0);
        sud::adopt_signal(SIGUSR1).unwrap();
        let thread = armed_thread();
        let r = raise_as_guest(&thread, SIGUSR1);
        assert_eq!(r, Ok(0));
        assert_eq!(
            ADOPTED_RUNS.load(Ordering::SeqCst),
            1,
            "not run, or its getppid was trapped"
        );
    });
}
