//! Tasks that guest code creates and ends itself: threads from raw clone and
//! clone3 (armed from their first instruction, with the registers, flags,
//! mask and stack a native child has, in exclusive or inclusive mode, on a
//! selector of their own or on the global one), their slots given back when
//! they exit, signals held until a new thread is set up; fork-like children
//! (fork, clone and clone3 without CLONE_VM) armed again; vfork children that
//! exec.  Each test runs in a process of its own.

mod common;

use common::asm::{
    CloneTest, EXPECTED_CHILD_MASK, VforkTest, guest_clone, guest_fork, guest_vfork_exec,
};
use common::guest::{FAKE_PPID, armed_thread, blocked, emulate_getppid, trapped_getppid};
use common::proc::wait_status;
use common::signals::{KernelSigaction, guest_rt_sigaction};
use common::threads::{THREAD_FLAGS, distinct_mask, run_guest_thread};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_clone, __NR_clone3, __NR_fork, CLONE_PARENT_SETTID, SA_RESTORER, SA_SIGINFO, SIGCHLD,
    SIGUSR1,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use sud::Thread;

#[test]
fn guest_clone_thread_is_armed_from_its_first_instruction() {
    isolated(
        "guest_clone_thread_is_armed_from_its_first_instruction",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            run_guest_thread(&thread, false);
        },
    );
}

#[test]
fn guest_clone3_thread_is_armed_from_its_first_instruction() {
    isolated(
        "guest_clone3_thread_is_armed_from_its_first_instruction",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            run_guest_thread(&thread, true);
        },
    );
}

/// A child of a thread armed in inclusive mode is armed in inclusive mode:
/// the guest code's range is trapped in it too.
#[test]
fn guest_clone_thread_keeps_inclusive_mode() {
    isolated(
        "guest_clone_thread_keeps_inclusive_mode",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = Thread::new().unwrap();
            // The guest: guest_clone's code, up to the next function.
            let range = guest_clone as *const () as usize..guest_fork as *const () as usize;
            thread.arm_inclusive(range).unwrap();
            run_guest_thread(&thread, false);
            run_guest_thread(&thread, true);
        },
    );
}

/// Guest threads that exit leave nothing behind: far more are created, one
/// after another, than sud has slots for (4096).
#[test]
fn exited_guest_threads_leave_nothing_behind() {
    isolated(
        "exited_guest_threads_leave_nothing_behind",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            for i in 0..5000 {
                run_guest_thread(&thread, i % 2 == 0);
            }
        },
    );
}

/// Threads on the global selector create children on it too.
#[test]
fn guest_thread_of_global_selector_thread() {
    isolated(
        "guest_thread_of_global_selector_thread",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            sud::arm().unwrap();
            let mut stack = vec![0u8; 64 * 1024];
            let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
            let child_tid = AtomicU32::new(u32::MAX);
            let mut test = CloneTest {
                flags: THREAD_FLAGS & !(CLONE_PARENT_SETTID as u64),
                stack_top: top,
                ..Default::default()
            };
            test.child_tid = child_tid.as_ptr() as u64;
            // The global selector is shared: the parent stays blocked (its futex
            // waits trapped and reissued) until the child is gone.
            // SAFETY: as in run_guest_thread.
            let tid = unsafe {
                sud::SELECTOR.block();
                let tid = guest_clone(&mut test);
                if tid > 0 {
                    common::wait_for_thread_exit(&child_tid, tid);
                }
                sud::SELECTOR.allow();
                tid
            };
            assert!(tid > 0);
            assert_eq!(test.child_getppid, FAKE_PPID as u64);
        },
    );
}

