//! What one guest syscall costs on each path sud offers, next to the ways
//! the same job is done without sud.
//!
//!     cargo bench --bench paths
//!
//! Every measured call does the same work: the guest asks for `getppid`, and
//! the answer is checked on every call: the emulated value [`EMULATED`] (which
//! no real pid can equal) wherever the call is emulated, the real parent pid
//! wherever it runs.  A wrong answer ends the bench with an error.
//!
//! Method: each case runs in child processes of its own (this very binary,
//! re-run with [`CASE_ENV`] naming the case), so that SIGSYS dispositions,
//! dispatch state, seccomp filters and tracers never meet; one child runs at
//! a time.  A child first makes `warmup` calls, then times `batches` batches
//! of `per_batch` calls, each batch as a whole with [`Instant`], and prints
//! the ns/call of each batch on stdout.  The parent runs every case once per
//! round, [`ROUNDS`] rounds, so that each case's batches are spread over the
//! whole run and a slow stretch of the machine does not land on one case
//! alone; a case's result is the median of the ns/call of all its batches.
//! The iteration counts are constants ([`FAST`], [`TRAPPED`], [`SLOW`])
//! picked by how long a call takes.  The parent prints a table and writes
//! one JSON line per measured case, `{"case", "ns" (the median), "iters"
//! (measured calls, warm-up excluded)}`, to `target/sud-bench.jsonl`.
//!
//! The cases (the selector is set once per batch unless said otherwise):
//! - `raw_syscall`: an inline `syscall`, thread not armed;
//! - `trampoline_unarmed`: `sud::host::syscall0`, a call to the trampoline
//!   in the allowed region, thread not armed: the trampoline's own cost;
//! - `trampoline_blocked`: the same, armed with the selector at BLOCK;
//! - `armed_allow`: an inline `syscall`, armed with the selector at ALLOW;
//! - `selector_flip`: one `block()` + `allow()` pair, no syscall;
//! - `emulate`: an inline `syscall` armed under BLOCK, the callback answers
//!   `Action::Emulate`;
//! - `reissue`: the same, the callback answers `Action::Reissue`;
//! - `redirect`: the same, the callback answers `Action::Redirect` and the
//!   redirect function (ordinary code after rt_sigreturn) answers;
//! - `emulate_c`: the same as `emulate`, answered through sud's C interface
//!   (`sud-capi-abi`, what `libsud_capi` exports): an `extern "C"` callback
//!   installed with `sud_install` and a user pointer, reading the value
//!   through it and answering with `sud_emulate`, as a C program's would.
//!   The line after the table compares it with `emulate`;
//! - `emulate_fs_moved`: as `emulate`, with the guest's FS moved (by a
//!   trapped, reissued arch_prctl once per batch) to a thread area of its
//!   own, so that every trap switches FS to the host's and back (FSGSBASE);
//! - `emulate_arch_prctl`, `emulate_fs_moved_arch_prctl`: `emulate` and
//!   `emulate_fs_moved` with the thread pointers switched through
//!   arch_prctl, as on a machine without FSGSBASE;
//! - `entry_call`: `call sud_entry` in place of the `syscall`, armed under
//!   BLOCK, the callback answers `Action::Emulate`: no signal at all;
//! - `entry_call_xsave`: `entry_call` with the extended state kept by
//!   XSAVEC + XRSTOR (as on machines where moving the registers does not
//!   fit, and as every call did before);
//! - `rewritten_site`, `rewritten_site_reissue`: a `mov eax, getppid;
//!   syscall; ret` function, rewritten after its first trap
//!   (`sud::rewrite_sites`), called under BLOCK: the `jmp` to the site's
//!   thunk and `sud_site_entry`, no signal; emulated, and reissued;
//! - two rows that explain others, not paths of sud: `xsave_restore`, the
//!   XSAVEC (or XSAVE) + XRSTOR of the thread's live extended state that
//!   the direct paths paid before they moved the registers themselves;
//!   `ret_after_syscall`, a call to a conventional `syscall; ret` function,
//!   unarmed: the `ret` that sud's stubs avoid (they return with a jump);
//! - `peer_glibc_sud`: SUD the way the kernel selftests use it: a glibc
//!   `sigaction` SA_SIGINFO handler, `prctl` over an empty range with a
//!   selector of its own; the handler writes RAX in the ucontext and sets
//!   the selector to ALLOW for glibc's restorer, so every call sets BLOCK
//!   before its `syscall`;
//! - `peer_seccomp_trap`: a seccomp filter answering SECCOMP_RET_TRAP for
//!   getppid, and a glibc SIGSYS handler that writes RAX;
//! - `peer_seccomp_notif`: a seccomp filter answering SECCOMP_RET_USER_NOTIF
//!   for getppid, answered by a supervisor thread of the same process;
//! - `peer_ptrace`: a tracer emulating getppid for a forked tracee with
//!   PTRACE_SYSEMU, GETREGS and SETREGS; timed in the tracer, from resuming
//!   the tracee to its next syscall stop, answered (the tracee checks each
//!   result and reports through its exit status);
//! - `peer_prctl_toggle`: dispatch switched with `prctl` at each guest/host
//!   crossing instead of with the selector: per call, `sud::arm` (prctl on),
//!   the guest's trapped getppid emulated by sud's callback, `sud::disarm`
//!   (prctl off, from the allowed region); the selector stays at BLOCK.  It
//!   compares with `emulate` plus one `selector_flip`.

