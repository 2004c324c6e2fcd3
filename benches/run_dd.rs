//! What a guest pays for running under `examples/run`: busybox's
//! `dd if=/dev/zero of=/dev/null bs=1 count=200000`, 400,000 syscalls (a
//! read and a write per byte), natively, under `run`, under `run --rewrite`
//! (dd's read and write sites rewritten after their first trap), under
//! `run --trace` (trace to /dev/null) and under `strace -f -c` (summary to
//! /dev/null), in one run.
//!
//!     cargo bench --bench run_dd
//!
//! Each case runs [`ROUNDS`] times, the cases taking turns round by round
//! so that a slow stretch of the machine does not land on one case alone;
//! a case's figure is the median wall-clock time of its runs, from spawn
//! to exit, and the table gives it against the native run, and per syscall
//! above native.  Every run is pinned to one CPU (the first this bench may
//! use): strace's tracer and tracee hand over twice per syscall, and on a
//! VM a hand-over between two vCPUs costs so much more than on one that
//! unpinned runs of the strace case spread over a factor of four.  The
//! example is built (release) before anything is timed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "/bin/busybox";
const DD: [&str; 5] = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=200000"];
/// dd's syscalls for the copy itself: a read and a write per byte.
const SYSCALLS: f64 = 400_000.0;
const ROUNDS: usize = 7;

struct Case {
    name: &'static str,
    command: Vec<String>,
    times: Vec<Duration>,
}

fn main() {
    if !Path::new(BUSYBOX).exists() {
        eprintln!("{BUSYBOX} is missing: apt-get install busybox-static");
        std::process::exit(1);
    }
    let run = build_run_example();
    let run = run.to_string_lossy().into_owned();
    let dd = || DD.iter().map(|s| s.to_string());
    let with = |prefix: &[&str]| -> Vec<String> {
        let prefix = prefix.iter().map(|s| s.to_string());
        prefix.chain([BUSYBOX.to_string()]).chain(dd()).collect()
    };
    let mut cases = vec![
        Case {
            name: "native",
            command: with(&[]),
            times: vec![],
        },
        Case {
            name: "examples/run",
            command: with(&[&run]),
            times: vec![],
        },
        Case {
            name: "examples/run --rewrite",
            command: with(&[&run, "--rewrite"]),
            times: vec![],
        },
        Case {
            name: "examples/run --trace",
            command: with(&[&run, "--trace"]),
            times: vec![],
        },
    ];
    let strace = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status();
    if strace.is_ok_and(|s| s.success()) {
        let command = with(&["strace", "-f", "-c", "-o", "/dev/null"]);
        cases.push(Case {
            name: "strace -f -c",
            command,
            times: vec![],
        });
    } else {
        eprintln!("strace is not installed: its row is left out");
    }

    let cpu = first_allowed_cpu();
    for _ in 0..ROUNDS {
        for case in &mut cases {
            case.times.push(time(&case.command, cpu));
        }
    }

    let native = median(&cases[0].times);
    println!(
        "busybox {} ({ROUNDS} runs each on CPU {cpu}, median wall-clock)",
        DD.join(" "),
    );
    println!(
        "{:<24} {:>10} {:>10} {:>16}",
        "", "ms", "x native", "us/syscall more"
    );
    for case in &cases {
        let m = median(&case.times);
        let more = (m.as_secs_f64() - native.as_secs_f64()) * 1e6 / SYSCALLS;
        println!(
            "{:<24} {:>10.1} {:>10.1} {:>16.2}",
            case.name,
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() / native.as_secs_f64(),
            more
        );
    }
}

/// `target/release/examples/run`, built now (cargo does nothing if it is
/// up to date).
fn build_run_example() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--example", "run"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build --release --example run failed"
    );
    let exe = std::env::current_exe().expect("the bench's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/");
    profile_dir.join("examples/run")
}

/// The lowest-numbered CPU this process may run on.
fn first_allowed_cpu() -> usize {
    // SAFETY: sched_getaffinity fills the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set);
        (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .unwrap_or(0)
    }
}

/// One run of `command` on `cpu`, output discarded; it must succeed.
fn time(command: &[String], cpu: usize) -> Duration {
    let mut child = Command::new(&command[0]);
    child
        .args(&command[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: sched_setaffinity is async-signal-safe and touches only the
    // set on this stack.
    unsafe {
        child.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            match libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        })
    };
    let started = Instant::now();
    let status = child.status().expect("spawn");
    let elapsed = started.elapsed();
    assert!(status.success(), "{command:?} failed: {status}");
    elapsed
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
