//! Edges of the host/guest boundary found by an adversarial review, each a
//! reproducer that failed before its fix: signals on threads sud does not
//! manage (the global selector is not theirs to flip, their faults are the
//! host's), guest handlers that start in host code (the guest's thread
//! pointer, and a change they make stays), `sud_entry` with a `Thread`'s
//! selector and a moved FS, a live slot never given away; and fault routing
//! checked against native.  Threads: `edges_threads.rs`.  Each test runs in
//! a process of its own.
#![allow(non_upper_case_globals)]

mod common;

/// Whether the guest code here, which moves FS with `wrfsbase` itself, can
/// run: the kernel enables FSGSBASE (AT_HWCAP2 bit 1).
fn fsgsbase() -> bool {
    // SAFETY: getauxval reads the process's auxiliary vector.
    let enabled = unsafe { libc::getauxval(libc::AT_HWCAP2) } & 2 != 0;
    if !enabled {
        eprintln!("skipped: FSGSBASE is not enabled, and this guest uses wrfsbase");
    }
    enabled
}

use common::guest::GuestTls;
use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_getppid, __NR_tgkill, SA_RESTORER, SIGSEGV, SIGUSR1};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use sud::{Action, SELECTOR, Syscall, Thread};

core::arch::global_asm!(
    include_str!("common/edges.s"),
    NR_GETPPID = const __NR_getppid,
    NR_TGKILL = const __NR_tgkill,
    ENTRY = sym sud_entry_sym,
    NR_CLONE = const linux_raw_sys::general::__NR_clone,
    NR_EXIT = const linux_raw_sys::general::__NR_exit,
);

unsafe extern "C" {
    #[link_name = "sud_entry"]
    fn sud_entry_sym();
    fn rv_entry_with_fs(fs: u64, r11: u64) -> u64;
    fn rv_guest_fs_tgkill(fs: u64, pid: u64, tid: u64, signal: u64) -> u64;
    fn rv_fault();
    fn rv_fault_done();
    fn rv_restorer();
}

thread_local! {
    static TLS_COUNT: Cell<u64> = const { Cell::new(0) };
}

fn tls_callback(call: &mut Syscall) -> Action {
    TLS_COUNT.with(|c| c.set(c.get() + 1));
    if call.number() == __NR_getppid {
        Action::Emulate(4242)
    } else {
        Action::Reissue
    }
}

/// The same with a Thread (R11 = its selector): works.
#[test]
fn entry_thread_selector_fs() {
    if !fsgsbase() {
        return;
    }
    isolated("entry_thread_selector_fs", Ends::Passing, || {
        sud::install(tls_callback).unwrap();
        let t = Thread::new().unwrap();
        t.arm().unwrap();
        let tls = GuestTls::new();
        // SAFETY: the guest routine switches FS to the test's thread area around its `call sud_entry` and back.
        let r = unsafe { rv_entry_with_fs(tls.fs(), t.selector().as_ptr() as u64) };
        assert_eq!(r, 4242);
        assert!(tls.untouched());
        assert_eq!(TLS_COUNT.with(Cell::get), 1);
    });
}

static SEEN_FS: AtomicU64 = AtomicU64::new(0);
extern "C" fn fs_recording_handler(_: i32) {
    let fs: u64;
    // SAFETY: FSGSBASE is enabled on this machine (the test's premise).
    unsafe { core::arch::asm!("rdfsbase {}", out(reg) fs) };
    SEEN_FS.store(fs, Ordering::SeqCst);
}

fn redirect_tgkill(call: &mut Syscall) -> Action {
    if call.number() == __NR_tgkill {
        Action::Redirect
    } else {
        Action::Reissue
    }
}
fn do_tgkill(call: &mut Syscall) -> usize {
    let [a, b, c, ..] = call.args();
    // SAFETY: tgkill with the guest's own arguments, as a redirect function.
    unsafe { libc::syscall(libc::SYS_tgkill, a, b, c) as usize }
}

