//! Shared by the std test programs: one process per test (SIGSYS
//! dispositions, seccomp filters and dispatch state do not mix between
//! tests), seccomp filters, and ways to look at a thread from outside.
#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// How an isolated test process must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    Passing,
    KilledBy(i32),
}

/// Runs `body` in a fresh process (this test binary, asked for exactly this
/// test) and checks how that process ended.  In the child, runs `body`.
pub fn isolated(name: &str, ends: Ends, body: impl FnOnce()) {
    const CHILD: &str = "SUD_TEST_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name);
    // SAFETY: setrlimit is async-signal-safe; no core files from the tests
    // that are meant to die.
    unsafe {
        use std::os::unix::process::CommandExt;
        child.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let out = child.output().expect("spawn the test binary");
    let report = format!(
        "--- child stdout\n{}--- child stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match ends {
        Ends::Passing => {
            assert!(out.status.success(), "child ended {}\n{report}", out.status);
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("1 passed"),
                "{report}"
            );
        }
        Ends::KilledBy(signal) => {
            assert_eq!(
                out.status.signal(),
                Some(signal),
                "child ended {}\n{report}",
                out.status
            )
        }
    }
}

/// One seccomp BPF instruction.
fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
const NR: u32 = 0;
const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

/// Installs a seccomp filter on the calling thread (and the threads it
/// creates later): `action` for syscall `nr` whose first arguments equal
/// `args`, ALLOW for everything else.
pub fn seccomp(nr: u32, args: &[u32], action: u32) {
    let mut prog = vec![bpf(LD_W_ABS, 0, 0, NR)];
    // Each test that fails jumps to the final ALLOW.
    let tests = 1 + args.len();
    let mut remaining = tests;
    prog.push(bpf(JEQ_K, 0, (2 * remaining - 1) as u8, nr));
    for (i, &arg) in args.iter().enumerate() {
        remaining -= 1;
        prog.push(bpf(LD_W_ABS, 0, 0, arg_lo(i as u32)));
        prog.push(bpf(JEQ_K, 0, (2 * remaining - 1) as u8, arg));
    }
    prog.push(bpf(RET_K, 0, 0, action));
    prog.push(bpf(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: a valid filter program; no_new_privs first, as unprivileged
    // filters require.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog);
        assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments.
    unsafe { libc::gettid() }
}

/// What `/proc/self/task/TID/syscall` says: the syscall number and the
/// instruction pointer (after the `syscall`) of a thread blocked in the
/// kernel, or None while it runs.
pub fn blocked_in(tid: i32) -> Option<(i64, usize)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 9 {
        return None;
    }
    let nr: i64 = fields[0].parse().ok()?;
    let pc = usize::from_str_radix(fields[8].trim_start_matches("0x"), 16).ok()?;
    Some((nr, pc))
}

/// Waits (up to 10 s) until thread `tid` is blocked in syscall `nr`, and
/// returns the instruction pointer it is blocked at.
pub fn wait_blocked_in(tid: i32, nr: i64) -> usize {
    for _ in 0..10_000 {
        if let Some((n, pc)) = blocked_in(tid)
            && n == nr
        {
            // Sleeping, not just passing through.
            let state = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            let after_name = &state[state.rfind(')').unwrap() + 2..];
            if after_name.starts_with('S') {
                return pc;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("thread {tid} never blocked in syscall {nr}");
}

/// The blocked-signal mask of thread `tid`, from /proc.
pub fn sigblk(tid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
    u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).unwrap()
}

/// The bit of `signal` in a signal mask.
pub fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// Installs a plain libc signal handler.
pub fn libc_handler(signal: i32, handler: extern "C" fn(i32), flags: i32) {
    // SAFETY: a zeroed sigaction with a valid handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = flags;
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

/// Waits until thread `tid`, created with CLONE_CHILD_CLEARTID pointing at
/// `child_tid`, has exited: the kernel zeroes the word and wakes its futex.
pub fn wait_for_thread_exit(child_tid: &std::sync::atomic::AtomicU32, tid: i64) {
    while child_tid.load(std::sync::atomic::Ordering::SeqCst) != 0 {
        // SAFETY: a futex wait on a live u32.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                child_tid.as_ptr(),
                libc::FUTEX_WAIT,
                tid as u32,
                0,
            )
        };
    }
}
