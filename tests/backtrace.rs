//! Backtraces through sud: taken inside the SIGSYS callback, inside a
//! redirect function (on the guest's stack and on a redirect stack, after a
//! trap and behind `sud_entry`), inside the callback behind `sud_entry`, and
//! inside host handlers (for a signal that lands in guest code, and for one
//! that lands in a reissued syscall blocked in `sud_reissue`), they walk
//! back through sud's assembly and the signal frame into the guest function
//! and its caller.  That takes the CFI in `asm/x86_64/*.s`: without it the
//! unwinder stops inside sud.
//!
//! `std::backtrace` unwinds with libgcc's unwinder, as panics do; the last
//! test asks gdb, when there is one, for the same walk.  Each test runs in a
//! process of its own.

mod common;

use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_getppid, __NR_read};
use std::backtrace::Backtrace;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use sud::{Action, Syscall, Thread, guest};

/// What trapped getppid calls are told.
const FAKE_PPID: usize = 4242;

/// The backtrace taken inside sud's callee, read after the guest resumed.
static CAPTURED: Mutex<Option<Backtrace>> = Mutex::new(None);

fn capture() {
    *CAPTURED.lock().unwrap() = Some(Backtrace::force_capture());
}

/// The captured backtrace, symbolised.
fn captured() -> String {
    let bt = CAPTURED
        .lock()
        .unwrap()
        .take()
        .expect("no backtrace was taken");
    format!("{bt}")
}

/// Checks that `names` appear in the backtrace in this order, innermost
/// first: the capture site's side of sud, then the guest function, then the
/// function that called it.
fn assert_walks_through(bt: &str, names: &[&str]) {
    let mut from = 0;
    for name in names {
        match bt[from..].find(name) {
            Some(at) => from += at + name.len(),
            None => panic!("the backtrace has no {name} after the frames before it:\n{bt}"),
        }
    }
}

/// Sets up this thread with its own selector and arms it.
fn armed_thread() -> Thread {
    let thread = Thread::new().expect("Thread::new");
    thread.arm().expect("arm");
    thread
}

/// Runs `f` with `thread`'s selector at BLOCK.
fn blocked<T>(thread: &Thread, f: impl FnOnce() -> T) -> T {
    // SAFETY: the tests' guest code only makes syscalls meant for the callback.
    unsafe { thread.selector().block() };
    let out = f();
    thread.selector().allow();
    out
}

/// Guest code: a getppid the kernel traps.
#[inline(never)]
fn guest_makes_a_trapped_syscall() -> usize {
    // SAFETY: getppid has no arguments or effects.
    unsafe { guest::syscall0(__NR_getppid) }.unwrap()
}

/// The callback: a backtrace for getppid, which it emulates.
fn capture_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        capture();
        Action::Emulate(FAKE_PPID)
    } else {
        Action::Reissue
    }
}

/// callback <- dispatcher <- sud_sigsys_entry <- the signal frame (restorer)
/// <- the guest function, at its `syscall` <- the test.
#[test]
fn backtrace_from_the_sigsys_callback() {
    isolated("backtrace_from_the_sigsys_callback", Ends::Passing, || {
        sud::install(capture_getppid).unwrap();
        let thread = armed_thread();
        let ppid = blocked(&thread, guest_makes_a_trapped_syscall);
        assert_eq!(ppid, FAKE_PPID);
        assert_walks_through(
            &captured(),
            &[
                "capture_getppid",
                "sud_sigsys_entry",
                "guest_makes_a_trapped_syscall",
                "backtrace_from_the_sigsys_callback",
            ],
        );
    });
}

/// Guest code: a getppid the callback redirects.
#[inline(never)]
fn guest_makes_a_redirected_syscall() -> usize {
    // SAFETY: getppid has no arguments or effects.
    unsafe { guest::syscall0(__NR_getppid) }.unwrap()
}

fn redirect_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        Action::Redirect
    } else {
        Action::Reissue
    }
}

fn redirected_getppid(_: &mut Syscall) -> usize {
    capture();
    FAKE_PPID
}