use linux_raw_sys::general::{__NR_arch_prctl, __NR_exit_group, __NR_getppid, ARCH_SET_FS};
use linux_raw_sys::prctl::{
    PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
    SYSCALL_DISPATCH_FILTER_ALLOW, SYSCALL_DISPATCH_FILTER_BLOCK,
};
use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering, compiler_fence};
use std::time::Instant;
use sud::{Action, Errno, Syscall};

/// The environment variable that makes this binary run one case and print
/// its result, instead of running them all.
const CASE_ENV: &str = "SUD_BENCH_CASE";

/// What every emulated getppid answers: above the kernel's largest
/// `pid_max` (2^22), so no real parent pid can pass for it.
const EMULATED: usize = 4_242_424;

/// How many calls a case makes.
#[derive(Clone, Copy)]
struct Plan {
    warmup: u64,
    batches: u64,
    per_batch: u64,
}

impl Plan {
    /// Every call of the case, warm-up included.
    const fn total(self) -> u64 {
        self.warmup + self.batches * self.per_batch
    }
}

/// Calls that stay in the kernel or in user space: ~0.1 us.
const FAST: Plan = Plan {
    warmup: 50_000,
    batches: 21,
    per_batch: 100_000,
};
/// Calls that take a SIGSYS round trip: ~2-3 us.
const TRAPPED: Plan = Plan {
    warmup: 5_000,
    batches: 21,
    per_batch: 5_000,
};
/// Calls answered by another thread or process: ~10-60 us.
const SLOW: Plan = Plan {
    warmup: 500,
    batches: 21,
    per_batch: 1_000,
};

/// How many child processes each case gets, one per round: a case's
/// batches come from moments spread over the whole run.
const ROUNDS: u32 = 5;

/// What one child process measured.
struct Batches {
    /// Calls in each batch.
    per_batch: u64,
    /// ns per call, one value per batch.
    ns_per_call: Vec<f64>,
}

/// A row of the table: a name and the function that measures it.
struct Case {
    name: &'static str,
    run: fn() -> Batches,
}

const CASES: &[Case] = &[
    Case {
        name: "raw_syscall",
        run: raw_syscall,
    },
    Case {
        name: "trampoline_unarmed",
        run: trampoline_unarmed,
    },
    Case {
        name: "trampoline_blocked",
        run: trampoline_blocked,
    },
    Case {
        name: "armed_allow",
        run: armed_allow,
    },
    Case {
        name: "selector_flip",
        run: selector_flip,
    },
    Case {
        name: "emulate",
        run: emulate,
    },
    Case {
        name: "emulate_c",
        run: emulate_c,
    },
    Case {
        name: "emulate_fs_moved",
        run: emulate_fs_moved,
    },
    Case {
        name: "emulate_arch_prctl",
        run: emulate_arch_prctl,
    },
    Case {
        name: "emulate_fs_moved_arch_prctl",
        run: emulate_fs_moved_arch_prctl,
    },
    Case {
        name: "reissue",
        run: reissue,
    },
    Case {
        name: "redirect",
        run: redirect,
    },
    Case {
        name: "entry_call",
        run: entry_call,
    },
    Case {
        name: "entry_call_xsave",
        run: entry_call_xsave,
    },
    Case {
        name: "rewritten_site",
        run: rewritten_site,
    },
    Case {
        name: "rewritten_site_reissue",
        run: rewritten_site_reissue,
    },
    Case {
        name: "xsave_restore",
        run: xsave_restore,
    },
    Case {
        name: "ret_after_syscall",
        run: ret_after_syscall,
    },
    Case {
        name: "peer_glibc_sud",
        run: peer_glibc_sud,
    },
    Case {
        name: "peer_seccomp_trap",
        run: peer_seccomp_trap,
    },
    Case {
        name: "peer_seccomp_notif",
        run: peer_seccomp_notif,
    },
    Case {
        name: "peer_ptrace",
        run: peer_ptrace,
    },
    Case {
        name: "peer_prctl_toggle",
        run: peer_prctl_toggle,
    },
];

