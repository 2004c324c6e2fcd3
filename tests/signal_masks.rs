//! The guest's signal mask under dispatch: a guest may block every signal,
//! SIGSYS included, and read back what it set while SIGSYS really stays
//! deliverable; every syscall that waits under a mask of its own (ppoll,
//! pselect6, epoll_pwait, epoll_pwait2, io_pgetevents, io_uring_enter,
//! rt_sigsuspend) waits with the guest's mask but SIGSYS, and gives the
//! guest its registers and memory back as it left them.  Each test runs in
//! a process of its own.

mod common;

use common::guest::{FAKE_PPID, armed_thread, blocked, emulate_getppid, trapped_getppid};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_epoll_pwait, __NR_epoll_pwait2, __NR_io_pgetevents, __NR_io_uring_enter, __NR_ppoll,
    __NR_pselect6, __NR_rt_sigprocmask, __NR_rt_sigsuspend,
};
use sud::{Errno, Thread, guest};

/// A guest that blocks every signal, SIGSYS included, keeps being trapped;
/// it reads back the mask it set, while the thread's real mask lacks SIGSYS.
#[test]
fn guest_blocking_all_signals_survives() {
    isolated("guest_blocking_all_signals_survives", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let all = u64::MAX;
        let mut old = 0u64;
        let (set, after, get) = blocked(&thread, || {
            // SAFETY: rt_sigprocmask with valid sets.
            unsafe {
                let set = guest::syscall4(
                    __NR_rt_sigprocmask,
                    libc::SIG_SETMASK as usize,
                    &all as *const u64 as usize,
                    0,
                    8,
                );
                let after = trapped_getppid();
                let get = guest::syscall4(
                    __NR_rt_sigprocmask,
                    libc::SIG_SETMASK as usize,
                    0,
                    &mut old as *mut u64 as usize,
                    8,
                );
                (set, after, get)
            }
        });
        assert_eq!((set, after, get), (Ok(0), Ok(FAKE_PPID), Ok(0)));
        let sigkill_sigstop = common::bit(libc::SIGKILL) | common::bit(libc::SIGSTOP);
        assert_eq!(
            old,
            all & !sigkill_sigstop,
            "the guest does not see the mask it set"
        );
        let real = common::sigblk(common::gettid());
        assert_eq!(
            real & common::bit(libc::SIGSYS),
            0,
            "SIGSYS is really blocked"
        );
        assert_eq!(real | common::bit(libc::SIGSYS), all & !sigkill_sigstop);
        // A trapped syscall with every other signal blocked still works.
        assert_eq!(blocked(&thread, trapped_getppid), Ok(FAKE_PPID));
    });
}

/// ppoll with a mask holding SIGSYS waits with SIGSYS deliverable, and the
/// guest's mask pointer is given back untouched.
#[test]
fn ppoll_with_sigsys_in_its_mask() {
    isolated("ppoll_with_sigsys_in_its_mask", Ends::Passing, || {
        sud::install(emulate_getppid).unwrap();
        let thread = armed_thread();
        let mask = u64::MAX;
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 300_000_000,
        };
        let tid = common::gettid();
        let watcher = std::thread::spawn(move || {
            common::wait_blocked_in(tid, __NR_ppoll as i64);
            common::sigblk(tid)
        });
        let mask_pointer = &mask as *const u64 as usize;
        let (result, r10_after) = blocked(&thread, || {
            let result: usize;
            let r10_after: usize;
            // SAFETY: ppoll on no fds with a timeout and a valid mask; r10 is
            // checked to come back as the guest passed it.
            unsafe {
                core::arch::asm!(
                    "syscall",
                    inlateout("rax") __NR_ppoll as usize => result,
                    in("rdi") 0, in("rsi") 0, in("rdx") &timeout as *const libc::timespec,
                    inlateout("r10") mask_pointer => r10_after, in("r8") 8,
                    lateout("rcx") _, lateout("r11") _,
                );
            }
            (result, r10_after)
        });
        assert_eq!(result, 0, "ppoll timed out");
        assert_eq!(r10_after, mask_pointer, "the guest's r10 changed");
        let during = watcher.join().unwrap();
        assert_eq!(
            during & common::bit(libc::SIGSYS),
            0,
            "SIGSYS was blocked during ppoll"
        );
        assert_ne!(
            during & common::bit(libc::SIGUSR1),
            0,
            "the rest of the guest's mask was not applied"
        );
    });
}

