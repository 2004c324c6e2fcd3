//! Many tasks at once: no table of sud's caps what a process may do below
//! what the kernel allows.  10,000 guest threads alive at once (raw clone),
//! 200 threads inside a guest vfork at once, thousands of `Thread`s and of
//! guest alternate stacks at once.  Each test runs in a process of its own.

mod common;

use common::asm::{Parked, VforkTest, guest_clone_parked, guest_vfork_exec};
use common::guest::{FAKE_PPID, armed_thread, blocked, emulate_getppid, trapped_getppid};
use common::proc::wait_status;
use common::signals::Stack;
use common::threads::THREAD_FLAGS;
use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_getppid, __NR_sigaltstack, CLONE_PARENT_SETTID};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use sud::{Action, Syscall, Thread, guest};

/// Runs `body` on `count` std threads (small stacks) that all reach a
/// barrier before any goes on: everything they hold, they hold at once.
/// Each reports an error as a string; returns the errors.
fn at_once<S>(
    count: usize,
    body: impl Fn() -> Result<S, String> + Send + Sync + 'static,
) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(count));
    let body = Arc::new(body);
    let threads: Vec<_> = (0..count)
        .map(|_| {
            let (barrier, body) = (barrier.clone(), body.clone());
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let held = body();
                    barrier.wait();
                    held.err()
                })
                .expect("spawn a std thread")
        })
        .collect();
    threads
        .into_iter()
        .filter_map(|thread| thread.join().unwrap())
        .collect()
}

/// 10,000 guest threads made by the guest's own clone, all alive and armed
/// at once (each answers its trapped getppid, then waits on a futex), then
/// released: natively a process may have that many (sud capped live
/// managed threads at 4096).
#[test]
fn ten_thousand_guest_threads_at_once() {
    isolated("ten_thousand_guest_threads_at_once", Ends::Passing, || {
        const THREADS: usize = 10_000;
        const STACK: usize = 16 * 1024;
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let release = AtomicU32::new(0);
        let stacks = vec![0u8; THREADS * STACK];
        let parked: Vec<Parked> = (0..THREADS)
            .map(|_| Parked {
                ppid: AtomicU64::new(0),
                release: &release,
            })
            .collect();
        let child_tids: Vec<AtomicU32> = (0..THREADS).map(|_| AtomicU32::new(u32::MAX)).collect();
        let flags = THREAD_FLAGS & !(CLONE_PARENT_SETTID as u64);
        let start = Instant::now();
        let mut tids = Vec::with_capacity(THREADS);
        for i in 0..THREADS {
            let top = (stacks.as_ptr() as u64 + ((i + 1) * STACK) as u64) & !15;
            // SAFETY: the child runs on its own part of `stacks` and writes
            // only `parked[i]`; all outlive it (we wait for its exit below).
            let tid = blocked(&thread, || unsafe {
                guest_clone_parked(flags, top, &child_tids[i], &parked[i])
            });
            assert!(tid > 0, "guest thread {i}: clone failed: {tid}");
            tids.push(tid);
        }
        let created = start.elapsed();
        let deadline = Instant::now() + Duration::from_secs(60);
        for (i, parked) in parked.iter().enumerate() {
            while parked.ppid.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "guest thread {i} never ran");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(
                parked.ppid.load(Ordering::SeqCst),
                FAKE_PPID as u64,
                "guest thread {i} was not armed"
            );
        }
        let armed = start.elapsed();
        release.store(1, Ordering::SeqCst);
        // SAFETY: a futex wake on a live u32.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                release.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
            )
        };
        for (child_tid, &tid) in child_tids.iter().zip(&tids) {
            common::wait_for_thread_exit(child_tid, tid);
        }
        eprintln!(
            "{THREADS} guest threads: created in {created:?}, all armed after {armed:?}, \
             all gone after {:?}",
            start.elapsed()
        );
        // Their slots are free again; a new one still works.
        let mut test_stack = vec![0u8; STACK];
        let top = (test_stack.as_mut_ptr() as u64 + STACK as u64) & !15;
        let last = Parked {
            ppid: AtomicU64::new(0),
            release: &release,
        };
        let last_tid = AtomicU32::new(u32::MAX);
        // SAFETY: as above; `release` is set, so the child exits at once.
        let tid = blocked(&thread, || unsafe {
            guest_clone_parked(flags, top, &last_tid, &last)
        });
        assert!(tid > 0, "clone after the others: {tid}");
        common::wait_for_thread_exit(&last_tid, tid);
        assert_eq!(last.ppid.load(Ordering::SeqCst), FAKE_PPID as u64);
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
    });
}