fn main() {
    match std::env::var(CASE_ENV) {
        Ok(name) => run_child(&name),
        Err(_) => run_all(),
    }
}

// ---------------------------------------------------------------- parent --

/// One case's results: every batch of every round.
struct Row {
    case: &'static Case,
    ns_per_call: Vec<f64>,
    /// Calls measured, warm-up excluded.
    iters: u64,
}

impl Row {
    /// The median ns per call over every batch; None for a case not measured.
    fn median(&self) -> Option<f64> {
        let mut sorted = self.ns_per_call.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }
}

fn run_all() {
    let started = Instant::now();
    let mut rows: Vec<Row> = CASES
        .iter()
        .map(|case| Row {
            case,
            ns_per_call: Vec::new(),
            iters: 0,
        })
        .collect();
    for round in 1..=ROUNDS {
        print!("round {round}/{ROUNDS}:");
        for row in rows.iter_mut() {
            print!(" {}", row.case.name);
            std::io::stdout().flush().expect("flush stdout");
            let batches = run_in_child(row.case.name);
            row.iters += batches.per_batch * batches.ns_per_call.len() as u64;
            row.ns_per_call.extend(batches.ns_per_call);
        }
        println!();
    }
    let median_of = |name: &str| {
        rows.iter()
            .find(|row| row.case.name == name)
            .and_then(Row::median)
            .expect("baseline case measured")
    };
    let raw = median_of("raw_syscall");
    let glibc_sud = median_of("peer_glibc_sud");

    println!(
        "\n{:<20} {:>12} {:>12} {:>16}",
        "case", "median ns", "x raw", "x glibc_sud"
    );
    let mut jsonl = String::new();
    for row in &rows {
        let name = row.case.name;
        let ns = row.median().expect("every case measured");
        println!(
            "{name:<20} {ns:>12.1} {:>12.2} {:>16.2}",
            ns / raw,
            ns / glibc_sud
        );
        jsonl += &format!(
            "{{\"case\": \"{name}\", \"ns\": {ns:.1}, \"iters\": {}}}\n",
            row.iters
        );
    }
    let (rust, c) = (median_of("emulate"), median_of("emulate_c"));
    println!(
        "\nthe C callback (emulate_c) against the Rust one (emulate): {:+.1} %",
        (c / rust - 1.0) * 100.0
    );
    println!(
        "\nns: median of ns/call over {} batches per case ({ROUNDS} child processes of {} \
         batches each, after a warm-up).\nselector_flip: one block()+allow() pair, no syscall. \
         peer_ptrace: timed in the tracer.\npeer_prctl_toggle: prctl on + the trapped, emulated \
         getppid + prctl off, selector left at BLOCK;\ncompare it with emulate + selector_flip.",
        ROUNDS as u64 * FAST.batches,
        FAST.batches,
    );

    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/target");
    std::fs::create_dir_all(target).expect("create target/");
    let path = format!("{target}/sud-bench.jsonl");
    std::fs::write(&path, jsonl).expect("write target/sud-bench.jsonl");
    println!(
        "wrote {path}; whole run {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs one case in a fresh copy of this binary and reads what it measured:
/// a line `per_batch ns ns ...`.
fn run_in_child(name: &str) -> Batches {
    let output = Command::new(std::env::current_exe().expect("own executable"))
        .env(CASE_ENV, name)
        .stderr(Stdio::inherit())
        .output()
        .expect("start a child process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        eprintln!(
            "\ncase {name} failed ({}), its output:\n{stdout}",
            output.status
        );
        std::process::exit(1);
    }
    let bad_output = || -> ! { panic!("case {name}: bad output {stdout:?}") };
    let mut fields = stdout.split_whitespace();
    let per_batch = fields
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| bad_output());
    let ns_per_call: Vec<f64> = fields
        .map(|f| f.parse().unwrap_or_else(|_| bad_output()))
        .collect();
    if ns_per_call.is_empty() {
        bad_output();
    }
    Batches {
        per_batch,
        ns_per_call,
    }
}

// ----------------------------------------------------------------- child --

fn run_child(name: &str) {
    let case = CASES
        .iter()
        .find(|case| case.name == name)
        .expect("known case");
    let batches = (case.run)();
    let mut line = batches.per_batch.to_string();
    for ns in batches.ns_per_call {
        line += &format!(" {ns}");
    }
    println!("{line}");
}