/// A child in a memory of its own, created from guest code by `nr` with
/// arguments (a1, a2), must have its syscalls trapped.
fn check_fork_like(thread: &Thread, nr: u32, a1: u64, a2: u64) {
    let mask = distinct_mask();
    EXPECTED_CHILD_MASK.store(mask, Ordering::SeqCst);
    // SAFETY: the child only makes syscalls and exits.
    let pid = blocked(thread, || unsafe { guest_fork(nr as u64, a1, a2) });
    assert!(pid > 0, "syscall {nr} failed: {pid}");
    assert_eq!(
        common::sigblk(common::gettid()),
        mask,
        "the parent's signal mask changed (syscall {nr})"
    );
    let status = wait_status(pid);
    assert!(libc::WIFEXITED(status), "child ended {status:#x}");
    let status = libc::WEXITSTATUS(status);
    assert_eq!(
        status & 1,
        0,
        "the child's getppid (syscall {nr}) was not trapped"
    );
    assert_eq!(
        status & 2,
        0,
        "the child's signal mask (syscall {nr}) is not its parent's"
    );
    // And the parent is still trapped, with its state intact.
    assert_eq!(blocked(thread, trapped_getppid), Ok(FAKE_PPID));
}

#[test]
fn guest_fork_child_is_trapped() {
    isolated("guest_fork_child_is_trapped", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        check_fork_like(&thread, __NR_fork, 0, 0);
    });
}

/// clone without CLONE_VM and without a new stack, and clone3 likewise:
/// fork children, armed again.
#[test]
fn guest_clone_and_clone3_fork_children_are_trapped() {
    isolated(
        "guest_clone_and_clone3_fork_children_are_trapped",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            check_fork_like(&thread, __NR_clone, SIGCHLD as u64, 0);
            let mut args = linux_raw_sys::general::clone_args {
                flags: 0,
                pidfd: 0,
                child_tid: 0,
                parent_tid: 0,
                exit_signal: SIGCHLD as u64,
                stack: 0,
                stack_size: 0,
                tls: 0,
                set_tid: 0,
                set_tid_size: 0,
                cgroup: 0,
            };
            let size = std::mem::size_of_val(&args) as u64;
            check_fork_like(&thread, __NR_clone3, &mut args as *mut _ as u64, size);
        },
    );
}

/// How a guest's vfork-and-exec went.
struct VforkOutcome {
    status: i32,
    /// Whether the parent saw the child's write: memory shared.
    shared: bool,
    /// How long the parent was gone: it sleeps until the child execs or exits.
    waited: std::time::Duration,
}

fn vfork_exec(
    thread: &Thread,
    path: &std::ffi::CStr,
    use_clone: bool,
    use_execveat: bool,
) -> VforkOutcome {
    let argv = [path.as_ptr() as *const u8, std::ptr::null()];
    let envp = [std::ptr::null::<u8>()];
    let mut marker = 0u64;
    let mask = distinct_mask();
    let test = VforkTest {
        use_clone: use_clone as u64,
        use_execveat: use_execveat as u64,
        marker: &mut marker,
        sleep: libc::timespec {
            tv_sec: 0,
            tv_nsec: 150_000_000,
        },
        path: path.as_ptr().cast(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        mask,
    };
    let start = std::time::Instant::now();
    // SAFETY: the vfork child only makes syscalls, writes `marker`, execs or exits.
    let pid = blocked(thread, || unsafe { guest_vfork_exec(&test) });
    let waited = start.elapsed();
    assert!(pid > 0, "vfork failed: {pid}");
    assert_eq!(
        common::sigblk(common::gettid()),
        mask,
        "the vfork parent's signal mask changed"
    );
    // SAFETY: the child wrote it before the parent woke.
    let shared = unsafe { std::ptr::read_volatile(&marker) } == 1;
    VforkOutcome {
        status: wait_status(pid),
        shared,
        waited,
    }
}

#[test]
fn guest_vfork_execve_true_and_missing() {
    isolated("guest_vfork_execve_true_and_missing", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        for (use_clone, use_execveat) in [(false, false), (true, false), (false, true)] {
            let how = format!("clone {use_clone}, execveat {use_execveat}");
            let outcome = vfork_exec(&thread, c"/bin/true", use_clone, use_execveat);
            let status = outcome.status;
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{how}: /bin/true ended {status:#x}"
            );
            assert!(
                outcome.shared,
                "{how}: the child did not share its parent's memory"
            );
            assert!(
                outcome.waited >= std::time::Duration::from_millis(150),
                "{how}: the parent did not wait ({:?})",
                outcome.waited
            );
            let outcome = vfork_exec(&thread, c"/nonexistent/program", use_clone, use_execveat);
            assert!(
                libc::WIFEXITED(outcome.status),
                "{how}: ended {:#x}",
                outcome.status
            );
            assert_eq!(
                libc::WEXITSTATUS(outcome.status),
                libc::ENOENT,
                "{how}: the child did not get ENOENT"
            );
            // The parent came back to the right place, still trapped.
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        }
    });
}

