//! Threads with selectors of their own: one thread's flips and callbacks
//! never let another's guest syscalls through; a dropped Thread disarms,
//! puts back the alternate stack it found and gives its slot back; and the
//! stress test, many threads trapping, flipping and taking timer signals at
//! once with every count exact.  Each test runs in a process of its own.

mod common;

use common::guest::{FAKE_PPID, armed_thread, blocked, emulate_getppid, trapped_getppid};
use common::signals::Stack;
use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_getpid, __NR_getppid};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use sud::{Action, Syscall, guest};

/// Two threads with selectors of their own: one thread's flips, and its
/// time in the callback, never let the other's guest syscalls through.
#[test]
fn per_thread_selectors_are_independent() {
    isolated(
        "per_thread_selectors_are_independent",
        Ends::Passing,
        || {
            static IN_CALLBACK: AtomicBool = AtomicBool::new(false);
            static SLOW: AtomicBool = AtomicBool::new(true);
            fn handler(call: &mut Syscall) -> Action {
                if call.number() == __NR_getppid
                    && SLOW.load(Ordering::SeqCst)
                    && call.thread_data() as usize == 1
                {
                    // Thread 1 lingers in the callback with its selector at ALLOW.
                    IN_CALLBACK.store(true, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    IN_CALLBACK.store(false, Ordering::SeqCst);
                }
                emulate_getppid(call)
            }
            sud::install(handler).unwrap();
            let one = std::thread::spawn(|| {
                let thread = armed_thread();
                thread.set_data(std::ptr::without_provenance_mut(1));
                blocked(&thread, trapped_getppid)
            });
            let two = std::thread::spawn(|| {
                let thread = armed_thread();
                thread.set_data(std::ptr::without_provenance_mut(2));
                while !IN_CALLBACK.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                // Thread 1 is in its callback, its selector at ALLOW: ours still blocks.
                let mut results = Vec::new();
                while IN_CALLBACK.load(Ordering::SeqCst) {
                    results.push(blocked(&thread, trapped_getppid));
                    // Our own flips: host code between guest calls runs natively.
                    results.push(Ok(if trapped_getppid() == Ok(FAKE_PPID) {
                        0
                    } else {
                        FAKE_PPID
                    }));
                }
                results
            });
            assert_eq!(one.join().unwrap(), Ok(FAKE_PPID));
            let results = two.join().unwrap();
            assert!(!results.is_empty());
            assert!(
                results.iter().all(|r| *r == Ok(FAKE_PPID)),
                "a syscall leaked or a host call was trapped"
            );
        },
    );
}

/// Dropping a Thread disarms it and puts back the alternate stack it had,
/// and its slot is reused: far more Threads come and go than there are slots.
#[test]
fn thread_teardown_restores_and_disarms() {
    isolated(
        "thread_teardown_restores_and_disarms",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let mut before = Stack::default();
            // SAFETY: queries the current alternate stack.
            unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut before as *mut Stack) };
            let mut last_selector = std::ptr::null_mut();
            for _ in 0..10_000 {
                let thread = armed_thread();
                assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
                last_selector = thread.selector().as_ptr();
            }
            let mut after = Stack::default();
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_sigaltstack, 0, &mut after as *mut Stack) };
            assert_eq!(after, before);
            // Disarmed: with the selector it was armed with at BLOCK, nothing is
            // trapped.  (Its slot stays mapped, so the byte may be written.)
            // SAFETY: writes the selector byte of a released slot.
            unsafe { last_selector.write_volatile(1) };
            let r = trapped_getppid();
            // SAFETY: as above.
            unsafe { last_selector.write_volatile(0) };
            assert_ne!(r, Ok(FAKE_PPID), "the dropped Thread was still armed");
        },
    );
}