/// Makes `plan.warmup` calls, then times `plan.batches` batches of
/// `plan.per_batch` calls; `batch(n)` makes `n` calls.
fn measure(plan: Plan, mut batch: impl FnMut(u64)) -> Batches {
    batch(plan.warmup);
    let mut ns_per_call = Vec::with_capacity(plan.batches as usize);
    for _ in 0..plan.batches {
        let start = Instant::now();
        batch(plan.per_batch);
        ns_per_call.push(start.elapsed().as_nanos() as f64 / plan.per_batch as f64);
    }
    Batches {
        per_batch: plan.per_batch,
        ns_per_call,
    }
}

/// Checks one answer; inlined so that the check costs a compare and a branch.
#[inline(always)]
fn check(got: Result<usize, Errno>, want: usize) {
    if got != Ok(want) {
        wrong_answer(got, want);
    }
}

#[cold]
#[inline(never)]
fn wrong_answer(got: Result<usize, Errno>, want: usize) -> ! {
    // Let the report's own syscalls run.
    sud::SELECTOR.allow();
    eprintln!("wrong answer: got {got:?}, want {want}");
    std::process::exit(1);
}

/// The guest's call: an inline `syscall` instruction.
#[inline(always)]
fn guest_getppid() -> Result<usize, Errno> {
    // SAFETY: getppid has no arguments and no effect; when trapped, every
    // case's handler answers it with a plain value.
    unsafe { sud::guest::syscall0(__NR_getppid) }
}

fn real_ppid() -> usize {
    std::os::unix::process::parent_id() as usize
}

fn raw_syscall() -> Batches {
    let ppid = real_ppid();
    measure(FAST, |n| {
        for _ in 0..n {
            check(guest_getppid(), ppid);
        }
    })
}

fn trampoline_unarmed() -> Batches {
    let ppid = real_ppid();
    measure(FAST, |n| {
        for _ in 0..n {
            // SAFETY: getppid has no arguments and no effect.
            check(unsafe { sud::host::syscall0(__NR_getppid) }, ppid);
        }
    })
}

fn trampoline_blocked() -> Batches {
    let ppid = real_ppid();
    sud::install(emulate_getppid).expect("install");
    sud::arm().expect("arm");
    let batches = measure(FAST, |n| {
        // SAFETY: until allow(), the loop makes only host (never trapped)
        // syscalls, and the callback would answer any other getppid.
        unsafe { sud::SELECTOR.block() };
        for _ in 0..n {
            // SAFETY: getppid has no arguments and no effect.
            check(unsafe { sud::host::syscall0(__NR_getppid) }, ppid);
        }
        sud::SELECTOR.allow();
    });
    sud::disarm().expect("disarm");
    batches
}

fn armed_allow() -> Batches {
    let ppid = real_ppid();
    sud::install(emulate_getppid).expect("install");
    sud::arm().expect("arm");
    let batches = measure(FAST, |n| {
        for _ in 0..n {
            check(guest_getppid(), ppid);
        }
    });
    sud::disarm().expect("disarm");
    batches
}

fn selector_flip() -> Batches {
    sud::install(emulate_getppid).expect("install");
    sud::arm().expect("arm");
    let batches = measure(FAST, |n| {
        for _ in 0..n {
            // The selector through black_box and a fence after each store:
            // neither store may be merged away or moved out of the loop.
            let selector = black_box(&sud::SELECTOR);
            // SAFETY: no syscall is made before allow().
            unsafe { selector.block() };
            compiler_fence(Ordering::SeqCst);
            selector.allow();
            compiler_fence(Ordering::SeqCst);
        }
    });
    sud::disarm().expect("disarm");
    batches
}

fn emulate_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        Action::Emulate(EMULATED)
    } else {
        Action::default()
    }
}

fn reissue_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        Action::Reissue
    } else {
        Action::default()
    }
}

/// Guest getppid calls, armed under BLOCK, answered by `handler`.
fn trapped(handler: sud::Handler, want: usize) -> Batches {
    sud::install(handler).expect("install");
    sud::arm().expect("arm");
    let batches = measure(TRAPPED, |n| {
        // SAFETY: until allow(), the loop's only syscalls are the guest's
        // getppid, which `handler` answers with a plain value.
        unsafe { sud::SELECTOR.block() };
        for _ in 0..n {
            check(guest_getppid(), want);
        }
        sud::SELECTOR.allow();
    });
    sud::disarm().expect("disarm");
    batches
}

fn emulate() -> Batches {
    trapped(emulate_getppid, EMULATED)
}

/// getppid emulated, arch_prctl reissued (the guest moving its FS).
fn emulate_getppid_reissue_arch_prctl(call: &mut Syscall) -> Action {
    match call.number() {
        nr if nr == __NR_getppid => Action::Emulate(EMULATED),
        nr if nr == __NR_arch_prctl => Action::Reissue,
        _ => Action::default(),
    }
}

