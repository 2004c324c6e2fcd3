//! `examples/run` against Debian's busybox-static (static glibc, ET_EXEC):
//! each command's standard output and exit status under `run`, under
//! `run --trace` and under `run --rewrite` must be those of the same
//! command run natively.  Then C
//! programs built here (a static-pie; the program break), and each kind of
//! bad input: one line on standard error, exit status 2.
//!
//! The example is built by `cargo test` itself (examples are part of its
//! default targets) next to this test's binary; `cargo test --test run`
//! alone does not build it: build it first with `cargo build --example run`
//! (add `--release` for `cargo test --release`).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

const BUSYBOX: &str = "/bin/busybox";

/// `target/<profile>/examples/run`, built with this test.
fn run_example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/");
    let run = profile_dir.join("examples/run");
    assert!(
        run.exists(),
        "{} is missing: `cargo test` builds it; with --test run, first `cargo build --example run`",
        run.display()
    );
    run
}

fn busybox() -> &'static str {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
    BUSYBOX
}

fn output(command: &mut Command) -> Output {
    command.output().expect("spawn")
}

fn describe(status: ExitStatus) -> String {
    match status.signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => format!("exit status {:?}", status.code()),
    }
}

/// What the guest wrote on standard error under each way of running it.
struct Stderr {
    run: String,
    traced: String,
    /// Under `run --rewrite`, with `SUD_RUN_COUNTS` set: ends with the
    /// count of trapped calls and calls through rewritten sites.
    rewritten: String,
}

/// Runs `busybox args...` natively, under `run`, `run --trace` and
/// `run --rewrite`, and checks that standard output and exit status are
/// the same in all four.
fn same_as_native(args: &[&str]) -> Stderr {
    let native = output(Command::new(busybox()).args(args));
    let under = |options: &[&str]| {
        output(
            Command::new(run_example())
                .env("SUD_RUN_COUNTS", "1")
                .args(options)
                .arg(busybox())
                .args(args),
        )
    };
    let (guest, traced, rewritten) = (under(&[]), under(&["--trace"]), under(&["--rewrite"]));
    let runs = [
        ("run", &guest),
        ("run --trace", &traced),
        ("run --rewrite", &rewritten),
    ];
    for (how, run) in runs {
        let stderr = String::from_utf8_lossy(&run.stderr);
        let tail = &stderr[stderr.len().saturating_sub(2000)..];
        assert_eq!(
            run.status,
            native.status,
            "{how} busybox {args:?}: {} where native gives {}; stderr ends:\n{tail}",
            describe(run.status),
            describe(native.status),
        );
        assert!(
            run.stdout == native.stdout,
            "{how} busybox {args:?}: stdout differs\n--- native\n{}\n--- {how}\n{}\n--- stderr ends:\n{tail}",
            String::from_utf8_lossy(&native.stdout),
            String::from_utf8_lossy(&run.stdout),
        );
    }
    let stderr = Stderr {
        run: String::from_utf8_lossy(&guest.stderr).into_owned(),
        traced: String::from_utf8_lossy(&traced.stderr).into_owned(),
        rewritten: String::from_utf8_lossy(&rewritten.stderr).into_owned(),
    };
    assert!(
        stderr.traced.contains("exit_group("),
        "run --trace busybox {args:?}: no exit_group in the trace:\n{}",
        stderr.traced
    );
    stderr
}

/// The counts `run --rewrite` printed: calls that trapped, and calls that
/// came through rewritten sites (the first process's, which exits last).
fn rewrite_counts(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("run: ") && l.ends_with(" through rewritten sites"))
        .unwrap_or_else(|| panic!("no counts in:\n{stderr}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn echo() {
    let trace = same_as_native(&["echo", "hello", "world"]).traced;
    // The start as glibc makes it: the break (emulated), the thread pointer,
    // /proc/self/exe (emulated), then the output itself.
    for call in [
        "brk(0x0) = 0x",
        "arch_prctl(0x1002, ",
        "readlink(",
        "write(0x1, ",
    ] {
        assert!(trace.contains(call), "no {call} in the trace:\n{trace}");
    }
}

#[test]
fn ls_root() {
    same_as_native(&["ls", "/"]);
}

#[test]
fn pipe_through_cat() {
    // cat runs in a child that re-executes busybox through /proc/self/exe.
    let trace = same_as_native(&["sh", "-c", "echo a | cat"]).traced;
    assert!(
        trace.contains("[pid "),
        "no child process in the trace:\n{trace}"
    );
    assert!(
        trace.contains("execve("),
        "no execve in the trace:\n{trace}"
    );
}

#[test]
fn for_loop_into_wc() {
    same_as_native(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; done | wc -l",
    ]);
}

#[test]
fn trap_and_kill_self() {
    same_as_native(&[
        "sh",
        "-c",
        "trap 'echo caught USR1' USR1; kill -USR1 $$; echo after",
    ]);
}