/// A guest handler runs for a signal that arrives during the guest's
/// (redirected) syscall: natively it sees the guest's FS.
#[test]
fn guest_handler_during_redirect_sees_guest_fs() {
    if !fsgsbase() {
        return;
    }
    isolated(
        "guest_handler_during_redirect_sees_guest_fs",
        Ends::Passing,
        || {
            let (pid, tid) = (std::process::id() as u64, common::gettid() as u64);
            let tls = GuestTls::new();
            // Natively.
            common::libc_handler(libc::SIGUSR1, fs_recording_handler, 0);
            // SAFETY: the routine moves FS to the thread area around the tgkill and back.
            unsafe { rv_guest_fs_tgkill(tls.fs(), pid, tid, SIGUSR1 as u64) };
            let native = SEEN_FS.swap(0, Ordering::SeqCst);
            assert_eq!(native, tls.fs());
            // SAFETY: restores the default disposition of a signal the test raised.
            unsafe { libc::signal(libc::SIGUSR1, libc::SIG_DFL) };
            // Under sud.
            sud::install(redirect_tgkill).unwrap();
            sud::install_redirect(do_tgkill).unwrap();
            let t = Thread::new().unwrap();
            t.arm().unwrap();
            let act = common::signals::KernelSigaction {
                handler: fs_recording_handler as *const () as usize,
                flags: (SA_RESTORER) as u64,
                restorer: rv_restorer as *const () as usize,
                mask: 0,
            };
            let (r, _) = common::guest::blocked(&t, || {
                common::signals::guest_rt_sigaction(SIGUSR1, Some(&act))
            });
            r.unwrap();
            // SAFETY: as above, as guest code.
            let r = common::guest::blocked(&t, || unsafe {
                rv_guest_fs_tgkill(tls.fs(), pid, tid, SIGUSR1 as u64)
            });
            let under = SEEN_FS.load(Ordering::SeqCst);
            let host_fs: u64;
            // SAFETY: FSGSBASE is enabled on this machine.
            unsafe { core::arch::asm!("rdfsbase {}", out(reg) host_fs) };
            eprintln!(
                "tgkill {r}, guest fs {:#x}, host fs {host_fs:#x}, handler saw {under:#x}",
                tls.fs()
            );
            assert_eq!(under, tls.fs(), "guest handler ran with the host's FS");
        },
    );
}

static RECOVERED: AtomicUsize = AtomicUsize::new(0);
/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn recover(_: i32, _: *mut sud::SigInfo, uc: *mut sud::UContext) {
    RECOVERED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel's live frame of this handler; rv_fault_done follows the faulting store.
    unsafe { (*uc).uc_mcontext.regs.rip = rv_fault_done as *const () as usize as u64 };
}

/// A host thread that sud never armed faults while another thread has the
/// global selector at BLOCK: it must reach the host's handler.
#[test]
fn unarmed_thread_fault_goes_to_host_handler() {
    isolated(
        "unarmed_thread_fault_goes_to_host_handler",
        Ends::Passing,
        || {
            sud::install(|_| Action::Reissue).unwrap();
            sud::install_host_handler(SIGSEGV, recover, 0, 0).unwrap();
            // Unblocked: works.
            // SAFETY: rv_fault faults on purpose; the host handler resumes it after the store.
            let h = std::thread::spawn(|| unsafe { rv_fault() });
            h.join().unwrap();
            assert_eq!(RECOVERED.load(Ordering::SeqCst), 1);
            eprintln!(
                "unarmed fault with the global selector at ALLOW: recovered by the host handler"
            );
            static GO: AtomicBool = AtomicBool::new(false);
            static DONE: AtomicBool = AtomicBool::new(false);
            let guest = std::thread::spawn(|| {
                sud::arm().unwrap();
                // SAFETY: this thread then only spins until allow().
                unsafe { SELECTOR.block() };
                GO.store(true, Ordering::SeqCst);
                while !DONE.load(Ordering::SeqCst) {
                    core::hint::spin_loop();
                }
                SELECTOR.allow();
                sud::disarm().unwrap();
            });
            while !GO.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            // SAFETY: as above.
            let h = std::thread::spawn(|| unsafe { rv_fault() });
            let r = h.join();
            DONE.store(true, Ordering::SeqCst);
            guest.join().unwrap();
            r.unwrap();
            assert_eq!(RECOVERED.load(Ordering::SeqCst), 2);
        },
    );
}