/// A redirect: redirect function <- sud_redirect(_on_stack) <- the guest
/// function, at its `syscall` <- the test.  rt_sigreturn has taken the
/// signal frame away by then.
fn backtrace_from_a_redirect_function(redirect_stack: Option<&mut [u8]>, test: &str) {
    sud::install(redirect_getppid).unwrap();
    sud::install_redirect(redirected_getppid).unwrap();
    let thread = armed_thread();
    if let Some(stack) = redirect_stack {
        // SAFETY: the test's buffer outlives this thread's redirects.
        unsafe { thread.set_redirect_stack(stack.as_mut_ptr(), stack.len()) };
    }
    let ppid = blocked(&thread, guest_makes_a_redirected_syscall);
    assert_eq!(ppid, FAKE_PPID);
    assert_walks_through(
        &captured(),
        &[
            "redirected_getppid",
            "sud_redirect",
            "guest_makes_a_redirected_syscall",
            test,
        ],
    );
}

#[test]
fn backtrace_from_a_redirect_function_on_the_guests_stack() {
    isolated(
        "backtrace_from_a_redirect_function_on_the_guests_stack",
        Ends::Passing,
        || {
            backtrace_from_a_redirect_function(
                None,
                "backtrace_from_a_redirect_function_on_the_guests_stack",
            )
        },
    );
}

#[test]
fn backtrace_from_a_redirect_function_on_a_redirect_stack() {
    isolated(
        "backtrace_from_a_redirect_function_on_a_redirect_stack",
        Ends::Passing,
        || {
            let mut stack = vec![0u8; 256 * 1024];
            backtrace_from_a_redirect_function(
                Some(&mut stack),
                "backtrace_from_a_redirect_function_on_a_redirect_stack",
            )
        },
    );
}

/// Generated code's way in: `call sud_entry` in place of a `syscall`, with
/// R11 = the thread's selector.
#[inline(never)]
fn guest_calls_sud_entry(selector: *const u8) -> usize {
    let result: usize;
    let entry = sud::region_symbols().entry;
    // SAFETY: sud_entry takes the syscall registers and R11, clobbers RCX and
    // R11 only, and writes below RSP (the red zone is not kept: no `nostack`).
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rax") __NR_getppid as usize => result,
            in("rdi") 0, in("rsi") 0, in("rdx") 0, in("r10") 0, in("r8") 0, in("r9") 0,
            inlateout("r11") selector as usize => _,
            lateout("rcx") _,
        );
    }
    result
}

/// callback <- entry_dispatch <- sud_entry <- the function that called it
/// <- the test; no signal on the way.
#[test]
fn backtrace_from_the_callback_behind_sud_entry() {
    isolated(
        "backtrace_from_the_callback_behind_sud_entry",
        Ends::Passing,
        || {
            sud::install(capture_getppid).unwrap();
            let thread = armed_thread();
            let selector = thread.selector().as_ptr();
            let ppid = blocked(&thread, || guest_calls_sud_entry(selector));
            assert_eq!(ppid, FAKE_PPID);
            assert_walks_through(
                &captured(),
                &[
                    "capture_getppid",
                    "sud_entry",
                    "guest_calls_sud_entry",
                    "backtrace_from_the_callback_behind_sud_entry",
                ],
            );
        },
    );
}

/// A redirect behind sud_entry, on a redirect stack: redirect function <-
/// the switch to that stack <- entry_dispatch <- sud_entry <- the function
/// that called it <- the test.
#[test]
fn backtrace_from_a_redirect_function_behind_sud_entry_on_a_redirect_stack() {
    isolated(
        "backtrace_from_a_redirect_function_behind_sud_entry_on_a_redirect_stack",
        Ends::Passing,
        || {
            sud::install(redirect_getppid).unwrap();
            sud::install_redirect(redirected_getppid).unwrap();
            let thread = armed_thread();
            let mut stack = vec![0u8; 256 * 1024];
            // SAFETY: the test's buffer outlives this thread's redirects.
            unsafe { thread.set_redirect_stack(stack.as_mut_ptr(), stack.len()) };
            let selector = thread.selector().as_ptr();
            let ppid = blocked(&thread, || guest_calls_sud_entry(selector));
            assert_eq!(ppid, FAKE_PPID);
            assert_walks_through(
                &captured(),
                &[
                    "redirected_getppid",
                    "sud_call_on_stack",
                    "sud_entry",
                    "guest_calls_sud_entry",
                    "backtrace_from_a_redirect_function_behind_sud_entry_on_a_redirect_stack",
                ],
            );
        },
    );
}