#[test]
fn background_sleep_and_wait() {
    same_as_native(&["sh", "-c", "sleep 0.2 & wait; echo waited $?"]);
}

#[test]
fn exit_status() {
    same_as_native(&["sh", "-c", "echo out; exit 7"]);
}

#[test]
fn dd_byte_by_byte() {
    let stderr = same_as_native(&["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=200000"]);
    let trace = &stderr.traced;
    for report in [&stderr.run, trace, &stderr.rewritten] {
        assert!(
            report.contains("200000+0 records out"),
            "dd's report:\n{report}"
        );
    }
    let reads = trace
        .lines()
        .filter(|l| l.starts_with("read(0x0, ") && l.ends_with(" = 1"))
        .count();
    assert_eq!(reads, 200_000, "one traced read per byte");
    // Under --rewrite, dd's read and write sites stop trapping after their
    // first call: nearly every call comes through them.
    let (trapped, sites) = rewrite_counts(&stderr.rewritten);
    assert!(
        sites >= 399_000 && trapped < 1_000,
        "{trapped} trapped, {sites} through sites"
    );
}

#[test]
fn find_shared_objects() {
    same_as_native(&["find", "/usr", "-name", "*.so*"]);
}

/// Builds the C program `source` with `cc flags`, into the tests' scratch
/// directory as `name`.
fn build_c(name: &str, flags: &[&str], source: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (c, exe) = (dir.join(format!("{name}.c")), dir.join(name));
    std::fs::write(&c, source).unwrap();
    let built = output(
        Command::new("cc")
            .args(flags)
            .arg("-O2")
            .arg("-o")
            .arg(&exe)
            .arg(&c),
    );
    let errors = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "cc {flags:?} {name}.c: {errors}");
    exe
}

/// Runs `exe` natively, under `run` and under `run --trace`: the same
/// standard output and exit status.
fn same_output_as_native(exe: &Path) {
    let native = output(&mut Command::new(exe));
    for trace in [&[][..], &["--trace"][..]] {
        let guest = output(Command::new(run_example()).args(trace).arg(exe));
        let stderr = String::from_utf8_lossy(&guest.stderr);
        assert_eq!(guest.status, native.status, "run {trace:?}: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&guest.stdout),
            String::from_utf8_lossy(&native.stdout),
            "run {trace:?}"
        );
    }
}

/// A static-pie (ET_DYN, no PT_INTERP): loaded at a base of run's
/// choosing, with its arguments, /proc/self/exe and malloc as natively.
#[test]
fn static_pie() {
    let exe = build_c(
        "run-static-pie",
        &["-static-pie"],
        r#"#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    char *big = malloc(1 << 20), *small = malloc(100);
    printf("%d %s %s %d\n", argc, argv[0], exe, big && small);
    return 5;
}
"#,
    );
    same_output_as_native(&exe);
}

/// The program break, as the kernel answers brk: brk(0), below the start,
/// growing, shrinking (and growing again into fresh zeroes), back to the
/// start; printed relative to where it started.
#[test]
fn program_break() {
    let exe = build_c(
        "run-brk",
        &["-static"],
        r#"#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
static long b(long a) { return syscall(SYS_brk, a); }
int main(void) {
    long start = b(0);
    unsigned char *p = (unsigned char *)start;
    printf("brk(0) %ld\n", b(0) - start);
    printf("one page down %ld\n", b(start - 4096) - start);
    printf("back up %ld\n", b(start) - start);
    printf("+10 %ld\n", b(start + 10) - start);
    printf("+5000 %ld\n", b(start + 5000) - start);
    memset(p, 0xab, 5000);
    printf("+100 %ld\n", b(start + 100) - start);
    printf("+9000 %ld\n", b(start + 9000) - start);
    printf("kept %x, fresh %x %x\n", p[99], p[4096], p[8999]);
    printf("+1M %ld\n", b(start + (1 << 20)) - start);
    p[(1 << 20) - 1] = 1;
    printf("at 0 %ld\n", b(0) - start);
    printf("start %ld\n", b(start) - start);
    printf("impossible %ld\n", b(-4096L) - start);
    return 0;
}
"#,
    );
    same_output_as_native(&exe);
}

/// Runs `run file`, which must refuse it: exit status 2, one line on
/// standard error that says `why`, nothing on standard output.
fn refused(file: &Path, why: &str) {
    let out = output(Command::new(run_example()).arg(file).arg("arg"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}: {stderr}",
        describe(out.status)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.starts_with("run: ") && stderr.contains(why),
        "{stderr:?} should say {why:?}"
    );
}

fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn refuses_a_missing_file() {
    refused(
        Path::new("/nonexistent/program"),
        "No such file or directory",
    );
}

#[test]
fn refuses_what_is_not_elf() {
    refused(
        &scratch_file("run-not-elf", b"#!/bin/sh\necho not an ELF\n"),
        "not an ELF file",
    );
    refused(&scratch_file("run-empty", b""), "not an ELF file");
    refused(Path::new("/"), "Is a directory");
}