static SETUP_SIGNALS_HANDLED: AtomicUsize = AtomicUsize::new(0);
static SETUP_SIGNALS_UNARMED: AtomicUsize = AtomicUsize::new(0);
/// Where the kernel writes each new thread's tid (CLONE_PARENT_SETTID), for
/// the thread that signals it at once.
static NEW_THREAD_TID: AtomicU32 = AtomicU32::new(0);
static STOP_SIGNALLING: AtomicBool = AtomicBool::new(false);

/// A guest handler counting the runs in which its own syscall was not
/// trapped: runs in a thread not yet armed.
extern "C" fn setup_signal_handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if trapped_getppid() != Ok(FAKE_PPID) {
        SETUP_SIGNALS_UNARMED.fetch_add(1, Ordering::SeqCst);
    }
    SETUP_SIGNALS_HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// A signal sent to a new guest thread the moment it exists waits until the
/// thread is set up (its state, alternate stack and arming): the guest's
/// handler always runs in an armed thread.  Another thread sends SIGUSR1 to
/// each new thread as soon as the kernel publishes its tid, which is before
/// the thread has run an instruction.
#[test]
fn signals_wait_until_a_new_thread_is_set_up() {
    isolated(
        "signals_wait_until_a_new_thread_is_set_up",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let action = KernelSigaction {
                handler: setup_signal_handler as *const () as usize,
                flags: (SA_SIGINFO | SA_RESTORER) as u64,
                restorer: 0,
                mask: 0,
            };
            let (r, _) = blocked(&thread, || guest_rt_sigaction(SIGUSR1, Some(&action)));
            assert_eq!(r, Ok(0));
            let pid = std::process::id() as i32;
            let signaller = std::thread::spawn(move || {
                let mut sent = 0;
                while !STOP_SIGNALLING.load(Ordering::SeqCst) {
                    let tid = NEW_THREAD_TID.swap(0, Ordering::SeqCst);
                    // SAFETY: a signal to a thread of this process (or ESRCH once it is gone).
                    if tid != 0
                        && unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, SIGUSR1) } == 0
                    {
                        sent += 1;
                    }
                }
                sent
            });
            let mut stack = vec![0u8; 64 * 1024];
            let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
            for _ in 0..300 {
                let child_tid = AtomicU32::new(u32::MAX);
                let mut test = CloneTest {
                    flags: THREAD_FLAGS,
                    stack_top: top,
                    parent_tid: NEW_THREAD_TID.as_ptr() as u64,
                    child_tid: child_tid.as_ptr() as u64,
                    ..Default::default()
                };
                // SAFETY: as in run_guest_thread: `stack` outlives the child,
                // which writes only into `test`.
                let tid = blocked(&thread, || unsafe { guest_clone(&mut test) });
                assert!(tid > 0, "clone failed: {tid}");
                common::wait_for_thread_exit(&child_tid, tid);
                assert_eq!(
                    test.child_getppid, FAKE_PPID as u64,
                    "the child's syscalls were not trapped"
                );
            }
            STOP_SIGNALLING.store(true, Ordering::SeqCst);
            let sent = signaller.join().unwrap();
            let handled = SETUP_SIGNALS_HANDLED.load(Ordering::SeqCst);
            println!("{sent} signals sent to new threads, {handled} handled");
            assert!(handled > 0, "no signal reached a new thread ({sent} sent)");
            assert_eq!(
                SETUP_SIGNALS_UNARMED.load(Ordering::SeqCst),
                0,
                "a guest handler ran in a thread not yet armed ({handled} handled)"
            );
        },
    );
}