/// Thread A: Thread::new, then host code installs an alternate stack of
/// its own, then thread.disarm().  Thread B's Thread::new must not get A's
/// slot (A's Thread is still alive).
#[test]
fn thread_slot_released_under_its_owner() {
    isolated(
        "thread_slot_released_under_its_owner",
        Ends::Passing,
        || {
            sud::install(|_| Action::Reissue).unwrap();
            let (tx, rx) = std::sync::mpsc::channel::<u64>();
            let (tx2, rx2) = std::sync::mpsc::channel::<()>();
            let a = std::thread::spawn(move || {
                let t = Thread::new().unwrap();
                let mut mem = vec![0u8; 64 * 1024];
                let ss = libc::stack_t {
                    ss_sp: mem.as_mut_ptr().cast(),
                    ss_flags: 0,
                    ss_size: mem.len(),
                };
                // SAFETY: a stack_t that disables the alternate stack.
                assert_eq!(unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) }, 0);
                t.disarm().unwrap();
                tx.send(t.selector().as_ptr() as u64).unwrap();
                rx2.recv().unwrap();
                drop(t);
                drop(mem);
            });
            let a_sel = rx.recv().unwrap();
            let b = std::thread::spawn(move || {
                let t = Thread::new().unwrap();
                t.selector().as_ptr() as u64
            });
            let b_sel = b.join().unwrap();
            tx2.send(()).unwrap();
            a.join().unwrap();
            eprintln!("A's selector {a_sel:#x}, B's {b_sel:#x}");
            assert_ne!(a_sel, b_sel, "two live Threads share one slot");
        },
    );
}

/// Control: the same sud_entry call with FS unchanged passes.
#[test]
fn entry_global_selector_fs_control() {
    if !fsgsbase() {
        return;
    }
    isolated("entry_global_selector_fs_control", Ends::Passing, || {
        sud::install(tls_callback).unwrap();
        sud::arm().unwrap();
        let fs: u64;
        // SAFETY: FSGSBASE is enabled on this machine.
        unsafe { core::arch::asm!("rdfsbase {}", out(reg) fs) };
        // SAFETY: the routine switches FS around its `call sud_entry` and back.
        let r = unsafe { rv_entry_with_fs(fs, 0) };
        assert_eq!(r, 4242);
        assert_eq!(TLS_COUNT.with(Cell::get), 1);
        sud::disarm().unwrap();
    });
}