static SPINNING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

/// Guest code that spins under BLOCK, making no syscall, until STOP.
#[inline(never)]
fn guest_spins_until_stopped() {
    SPINNING.store(true, Ordering::SeqCst);
    // SAFETY: reads the flag in a loop; no syscall, no stack.
    unsafe {
        core::arch::asm!(
            "2:",
            "cmp byte ptr [{0}], 0",
            "je 2b",
            in(reg) STOP.as_ptr(),
            options(nostack),
        );
    }
}

/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn capture_and_stop(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {
    capture();
    STOP.store(true, Ordering::SeqCst);
}

/// Sends SIGUSR1 to thread `tid` once `ready` says so.
fn signal_when(tid: i32, ready: impl Fn() -> bool + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !ready() {
            std::thread::yield_now();
        }
        // SAFETY: a signal to a thread of this process.
        unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) };
    })
}

/// host handler <- sud's signal entry <- the signal frame (restorer) <- the
/// guest function, where the signal interrupted it <- the test.  (Without
/// any CFI in sud, libgcc gets here too: it knows a restorer by its bytes
/// when no unwind table covers it.  This checks the restorer's own table,
/// which takes precedence: a wrong one loses the walk, or crashes it.)
#[test]
fn backtrace_from_a_host_handler_in_guest_code() {
    isolated(
        "backtrace_from_a_host_handler_in_guest_code",
        Ends::Passing,
        || {
            sud::install(capture_getppid).unwrap();
            sud::install_host_handler(libc::SIGUSR1 as u32, capture_and_stop, 0, 0).unwrap();
            let thread = armed_thread();
            let sender = signal_when(common::gettid(), || SPINNING.load(Ordering::SeqCst));
            blocked(&thread, guest_spins_until_stopped);
            sender.join().unwrap();
            assert_walks_through(
                &captured(),
                &[
                    "capture_and_stop",
                    "guest_spins_until_stopped",
                    "backtrace_from_a_host_handler_in_guest_code",
                ],
            );
        },
    );
}

static READ_END: AtomicI32 = AtomicI32::new(-1);

/// Guest code: a read the callback reissues, which blocks in sud_reissue.
#[inline(never)]
fn guest_reads_a_pipe(buf: &mut [u8]) -> usize {
    let fd = READ_END.load(Ordering::SeqCst) as usize;
    // SAFETY: a read into a live buffer.
    unsafe { guest::syscall3(__NR_read, fd, buf.as_mut_ptr() as usize, buf.len()) }.unwrap()
}

/// A pipe whose read end READ_END names; returns the write end.
fn pipe() -> i32 {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    READ_END.store(fds[0], Ordering::SeqCst);
    fds[1]
}