#[test]
fn refuses_a_dynamic_executable() {
    // This very test binary: a dynamically linked PIE.
    refused(
        &std::env::current_exe().unwrap(),
        "dynamically linked (PT_INTERP",
    );
}

/// An ELF header (x86-64 unless `class` says otherwise) with one program
/// header: a PT_LOAD of `memsz` bytes at `vaddr`, nothing from the file.
fn elf_with_one_segment(class: u8, vaddr: u64, memsz: u64) -> Vec<u8> {
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF");
    elf.extend_from_slice(&[class, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(vaddr + 0x1000).to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 1, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    for word in [0, vaddr, vaddr, 0, memsz, 0x1000] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf
}

#[test]
fn refuses_another_architecture() {
    refused(
        &scratch_file("run-elf32", &elf_with_one_segment(1, 0x400000, 0x1000)),
        "not an x86-64 ELF",
    );
}

#[test]
fn refuses_an_address_clash_with_the_host() {
    // From 64 KiB to far above wherever the host's executable, heap and
    // libraries lie (ASLR or not): whatever the host has there is hit.
    let clash = elf_with_one_segment(2, 0x10000, 0x7ff0_0000_0000);
    refused(
        &scratch_file("run-clash", &clash),
        "overlap the host's mapping",
    );
}

#[test]
fn usage_without_a_file() {
    let out = output(&mut Command::new(run_example()));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("usage: run"));
}

/// A guest handler must run with the guest's thread pointer wherever its
/// signal lands.  Under `--trace` the guest's `kill` is carried out by the
/// redirect function, host code running with the host's thread pointer,
/// and the signal lands there as the syscall returns.
#[test]
fn guest_handler_in_a_traced_call_has_the_guests_thread_pointer() {
    let exe = build_c(
        "run-handler-tp",
        &["-static"],
        r#"#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static void *seen;
static void handler(int signal) { seen = __builtin_thread_pointer(); errno = 0; }
int main(void) {
    signal(SIGUSR1, handler);
    kill(getpid(), SIGUSR1);
    printf("%s\n", seen == __builtin_thread_pointer() ? "the guest's" : "another");
    return 0;
}
"#,
    );
    same_output_as_native(&exe);
}

/// A static glibc program with 8 pthreads that create, lock a mutex, wait
/// on and signal a condition variable, and are joined: its output under
/// `run` is native, 50 times with the guest's first thread on the global
/// selector (`--global`), 50 times on a `Thread`, 3 times with `--trace`,
/// whose std callback (formatting, output, a lock and a map) runs on every
/// guest thread, each on a host thread of its own (the spawn hook), and
/// with `--rewrite`: 30 times on a `Thread`, 20 with `--global`, 10 with
/// the guest's own clones (`--no-hook`): threads run sites while others
/// rewrite them, glibc's starting threads with every signal blocked (with
/// an `int3` in the rewrite protocol, 7 runs in 100 died of SIGTRAP).
#[test]
fn pthread_program_runs_as_natively() {
    let exe = build_c(
        "run-pthreads",
        &["-static", "-pthread"],
        r#"#include <pthread.h>
#include <stdio.h>

enum { THREADS = 8, ROUNDS = 1000 };
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static long total, done;
static long mine[THREADS];

static void *work(void *arg) {
    long index = (long)arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&lock);
        total += index + 1;
        mine[index]++;
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_lock(&lock);
    done++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return (void *)(index * 10);
}

int main(void) {
    pthread_t threads[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, work, (void *)i) != 0) return 1;
    pthread_mutex_lock(&lock);
    while (done < THREADS) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    for (long i = 0; i < THREADS; i++) {
        void *result;
        if (pthread_join(threads[i], &result) != 0) return 2;
        printf("thread %ld: %ld rounds, returned %ld\n", i, mine[i], (long)result);
    }
    printf("total %ld\n", total);
    return 0;
}
"#,
    );
    let native = output(&mut Command::new(&exe));
    assert!(native.status.success());
    let runs = [
        (&["--global"][..], 50),
        (&[][..], 50),
        (&["--trace"][..], 3),
        (&["--rewrite"][..], 30),
        (&["--rewrite", "--global"][..], 20),
        (&["--rewrite", "--no-hook"][..], 10),
    ];
    for (options, times) in runs {
        for round in 0..times {
            let guest = output(Command::new(run_example()).args(options).arg(&exe));
            let stderr = String::from_utf8_lossy(&guest.stderr);
            assert_eq!(
                guest.status, native.status,
                "run {options:?}, round {round}: {stderr}"
            );
            assert_eq!(
                String::from_utf8_lossy(&guest.stdout),
                String::from_utf8_lossy(&native.stdout),
                "run {options:?}, round {round}"
            );
        }
    }
}