// ---- spawn hook ----
static GUEST_SEGV_RAN: AtomicUsize = AtomicUsize::new(0);
extern "C" fn counting_guest_handler(_: i32) {
    GUEST_SEGV_RAN.fetch_add(1, Ordering::SeqCst);
}
extern "C" fn faulting_guest_handler(_: i32) {
    GUEST_SEGV_RAN.fetch_add(1, Ordering::SeqCst);
    // SAFETY: a fault on purpose: the handler under test takes it.
    unsafe { core::ptr::write_volatile(8 as *mut u8, 1) };
}
/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn noop_host(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {}

fn guest_sigaction(t: &Thread, sig: u32, handler: usize) {
    let act = common::signals::KernelSigaction {
        handler,
        flags: SA_RESTORER as u64,
        restorer: rv_restorer as *const () as usize,
        mask: 0,
    };
    let (r, _) = common::guest::blocked(t, || common::signals::guest_rt_sigaction(sig, Some(&act)));
    r.unwrap();
}

/// (a) int3 in guest code, host has a SIGTRAP handler, guest none: dies of SIGTRAP.
#[test]
fn guest_int3_host_handler() {
    isolated(
        "guest_int3_host_handler",
        Ends::KilledBy(libc::SIGTRAP),
        || {
            sud::install(|_| Action::Reissue).unwrap();
            sud::install_host_handler(libc::SIGTRAP as u32, noop_host, 0, 0).unwrap();
            let t = common::guest::armed_thread();
            // SAFETY: a breakpoint on purpose: the handler under test takes it.
            common::guest::blocked(&t, || unsafe { core::arch::asm!("int3") });
            eprintln!("survived int3");
        },
    );
}

/// (b) guest handler for SIGTRAP, then SIG_DFL again: int3 kills by SIGTRAP.
#[test]
fn guest_int3_after_dfl() {
    isolated(
        "guest_int3_after_dfl",
        Ends::KilledBy(libc::SIGTRAP),
        || {
            sud::install(|_| Action::Reissue).unwrap();
            let t = common::guest::armed_thread();
            guest_sigaction(
                &t,
                libc::SIGTRAP as u32,
                counting_guest_handler as *const () as usize,
            );
            guest_sigaction(&t, libc::SIGTRAP as u32, 0);
            // SAFETY: as above.
            common::guest::blocked(&t, || unsafe { core::arch::asm!("int3") });
            eprintln!("survived int3");
        },
    );
}

/// (c) guest SIGSEGV handler that faults itself: dies of SIGSEGV.
#[test]
fn fault_in_guest_segv_handler() {
    isolated(
        "fault_in_guest_segv_handler",
        Ends::KilledBy(libc::SIGSEGV),
        || {
            sud::install(|_| Action::Reissue).unwrap();
            let t = common::guest::armed_thread();
            guest_sigaction(&t, SIGSEGV, faulting_guest_handler as *const () as usize);
            // SAFETY: a fault on purpose: the guest's handler under test takes it.
            common::guest::blocked(&t, || unsafe {
                core::ptr::write_volatile(16 as *mut u8, 1)
            });
            eprintln!(
                "survived, guest handler ran {}",
                GUEST_SEGV_RAN.load(Ordering::SeqCst)
            );
        },
    );
}

/// (d) host faults, guest has a SIGSEGV handler, host none: dies of SIGSEGV.
#[test]
fn host_fault_guest_has_handler() {
    isolated(
        "host_fault_guest_has_handler",
        Ends::KilledBy(libc::SIGSEGV),
        || {
            // SAFETY: the default disposition, which the test expects to kill the process.
            unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
            sud::install(|_| Action::Reissue).unwrap();
            let t = common::guest::armed_thread();
            guest_sigaction(&t, SIGSEGV, counting_guest_handler as *const () as usize);
            // SAFETY: a fault on purpose: the process must die of it.
            unsafe { core::ptr::write_volatile(16 as *mut u8, 1) };
            eprintln!(
                "survived, guest handler ran {}",
                GUEST_SEGV_RAN.load(Ordering::SeqCst)
            );
        },
    );
}

static IN_HANDLER: AtomicBool = AtomicBool::new(false);
/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn slow_host(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
    IN_HANDLER.store(true, Ordering::SeqCst);
    eprintln!("slow_host: global selector {:?}", SELECTOR);
    std::thread::sleep(std::time::Duration::from_millis(200));
    IN_HANDLER.store(false, Ordering::SeqCst);
}

/// Deterministic: while an unarmed thread runs a host handler, a sud::arm()
/// thread (a) makes a guest syscall under BLOCK, (b) then allows, and after
/// the handler returns makes a host syscall under what it set: ALLOW.
#[test]
fn unarmed_host_handler_flips_global_selector() {
    isolated(
        "unarmed_host_handler_flips_global_selector",
        Ends::Passing,
        || {
            sud::install(|call| {
                if call.number() == __NR_getppid {
                    Action::Emulate(4242)
                } else {
                    Action::Reissue
                }
            })
            .unwrap();
            sud::install_host_handler(SIGUSR1, slow_host, 0, 0).unwrap();
            static GO: AtomicBool = AtomicBool::new(false);
            let guest = std::thread::spawn(|| {
                sud::arm().unwrap();
                // SAFETY: this thread makes only the guest's getppid until allow().
                unsafe { SELECTOR.block() };
                GO.store(true, Ordering::SeqCst);
                while !IN_HANDLER.load(Ordering::SeqCst) {
                    core::hint::spin_loop();
                }
                // SAFETY: getppid has no arguments or effects.
                let guest_call = unsafe { sud::guest::syscall0(__NR_getppid) };
                SELECTOR.allow();
                while IN_HANDLER.load(Ordering::SeqCst) {
                    core::hint::spin_loop();
                }
                std::thread::sleep(std::time::Duration::from_millis(1)); // let the handler's epilogue finish
                // SAFETY: as above.
                let host_call = unsafe { sud::guest::syscall0(__NR_getppid) }; // under ALLOW: native
                let sel = format!("{:?}", SELECTOR);
                SELECTOR.allow();
                sud::disarm().unwrap();
                (guest_call, host_call, sel)
            });
            while !GO.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            // SAFETY: tgkill to the guest thread, with its tid and pid.
            std::thread::spawn(|| unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    std::process::id(),
                    libc::syscall(libc::SYS_gettid),
                    libc::SIGUSR1,
                );
            })
            .join()
            .unwrap();
            let (g, h, sel) = guest.join().unwrap();
            // SAFETY: getppid has no arguments or effects.
            let ppid = unsafe { libc::getppid() } as usize;
            eprintln!(
                "real ppid {ppid}; guest getppid under BLOCK -> {g:?} (want 4242); after allow() -> {h:?} (want {ppid}); selector after handler: {sel}"
            );
            assert_eq!(g, Ok(4242));
            assert_eq!(h, Ok(ppid));
        },
    );
}