/// The stress test: 8 threads, each making 100,000 trapped syscalls mixing
/// emulate (getppid) and reissue (getpid), flipping their own selectors
/// between batches, while a per-thread timer signal fires at a high rate on
/// all of them and its host handler makes syscalls.  Every count exact.
#[test]
fn stress_threads_timers_and_flips() {
    isolated("stress_threads_timers_and_flips", Ends::Passing, || {
        const THREADS: usize = 8;
        const CALLS: usize = 100_000;
        static TRAPPED: AtomicUsize = AtomicUsize::new(0);
        static TICKS: AtomicUsize = AtomicUsize::new(0);
        static BAD_TICKS: AtomicUsize = AtomicUsize::new(0);
        fn handler(call: &mut Syscall) -> Action {
            TRAPPED.fetch_add(1, Ordering::Relaxed);
            emulate_getppid(call)
        }
        /// # Safety
        /// Only the kernel calls it, as a signal handler with its frame.
        unsafe extern "C" fn tick(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
            TICKS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: getpid has no effect; under ALLOW it is never trapped.
            if unsafe { guest::syscall0(__NR_getpid) } != Ok(std::process::id() as usize) {
                BAD_TICKS.fetch_add(1, Ordering::Relaxed);
            }
        }
        sud::install(handler).unwrap();
        let timer_signal = libc::SIGRTMIN() as u32;
        sud::install_host_handler(timer_signal, tick, 0, libc::SA_RESTART as u64).unwrap();
        let pid = std::process::id() as usize;
        let start = std::time::Instant::now();
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                std::thread::spawn(move || {
                    let thread = armed_thread();
                    let timer = per_thread_timer(timer_signal, 200_000); // every 200 us
                    let mut wrong = 0;
                    let mut done = 0;
                    while done < CALLS {
                        let batch = (CALLS - done).min(1000);
                        blocked(&thread, || {
                            for i in 0..batch {
                                if i % 2 == 0 {
                                    wrong += (trapped_getppid() != Ok(FAKE_PPID)) as usize;
                                } else {
                                    // SAFETY: getpid, reissued.
                                    wrong += (unsafe { guest::syscall0(__NR_getpid) } != Ok(pid))
                                        as usize;
                                }
                            }
                        });
                        // Host code between batches: nothing trapped.
                        wrong += (trapped_getppid() == Ok(FAKE_PPID)) as usize;
                        done += batch;
                    }
                    // SAFETY: our own timer.
                    unsafe { libc::timer_delete(timer) };
                    wrong
                })
            })
            .collect();
        let wrong: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        let elapsed = start.elapsed();
        println!(
            "{} trapped, {} timer ticks in {elapsed:?}",
            TRAPPED.load(Ordering::Relaxed),
            TICKS.load(Ordering::Relaxed)
        );
        assert_eq!(wrong, 0);
        assert_eq!(TRAPPED.load(Ordering::Relaxed), THREADS * CALLS);
        assert!(
            TICKS.load(Ordering::Relaxed) > 5000,
            "the timers hardly fired"
        );
        assert_eq!(BAD_TICKS.load(Ordering::Relaxed), 0);
        assert!(elapsed.as_secs() < 60);
    });
}

/// A timer signalling the calling thread every `ns` nanoseconds (high-resolution, not tick-bound).
fn per_thread_timer(signal: u32, ns: i64) -> libc::timer_t {
    // SAFETY: creates and arms a timer for this thread.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal as i32;
        event.sigev_notify_thread_id = common::gettid();
        let mut timer: libc::timer_t = std::mem::zeroed();
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer),
            0
        );
        let period = libc::timespec {
            tv_sec: 0,
            tv_nsec: ns,
        };
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        assert_eq!(
            libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
            0
        );
        timer
    }
}

/// Threads that exit armed, without giving their state back (`sud::arm`
/// and no `disarm`), leave slots that are taken back once every slot has
/// been used: far more of them, one after another, than sud has slots
/// (4096), and a new thread still gets one.
#[test]
fn threads_that_exit_armed_give_their_slots_back() {
    isolated(
        "threads_that_exit_armed_give_their_slots_back",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            for round in 0..20_000 {
                let trapped = std::thread::spawn(|| {
                    sud::arm().unwrap();
                    // SAFETY: only the trapped getppid runs until allow().
                    unsafe { sud::SELECTOR.block() };
                    let ppid = trapped_getppid();
                    sud::SELECTOR.allow();
                    ppid
                })
                .join()
                .unwrap();
                assert_eq!(trapped, Ok(FAKE_PPID), "round {round}");
            }
            let thread = armed_thread();
            assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
            assert_slots_were_taken_back();
        },
    );
}

/// Guest threads whose exit runs natively (here the callback redirects it,
/// and the redirect function makes the exit syscall itself, so sud's exit
/// stub never runs) leave slots that are taken back: 20,000 of them, one
/// after another, five times the slots sud first reserves room for.
#[test]
fn guest_threads_that_exit_natively_give_their_slots_back() {
    isolated(
        "guest_threads_that_exit_natively_give_their_slots_back",
        Ends::Passing,
        || {
            sud::install(|call| {
                if call.number() == linux_raw_sys::general::__NR_exit {
                    sud::Action::Redirect
                } else {
                    emulate_getppid(call)
                }
            })
            .unwrap();
            sud::install_redirect(|call| {
                // SAFETY: this thread ends here, natively, as the guest asked.
                let _ = unsafe {
                    sud::host::syscall1(linux_raw_sys::general::__NR_exit, call.args()[0])
                };
                unreachable!("exit returned")
            })
            .unwrap();
            let thread = armed_thread();
            for _ in 0..20_000 {
                common::threads::run_guest_thread(&thread, false);
            }
            assert_slots_were_taken_back();
        },
    );
}

/// Each slot in use is two mappings (its guard page and the rest): 20,000
/// slots never taken back would be over 40,000 lines in /proc/self/maps.
fn assert_slots_were_taken_back() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mappings = maps.lines().count();
    assert!(
        mappings < 20_000,
        "{mappings} mappings: the slots were not taken back"
    );
}