/// As `emulate`, with the guest's FS moved (by a trapped arch_prctl, once
/// per batch, as a libc does once at start-up) to a thread area of its
/// own: every trap switches FS to the host's and back.
fn trapped_with_fs_moved() -> Batches {
    sud::install(emulate_getppid_reissue_arch_prctl).expect("install");
    sud::arm().expect("arm");
    // The guest's thread area: nothing in the loop reads it.
    let area = vec![0u64; 1024];
    let guest_fs = area.as_ptr() as usize + 4096;
    let mut host_fs = 0u64;
    let batches = measure(TRAPPED, |n| {
        // SAFETY: until allow(), the loop's only syscalls are the guest's
        // arch_prctl (reissued) and getppid (emulated); no code between the
        // two arch_prctl uses thread-local data.
        unsafe {
            sud::SELECTOR.block();
            let get =
                sud::guest::syscall2(__NR_arch_prctl, ARCH_GET_FS, (&raw mut host_fs) as usize);
            check(get, 0);
            check(
                sud::guest::syscall2(__NR_arch_prctl, ARCH_SET_FS as usize, guest_fs),
                0,
            );
        }
        for _ in 0..n {
            check(guest_getppid(), EMULATED);
        }
        // SAFETY: the host's FS back, as read above.
        unsafe {
            check(
                sud::guest::syscall2(__NR_arch_prctl, ARCH_SET_FS as usize, host_fs as usize),
                0,
            );
        }
        sud::SELECTOR.allow();
    });
    sud::disarm().expect("disarm");
    drop(area);
    batches
}

fn emulate_fs_moved() -> Batches {
    trapped_with_fs_moved()
}

/// As `emulate`, with thread pointers switched through arch_prctl, as on a
/// machine without FSGSBASE: a guest that never moved FS costs nothing more.
fn emulate_arch_prctl() -> Batches {
    sud::__thread_pointers_through_arch_prctl();
    trapped(emulate_getppid, EMULATED)
}

/// As `emulate_fs_moved`, through arch_prctl: four syscalls per trap.
fn emulate_fs_moved_arch_prctl() -> Batches {
    sud::__thread_pointers_through_arch_prctl();
    trapped_with_fs_moved()
}

/// `ARCH_GET_FS` (arch/x86/include/uapi/asm/prctl.h; linux-raw-sys has
/// only ARCH_SET_FS).
const ARCH_GET_FS: usize = 0x1003;

fn reissue() -> Batches {
    trapped(reissue_getppid, real_ppid())
}

/// A C program's callback, as `sud_install` takes it: the emulated value
/// comes through the user pointer.
///
/// # Safety
/// `call` is the view sud lends, `user` points to a `u64`.
unsafe extern "C" fn c_emulate_getppid(
    call: *mut sud_capi_abi::SudSyscall,
    user: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    // SAFETY: the caller's promise.
    unsafe {
        if sud_capi_abi::sud_syscall_number(call) == __NR_getppid {
            sud_capi_abi::sud_emulate(call, *user.cast::<u64>())
        } else {
            sud_capi_abi::sud_deny(call, Errno::ENOSYS.raw())
        }
    }
}

fn emulate_c() -> Batches {
    static VALUE: u64 = EMULATED as u64;
    let user = (&raw const VALUE).cast_mut().cast();
    assert_eq!(
        sud_capi_abi::sud_install(Some(c_emulate_getppid), user),
        0,
        "sud_install"
    );
    // sud's callback is then the C interface's dispatcher.
    trapped(sud_capi_abi::dispatch, EMULATED)
}

fn redirect_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        Action::Redirect
    } else {
        Action::default()
    }
}

fn redirect() -> Batches {
    sud::install_redirect(|_| EMULATED).unwrap();
    trapped(redirect_getppid, EMULATED)
}

/// getppid through `call sud_entry`, with R11 = 0: the global selector.
#[inline(always)]
fn entry_getppid(entry: usize) -> Result<usize, Errno> {
    let result: usize;
    // SAFETY: sud_entry takes the syscall's registers and R11, and clobbers
    // RCX and R11 only; it writes below RSP, so the asm may not promise
    // `nostack`, and the compiler keeps the red zone free and RSP aligned.
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rax") __NR_getppid as usize => result,
            inlateout("r11") 0usize => _,
            lateout("rcx") _,
        );
    }
    Errno::result(result)
}