static NEW_FS: AtomicU64 = AtomicU64::new(0);
extern "C" fn fs_moving_handler(_: i32) {
    let fs = NEW_FS.load(Ordering::SeqCst);
    // SAFETY: the guest's handler moves FS to a thread area of the test's, as a guest may.
    unsafe { core::arch::asm!("wrfsbase {}", in(reg) fs) };
}
fn do_tgkill_then_tls(call: &mut Syscall) -> usize {
    let [a, b, c, ..] = call.args();
    // SAFETY: tgkill with the guest's own arguments, as a redirect function.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, a, b, c) as usize };
    TLS_COUNT.with(|c| c.set(c.get() + 1)); // host code after the signal
    r
}

/// A guest handler (as Wine's) sets FS for its own code; it runs during a
/// redirect function, and the host code after it keeps the guest's FS.
#[test]
fn guest_handler_moving_fs_during_redirect() {
    if !fsgsbase() {
        return;
    }
    isolated(
        "guest_handler_moving_fs_during_redirect",
        Ends::Passing,
        || {
            let (pid, tid) = (std::process::id() as u64, common::gettid() as u64);
            let tls = GuestTls::new();
            NEW_FS.store(tls.fs(), Ordering::SeqCst);
            sud::install(redirect_tgkill).unwrap();
            sud::install_redirect(do_tgkill_then_tls).unwrap();
            let t = Thread::new().unwrap();
            t.arm().unwrap();
            guest_sigaction(&t, SIGUSR1, fs_moving_handler as *const () as usize);
            let other = GuestTls::new();
            // The guest's FS is `other` when it makes the tgkill; its handler moves it to `tls`.
            // SAFETY: the routine moves FS to `other` around the tgkill.
            common::guest::blocked(&t, || unsafe {
                rv_guest_fs_tgkill(other.fs(), pid, tid, SIGUSR1 as u64)
            });
            eprintln!(
                "survived; tls untouched {} {}",
                tls.untouched(),
                other.untouched()
            );
            assert!(tls.untouched() && other.untouched());
        },
    );
}