/// Makes syscall `nr` with `args`, trapped and reissued on this armed
/// thread, while another thread checks, as it waits, that the guest's mask
/// (every signal but SIGUSR2) is applied without SIGSYS; with `wake`, it
/// then sends SIGUSR2.  The argument registers must come back as given.
fn masked_wait(thread: &Thread, nr: u32, args: [usize; 6], wake: bool) -> usize {
    extern "C" fn ignore(_: i32) {}
    common::libc_handler(libc::SIGUSR2, ignore, 0);
    let tid = common::gettid();
    let watcher = std::thread::spawn(move || {
        common::wait_blocked_in(tid, nr as i64);
        let during = common::sigblk(tid);
        if wake {
            // SAFETY: a signal to the waiting thread.
            unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR2) };
        }
        during
    });
    let (result, after) = blocked(thread, || {
        let (result, a0, a1, a2, a3, a4, a5): (usize, usize, usize, usize, usize, usize, usize);
        // SAFETY: the caller passes valid arguments for `nr`.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") nr as usize => result,
                inlateout("rdi") args[0] => a0, inlateout("rsi") args[1] => a1, inlateout("rdx") args[2] => a2,
                inlateout("r10") args[3] => a3, inlateout("r8") args[4] => a4, inlateout("r9") args[5] => a5,
                lateout("rcx") _, lateout("r11") _,
            );
        }
        (result, [a0, a1, a2, a3, a4, a5])
    });
    let during = watcher.join().unwrap();
    assert_eq!(after, args, "syscall {nr}: the argument registers changed");
    assert_eq!(
        during & common::bit(libc::SIGSYS),
        0,
        "syscall {nr}: SIGSYS blocked while waiting"
    );
    assert_ne!(
        during & common::bit(libc::SIGUSR1),
        0,
        "syscall {nr}: the guest's mask was not applied"
    );
    result
}

/// Every syscall that waits under a mask of its own, given a mask with
/// SIGSYS: SIGSYS stays deliverable while it waits, the rest applies, and
/// the guest's registers and memory are as it left them.
#[test]
fn masked_waits_keep_sigsys_deliverable() {
    isolated(
        "masked_waits_keep_sigsys_deliverable",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            let thread = armed_thread();
            let mask = !common::bit(libc::SIGUSR2);
            let mask_at = &mask as *const u64 as usize;
            // A timeout of 200 ms for each call (pselect6 writes back what is left of its own).
            let timeouts = [libc::timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            }; 3];
            let short_at = |i: usize| &timeouts[i] as *const libc::timespec as usize;
            let etime = Errno::from_raw(libc::ETIME).unwrap().to_syscall_result();

            // rt_sigsuspend(mask, size): until SIGUSR2 comes.
            let r = masked_wait(&thread, __NR_rt_sigsuspend, [mask_at, 8, 0, 0, 0, 0], true);
            assert_eq!(r, Errno::EINTR.to_syscall_result());

            // pselect6(0, NULL, NULL, NULL, timeout, &{mask, size}).
            let pair = [mask_at, 8];
            let r = masked_wait(
                &thread,
                __NR_pselect6,
                [0, 0, 0, 0, short_at(0), pair.as_ptr() as usize],
                false,
            );
            assert_eq!(r, 0);

            // epoll_pwait(epfd, events, 1, 200 ms, mask, size), and epoll_pwait2.
            // SAFETY: a fresh epoll instance.
            let epfd = unsafe { libc::epoll_create1(0) } as usize;
            let mut events = [0u64; 4];
            let events_at = events.as_mut_ptr() as usize;
            let r = masked_wait(
                &thread,
                __NR_epoll_pwait,
                [epfd, events_at, 1, 200, mask_at, 8],
                false,
            );
            assert_eq!(r, 0);
            let r = masked_wait(
                &thread,
                __NR_epoll_pwait2,
                [epfd, events_at, 1, short_at(1), mask_at, 8],
                false,
            );
            assert_eq!(r, 0);

            // io_pgetevents(ctx, 1, 1, events, timeout, &{mask, size}).
            let mut ctx = 0u64;
            // SAFETY: io_setup writes the context into a live u64.
            assert_eq!(unsafe { libc::syscall(libc::SYS_io_setup, 1, &mut ctx) }, 0);
            let r = masked_wait(
                &thread,
                __NR_io_pgetevents,
                [
                    ctx as usize,
                    1,
                    1,
                    events_at,
                    short_at(2),
                    pair.as_ptr() as usize,
                ],
                false,
            );
            assert_eq!(r, 0);

            // io_uring_enter(fd, 0, 1, GETEVENTS | EXT_ARG, &getevents_arg, size).
            let mut params = [0u64; 15];
            // SAFETY: io_uring_setup fills a 120-byte struct io_uring_params.
            let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) };
            assert!(
                ring >= 0,
                "io_uring_setup: {}",
                std::io::Error::last_os_error()
            );
            let kernel_timespec = [0i64, 200_000_000];
            let getevents_arg = [mask_at as u64, 8, kernel_timespec.as_ptr() as u64];
            let flags = (linux_raw_sys::io_uring::IORING_ENTER_GETEVENTS
                | linux_raw_sys::io_uring::IORING_ENTER_EXT_ARG) as usize;
            let r = masked_wait(
                &thread,
                __NR_io_uring_enter,
                [
                    ring as usize,
                    0,
                    1,
                    flags,
                    getevents_arg.as_ptr() as usize,
                    24,
                ],
                false,
            );
            assert_eq!(r, etime);
            assert_eq!(
                getevents_arg[0], mask_at as u64,
                "the guest's io_uring_getevents_arg changed"
            );

            assert_eq!(
                mask,
                !common::bit(libc::SIGUSR2),
                "the guest's mask changed"
            );
        },
    );
}