/// host handler <- sud's signal entry <- the signal frame <- sud_reissue,
/// blocked in the guest's read <- the guest function <- the test.
#[test]
fn backtrace_from_a_host_handler_in_a_reissued_syscall() {
    isolated(
        "backtrace_from_a_host_handler_in_a_reissued_syscall",
        Ends::Passing,
        || {
            sud::install(capture_getppid).unwrap();
            let restart = libc::SA_RESTART as u64;
            sud::install_host_handler(libc::SIGUSR1 as u32, capture_and_stop, 0, restart).unwrap();
            let write_end = pipe();
            let thread = armed_thread();
            let tid = common::gettid();
            let sender = signal_when(tid, move || {
                common::wait_blocked_in(tid, __NR_read as i64);
                true
            });
            let writer = std::thread::spawn(move || {
                while !STOP.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                // SAFETY: writes 5 bytes from a live buffer.
                assert_eq!(
                    unsafe { libc::write(write_end, b"hello".as_ptr().cast(), 5) },
                    5
                );
            });
            let mut buf = [0u8; 16];
            let n = blocked(&thread, || guest_reads_a_pipe(&mut buf));
            sender.join().unwrap();
            writer.join().unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_walks_through(
                &captured(),
                &[
                    "capture_and_stop",
                    "sud_reissue",
                    "guest_reads_a_pipe",
                    "backtrace_from_a_host_handler_in_a_reissued_syscall",
                ],
            );
        },
    );
}

/// The SIGSYS callback of the gdb scenario: a breakpoint trap for getppid.
fn trap_for_gdb(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        // SAFETY: a breakpoint; the scenario runs under gdb, which takes it.
        unsafe { core::arch::asm!("int3") };
        Action::Emulate(FAKE_PPID)
    } else {
        Action::Reissue
    }
}

/// What gdb runs: a breakpoint trap inside the SIGSYS callback, then a
/// SIGTRAP sent to this thread while a reissued read blocks in sud_reissue.
fn gdb_scenario() {
    sud::install(trap_for_gdb).unwrap();
    let write_end = pipe();
    let thread = armed_thread();
    let tid = common::gettid();
    let ppid = blocked(&thread, guest_makes_a_trapped_syscall);
    assert_eq!(ppid, FAKE_PPID);
    let helper = std::thread::spawn(move || {
        common::wait_blocked_in(tid, __NR_read as i64);
        // SAFETY: a signal to a thread of this process, which gdb takes.
        unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGTRAP) };
        // SAFETY: writes 5 bytes from a live buffer.
        assert_eq!(
            unsafe { libc::write(write_end, b"hello".as_ptr().cast(), 5) },
            5
        );
    });
    let mut buf = [0u8; 16];
    let n = blocked(&thread, || guest_reads_a_pipe(&mut buf));
    helper.join().unwrap();
    assert_eq!(&buf[..n], b"hello");
}

/// gdb unwinds with the same tables, and its own sense of signal frames:
/// `bt` at the trap in the callback and at the thread blocked in
/// sud_reissue both reach the guest function and this test.  Skipped when
/// there is no gdb, or when it may not trace its child here.
#[test]
fn gdb_backtraces_walk_into_the_guest() {
    const NAME: &str = "gdb_backtraces_walk_into_the_guest";
    const SCENARIO: &str = "SUD_GDB_SCENARIO";
    if std::env::var_os(SCENARIO).is_some() {
        return gdb_scenario();
    }
    let exe = std::env::current_exe().unwrap();
    let run = std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-iex", "set debuginfod enabled off"])
        .args(["-ex", "handle SIGSYS nostop noprint pass"])
        .args(["-ex", "run", "-ex", "bt", "-ex", "continue", "-ex", "bt"])
        .args(["-ex", "continue", "--args"])
        .arg(exe)
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, "1")
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: no gdb on PATH");
            return;
        }
        Err(e) => panic!("running gdb: {e}"),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let stops: Vec<&str> = text.split("received signal SIGTRAP").skip(1).collect();
    if stops.is_empty() && text.contains("Operation not permitted") {
        eprintln!("skipped: gdb may not trace its child here:\n{text}");
        return;
    }
    assert_eq!(stops.len(), 2, "gdb did not stop twice:\n{text}");
    assert_walks_through(
        stops[0],
        &[
            "trap_for_gdb",
            "sud::dispatch::signal::dispatch",
            "sud_sigsys_entry",
            "<signal handler called>",
            "guest_makes_a_trapped_syscall",
            NAME,
        ],
    );
    assert_walks_through(stops[1], &["sud_reissue", "guest_reads_a_pipe", NAME]);
    assert!(
        text.contains("exited normally"),
        "the scenario failed:\n{text}"
    );
}