fn entry_call() -> Batches {
    sud::install(emulate_getppid).expect("install");
    sud::arm().expect("arm");
    let entry = sud::region_symbols().entry;
    let batches = measure(FAST, |n| {
        // SAFETY: until allow(), the loop makes no syscall of its own: every
        // getppid goes through sud_entry, answered by the callback.
        unsafe { sud::SELECTOR.block() };
        for _ in 0..n {
            check(entry_getppid(entry), EMULATED);
        }
        sud::SELECTOR.allow();
    });
    sud::disarm().expect("disarm");
    batches
}

/// `entry_call` with the extended state kept by XSAVEC + XRSTOR, as
/// before the direct paths moved the registers themselves.
fn entry_call_xsave() -> Batches {
    sud::__extended_state_through_xsave();
    entry_call()
}

core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl bench_site",
    "bench_site:",
    "    mov eax, {getppid}",
    "    syscall",
    "    ret",
    ".globl bench_site_end",
    "bench_site_end:",
    getppid = const __NR_getppid,
);

unsafe extern "C" {
    /// `mov eax, getppid; syscall; ret`: a libc wrapper's trap site.
    fn bench_site() -> usize;
    static bench_site_end: u8;
}

/// getppid through `bench_site`, rewritten after its first trap: the
/// `jmp` to its thunk and `sud_site_entry`, no signal.
fn rewritten(handler: sud::Handler, want: usize) -> Batches {
    sud::install(handler).expect("install");
    let site = bench_site as *const () as usize..&raw const bench_site_end as usize;
    sud::rewrite_sites(site, sud::Policy::FirstTrap).expect("rewrite_sites");
    sud::arm().expect("arm");
    let call = || {
        // SAFETY: the site makes getppid, answered by the callback.
        Errno::result(unsafe { bench_site() })
    };
    // SAFETY: until allow(), only the site's getppid runs.
    unsafe { sud::SELECTOR.block() };
    check(call(), want); // the trap that rewrites it
    sud::SELECTOR.allow();
    let mut rewritten = 0;
    sud::rewritten_sites(|_| rewritten += 1);
    assert_eq!(rewritten, 1, "the site was not rewritten");
    let batches = measure(FAST, |n| {
        // SAFETY: as above.
        unsafe { sud::SELECTOR.block() };
        for _ in 0..n {
            check(call(), want);
        }
        sud::SELECTOR.allow();
    });
    sud::disarm().expect("disarm");
    batches
}

fn rewritten_site() -> Batches {
    rewritten(emulate_getppid, EMULATED)
}

fn rewritten_site_reissue() -> Batches {
    rewritten(reissue_getppid, real_ppid())
}

core::arch::global_asm!(
    ".text",
    ".globl bench_syscall_then_ret",
    "bench_syscall_then_ret:",
    "    mov rax, rdi",
    "    syscall",
    "    ret",
);

unsafe extern "C" {
    /// `syscall(nr)` returning with a plain `ret`.
    fn bench_syscall_then_ret(nr: usize) -> usize;
}

fn ret_after_syscall() -> Batches {
    let ppid = real_ppid();
    measure(FAST, |n| {
        for _ in 0..n {
            // SAFETY: getppid has no arguments and no effect.
            check(
                Errno::result(unsafe { bench_syscall_then_ret(__NR_getppid as usize) }),
                ppid,
            );
        }
    })
}

/// XSAVEC (or XSAVE) and XRSTOR of every enabled component, as sud's direct
/// paths do it, into a 64-byte aligned area with a zeroed header.
fn xsave_restore() -> Batches {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // `__cpuid` is safe since Rust 1.89 and unsafe before: the block keeps
    // both compiling.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU.
    let (leaf1, leaf_d0, leaf_d1) =
        unsafe { (__cpuid(1), __cpuid_count(0xd, 0), __cpuid_count(0xd, 1)) };
    assert!(leaf1.ecx & (1 << 27) != 0, "no OSXSAVE");
    let size = leaf_d0.ebx as usize;
    let compacted = leaf_d1.eax & (1 << 1) != 0;
    let mut area = vec![0u8; size + 64];
    let offset = area.as_ptr().align_offset(64);
    let area = &mut area[offset..offset + size];
    measure(FAST, |n| {
        for _ in 0..n {
            area[512..576].fill(0);
            // SAFETY: a 64-byte aligned area of the size CPUID gives, its
            // header zeroed; XRSTOR puts back exactly what XSAVE(C) saved.
            unsafe {
                if compacted {
                    core::arch::asm!("xsavec64 [{0}]", "xrstor64 [{0}]", in(reg) area.as_mut_ptr(),
                        in("eax") -1, in("edx") -1, options(nostack));
                } else {
                    core::arch::asm!("xsave64 [{0}]", "xrstor64 [{0}]", in(reg) area.as_mut_ptr(),
                        in("eax") -1, in("edx") -1, options(nostack));
                }
            }
            black_box(&area);
        }
    })
}

