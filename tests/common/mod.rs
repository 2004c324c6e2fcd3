//! Shared by the std test programs: one process per test (SIGSYS
//! dispositions, seccomp filters and dispatch state do not mix between
//! tests), and what several of them use: the tests' dispatch policy and
//! guest-side calls (`guest`), signal set-up as a guest makes it
//! (`signals`), guest code in assembly (`asm`), seccomp filters
//! (`seccomp`), and ways to look at a thread from outside (`proc`).
#![allow(dead_code)]

pub mod asm;
pub mod guest;
pub mod proc;
pub mod seccomp;
pub mod signals;
pub mod threads;

// The helpers the test programs name as `common::...`; each program uses
// some of them.
#[allow(unused_imports)]
pub use {
    proc::{bit, gettid, sigblk, wait_blocked_in, wait_for_thread_exit},
    seccomp::seccomp,
    signals::libc_handler,
};

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

/// How a process run by [`isolated_output`] ended, and what it printed.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `body` in a fresh process, as [`isolated`] does, and returns how it
/// ended and what it printed; fails the test if it is still running after
/// `timeout` (and kills it).  In the child, runs `body` and returns `None`.
pub fn isolated_output(
    name: &str,
    timeout: std::time::Duration,
    body: impl FnOnce(),
) -> Option<Finished> {
    const CHILD: &str = "SUD_TEST_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return None;
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; no core files.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let child = command.spawn().expect("spawn the test binary");
    let pid = child.id() as i32;
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()).unwrap());
    let out = match finished.recv_timeout(timeout) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: the child is ours and still running.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = finished.recv().unwrap().expect("wait for the test binary");
            panic!(
                "still running after {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    .expect("wait for the test binary");
    Some(Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