/// 200 threads inside a guest vfork at once, each child sleeping 200 ms
/// before it exits: all succeed, as natively (sud had room for 64).
#[test]
fn two_hundred_vforks_at_once() {
    isolated("two_hundred_vforks_at_once", Ends::Passing, || {
        const THREADS: usize = 200;
        sud::install(emulate_getppid).unwrap();
        let start = Instant::now();
        let errors = at_once(THREADS, || {
            let thread = Thread::new().map_err(|e| format!("Thread::new: {e:?}"))?;
            thread.arm().map_err(|e| format!("arm: {e:?}"))?;
            let path = c"/nonexistent/program";
            let argv = [path.as_ptr() as *const u8, std::ptr::null()];
            let envp = [std::ptr::null::<u8>()];
            let mut marker = 0u64;
            let test = VforkTest {
                use_clone: 0,
                use_execveat: 0,
                marker: &mut marker,
                sleep: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 200_000_000,
                },
                path: path.as_ptr().cast(),
                argv: argv.as_ptr(),
                envp: envp.as_ptr(),
                mask: common::sigblk(common::gettid()),
            };
            // SAFETY: the vfork child only makes syscalls, writes `marker`,
            // tries to exec and exits.
            let pid = blocked(&thread, || unsafe { guest_vfork_exec(&test) });
            if pid <= 0 {
                return Err(format!("vfork failed: {pid}"));
            }
            // The child exits with exec's errno (ENOENT), or 98/99 if its
            // mask or arming was wrong.
            match wait_status(pid) {
                status if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == libc::ENOENT => {
                    Ok(())
                }
                status => Err(format!("vfork child ended with status {status:#x}")),
            }
        });
        let elapsed = start.elapsed();
        eprintln!("{THREADS} vforks at once: {elapsed:?}");
        assert!(
            errors.is_empty(),
            "{} of {THREADS} failed: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        // One after another they would take 40 s.
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    });
}

/// 5,000 std threads with a `Thread` each, all alive at once, each trapping
/// a getppid: beyond the 4096 slots sud had.
#[test]
fn five_thousand_threads_with_states_at_once() {
    isolated(
        "five_thousand_threads_with_states_at_once",
        Ends::Passing,
        || {
            const THREADS: usize = 5_000;
            sud::install(emulate_getppid).unwrap();
            let start = Instant::now();
            let errors = at_once(THREADS, || {
                let thread = Thread::new().map_err(|e| format!("Thread::new: {e:?}"))?;
                thread.arm().map_err(|e| format!("arm: {e:?}"))?;
                match blocked(&thread, trapped_getppid) {
                    Ok(FAKE_PPID) => Ok(thread),
                    other => Err(format!("trapped getppid: {other:?}")),
                }
            });
            eprintln!(
                "{THREADS} threads with states at once: {:?}",
                start.elapsed()
            );
            assert!(
                errors.is_empty(),
                "{} of {THREADS} failed: {:?}",
                errors.len(),
                &errors[..errors.len().min(5)]
            );
        },
    );
}

/// 400 threads, each with an alternate stack of its guest's own installed,
/// all at once: a trapped syscall's frame on each is still traced to its
/// thread (sud recorded 256 such stacks).
#[test]
fn four_hundred_guest_alternate_stacks_at_once() {
    isolated(
        "four_hundred_guest_alternate_stacks_at_once",
        Ends::Passing,
        || {
            const THREADS: usize = 400;
            const SIZE: usize = 64 * 1024;
            /// getppid answers the trapped thread's selector: that its
            /// state was found from the frame.
            fn answer_selector(call: &mut Syscall) -> Action {
                if call.number() == __NR_getppid {
                    Action::Emulate(call.selector().as_ptr() as usize)
                } else {
                    Action::Reissue
                }
            }
            sud::install(answer_selector).unwrap();
            let errors = at_once(THREADS, || {
                let thread = Thread::new().map_err(|e| format!("Thread::new: {e:?}"))?;
                thread.arm().map_err(|e| format!("arm: {e:?}"))?;
                let memory = vec![0u8; SIZE];
                let theirs = Stack {
                    sp: memory.as_ptr() as u64,
                    flags: 0,
                    size: SIZE as u64,
                };
                // SAFETY: a valid stack_t; `memory` outlives the Thread,
                // whose drop puts back the alternate stack it found.
                let set = blocked(&thread, || unsafe {
                    guest::syscall2(__NR_sigaltstack, &theirs as *const Stack as usize, 0)
                });
                if set != Ok(0) {
                    return Err(format!("guest sigaltstack: {set:?}"));
                }
                // SAFETY: getppid has no arguments or effects.
                let answer = blocked(&thread, || unsafe { guest::syscall0(__NR_getppid) });
                if answer != Ok(thread.selector().as_ptr() as usize) {
                    return Err(format!("trapped getppid answered {answer:x?}"));
                }
                Ok((thread, memory))
            });
            assert!(
                errors.is_empty(),
                "{} of {THREADS} failed: {:?}",
                errors.len(),
                &errors[..errors.len().min(5)]
            );
        },
    );
}

/// Where the kernel refuses sud the memory for a thread's state (here an
/// address-space limit too low for even the smallest arena), `Thread::new`
/// says so with an error of its own, not an errno that reads as a
/// syscall's; with the limit lifted it succeeds.
#[test]
fn no_memory_for_a_state_is_out_of_memory() {
    isolated(
        "no_memory_for_a_state_is_out_of_memory",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let vm_kb: u64 = status
                .lines()
                .find_map(|line| line.strip_prefix("VmSize:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            let mut old = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain rlimit calls on this process.
            unsafe {
                libc::getrlimit(libc::RLIMIT_AS, &mut old);
                let low = libc::rlimit {
                    rlim_cur: (vm_kb + 1024) * 1024,
                    rlim_max: old.rlim_max,
                };
                assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &low), 0);
            }
            let refused = Thread::new().map(drop);
            // SAFETY: as above.
            unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) };
            assert_eq!(refused, Err(sud::Error::OutOfMemory));
            let thread = armed_thread();
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
        },
    );
}