fn peer_prctl_toggle() -> Batches {
    sud::install(emulate_getppid).expect("install");
    // SAFETY: the thread is armed only around the guest's getppid, which
    // emulate_getppid answers; arm and disarm run from the allowed region.
    unsafe { sud::SELECTOR.block() };
    let batches = measure(TRAPPED, |n| {
        for _ in 0..n {
            sud::arm().expect("arm");
            check(guest_getppid(), EMULATED);
            sud::disarm().expect("disarm");
        }
    });
    sud::SELECTOR.allow();
    batches
}

// ----------------------------------------------------------- glibc peers --

/// Writes the emulated getppid result into a SIGSYS frame's saved RAX (or
/// -ENOSYS for any other syscall; the kernel leaves the number in RAX).
///
/// # Safety
/// `context` is the `ucontext_t` of a SIGSYS handler's frame.
unsafe fn answer_in_ucontext(context: *mut libc::c_void) {
    // SAFETY: the caller passes the frame's ucontext_t, ours while the
    // handler runs.
    let gregs = unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let rax = &mut gregs[libc::REG_RAX as usize];
    *rax = if *rax == __NR_getppid as i64 {
        EMULATED as i64
    } else {
        -(libc::ENOSYS as i64)
    };
}

/// Installs `handler` for SIGSYS with glibc's `sigaction`, SA_SIGINFO.
fn install_glibc_sigsys(
    handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
) {
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()),
            0,
            "sigaction"
        );
    }
}

/// peer_glibc_sud's selector: its own byte, as in the kernel selftests.
static GLIBC_SELECTOR: AtomicU8 = AtomicU8::new(SYSCALL_DISPATCH_FILTER_ALLOW as u8);

extern "C" fn glibc_sud_handler(
    _: libc::c_int,
    _: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes this SIGSYS frame's ucontext_t.
    unsafe { answer_in_ucontext(context) };
    // glibc's restorer makes its rt_sigreturn outside any allowed range.
    GLIBC_SELECTOR.store(SYSCALL_DISPATCH_FILTER_ALLOW as u8, Ordering::Relaxed);
}

fn peer_glibc_sud() -> Batches {
    install_glibc_sigsys(glibc_sud_handler);
    // SAFETY: the selector is a static byte holding ALLOW; with the empty
    // range every syscall is dispatched while it says BLOCK, and it says
    // BLOCK only from the store before the guest's syscall to the handler.
    let on = unsafe {
        libc::prctl(
            PR_SET_SYSCALL_USER_DISPATCH as libc::c_int,
            PR_SYS_DISPATCH_EXCLUSIVE_ON as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            GLIBC_SELECTOR.as_ptr(),
        )
    };
    assert_eq!(on, 0, "prctl(PR_SET_SYSCALL_USER_DISPATCH)");
    let batches = measure(TRAPPED, |n| {
        for _ in 0..n {
            GLIBC_SELECTOR.store(SYSCALL_DISPATCH_FILTER_BLOCK as u8, Ordering::Relaxed);
            check(guest_getppid(), EMULATED);
        }
    });
    // SAFETY: turning dispatch off takes no memory; the selector says ALLOW.
    let off = unsafe {
        libc::prctl(
            PR_SET_SYSCALL_USER_DISPATCH as libc::c_int,
            PR_SYS_DISPATCH_OFF,
            0,
            0,
            0,
        )
    };
    assert_eq!(off, 0, "prctl(PR_SET_SYSCALL_USER_DISPATCH, OFF)");
    batches
}

/// `AUDIT_ARCH_X86_64` from linux/audit.h.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Installs, for the calling thread only, a seccomp filter that answers
/// `action` for x86-64 getppid and lets everything else run; returns what
/// seccomp(2) returns (the listener fd with NEW_LISTENER).
fn install_seccomp_filter(action: u32, flags: libc::c_ulong) -> libc::c_long {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        insn(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        insn(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        insn(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        insn(JEQ_K, 0, 1, __NR_getppid),
        insn(RET_K, 0, 0, action),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl and seccomp only read `program`; the filter traps
    // nothing but getppid, which every seccomp case answers.
    unsafe {
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            0,
            "PR_SET_NO_NEW_PRIVS"
        );
        let answer = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &program,
        );
        assert!(answer >= 0, "seccomp: {}", std::io::Error::last_os_error());
        answer
    }
}

extern "C" fn seccomp_trap_handler(
    _: libc::c_int,
    _: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes this SIGSYS frame's ucontext_t.
    unsafe { answer_in_ucontext(context) };
}

fn peer_seccomp_trap() -> Batches {
    install_glibc_sigsys(seccomp_trap_handler);
    install_seccomp_filter(libc::SECCOMP_RET_TRAP, 0);
    measure(TRAPPED, |n| {
        for _ in 0..n {
            check(guest_getppid(), EMULATED);
        }
    })
}

fn peer_seccomp_notif() -> Batches {
    // The supervisor exists before the filter, which then applies to the
    // guest (this) thread only.
    let (send_fd, receive_fd) = std::sync::mpsc::channel::<libc::c_int>();
    std::thread::spawn(move || supervise(receive_fd.recv().expect("listener fd")));
    let listener = install_seccomp_filter(
        libc::SECCOMP_RET_USER_NOTIF,
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
    );
    send_fd
        .send(listener as libc::c_int)
        .expect("hand the listener over");
    measure(SLOW, |n| {
        for _ in 0..n {
            check(guest_getppid(), EMULATED);
        }
    })
}

/// The supervisor: answers every notification with the emulated value,
/// until the process exits.
fn supervise(listener: libc::c_int) {
    loop {
        // SAFETY: the kernel wants a zeroed seccomp_notif to fill in.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: `notif` is a seccomp_notif that the kernel fills in.
        if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif) } != 0 {
            continue; // EINTR, or the guest's call went away
        }
        // The filter notifies getppid only.
        let mut response = libc::seccomp_notif_resp {
            id: notif.id,
            val: EMULATED as i64,
            error: 0,
            flags: 0,
        };
        // SAFETY: `response` is a seccomp_notif_resp the kernel reads; an
        // ENOENT (the call went away) needs no handling.
        unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut response) };
    }
}

// ----------------------------------------------------------------- ptrace --

fn peer_ptrace() -> Batches {
    let calls = SLOW.total();
    // SAFETY: this child process is single-threaded; the forked tracee only
    // makes raw syscalls and leaves with _exit.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => tracee(calls),
        pid => tracer(pid),
    }
}

/// The traced process: stops itself, then makes exactly `calls` getppid
/// calls, each checked, and reports through its exit status.  Nothing here
/// may make another syscall once the tracer has it under PTRACE_SYSEMU.
fn tracee(calls: u64) -> ! {
    // SAFETY: raw syscalls of a fresh fork child; _exit ends it.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            libc::_exit(2);
        }
        libc::kill(libc::getpid(), libc::SIGSTOP);
        for _ in 0..calls {
            if guest_getppid() != Ok(EMULATED) {
                libc::_exit(1);
            }
        }
        libc::_exit(0);
    }
}

/// The tracer: each call is one PTRACE_SYSEMU resume, the tracee's next
/// syscall stop, and GETREGS / SETREGS to answer it.
fn tracer(pid: libc::pid_t) -> Batches {
    let wait_stop = || {
        let mut status = 0;
        // SAFETY: waits for our own child.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid, "waitpid");
        assert!(
            libc::WIFSTOPPED(status),
            "tracee ended early: status {status:#x}"
        );
        libc::WSTOPSIG(status)
    };
    assert_eq!(wait_stop(), libc::SIGSTOP);
    // SAFETY: ptrace requests on our own stopped tracee; the register block
    // is a user_regs_struct, as GETREGS and SETREGS want.
    let resume_and_answer = || unsafe {
        assert_eq!(
            libc::ptrace(libc::PTRACE_SYSEMU, pid, 0, 0),
            0,
            "PTRACE_SYSEMU"
        );
        assert_eq!(wait_stop(), libc::SIGTRAP | 0x80, "not a syscall stop");
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        assert_eq!(
            libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs),
            0,
            "PTRACE_GETREGS"
        );
        if regs.orig_rax == __NR_getppid as u64 {
            regs.rax = EMULATED as u64;
            assert_eq!(
                libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &regs),
                0,
                "PTRACE_SETREGS"
            );
        }
        regs
    };
    // SAFETY: as above; the tracee dies with us should we die first.
    let options = libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL;
    assert_eq!(
        unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options) },
        0,
        "PTRACE_SETOPTIONS"
    );
    let batches = measure(SLOW, |n| {
        for _ in 0..n {
            let regs = resume_and_answer();
            if regs.orig_rax != __NR_getppid as u64 {
                panic!(
                    "tracee made syscall {} (status {}), not getppid",
                    regs.orig_rax, regs.rdi
                );
            }
        }
    });
    // After its last call the tracee checks that answer and calls exit_group.
    let last = resume_and_answer();
    assert_eq!(
        last.orig_rax, __NR_exit_group as u64,
        "tracee made more calls than planned"
    );
    assert_eq!(last.rdi, 0, "the tracee saw a wrong answer");
    // SAFETY: ends our own tracee, stopped in its (emulated) exit_group.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    batches
}
