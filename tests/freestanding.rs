//! Builds the freestanding test executables in `tests/freestanding/` (no
//! libc, static, non-PIE, own `_start`, linked with sud's link.ld) with this
//! run's profile and RUSTFLAGS, runs each, and checks that it exited 0 and
//! that every case it was meant to run reported `ok`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// How to pick each linker: rust-lld is the toolchain's default.
const LINKERS: [(&str, &str); 2] = [("lld", ""), ("gnu-ld", "-C linker-features=-lld")];

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Builds the freestanding crate into `target/<dir>` with `rustflags` (and
/// without sud's linker script if `link_script` is false), once per
/// directory, and returns the directory holding the executables.
fn build(dir: &str, rustflags: Option<&str>, link_script: bool) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let target = Path::new(MANIFEST_DIR).join("target").join(dir);
    let bins = target.join(profile());
    if built.iter().any(|d| d == dir) {
        return bins;
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(MANIFEST_DIR)
        .args([
            "build",
            "--manifest-path",
            "tests/freestanding/Cargo.toml",
            "--bins",
            "--target-dir",
        ])
        .arg(&target);
    if profile() == "release" {
        cargo.arg("--release");
    }
    if let Some(flags) = rustflags {
        cargo.env("RUSTFLAGS", flags);
    }
    if !link_script {
        cargo.env("SUD_WITHOUT_LINK_SCRIPT", "1");
    }
    let status = cargo.status().expect("run cargo");
    assert!(
        status.success(),
        "building the freestanding tests failed: {status}"
    );
    built.push(dir.to_string());
    bins
}

/// The executables built the way this test run itself was built.
fn this_run_bins() -> &'static Path {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| build("freestanding", None, true))
}

/// Runs `bin` and checks exit status 0 and an `ok` line for each case.
fn run(bin: &Path, cases: &[&str]) -> String {
    let out = Command::new(bin).output().expect("run freestanding test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    assert!(
        out.status.success(),
        "{} ended {}",
        bin.display(),
        out.status
    );
    for case in cases {
        assert!(
            stdout.lines().any(|l| l == format!("ok {case}")),
            "case {case} did not report ok"
        );
    }
    assert!(!stdout.contains("FAIL"));
    stdout
}

#[test]
fn kernel_selftests() {
    run(
        &this_run_bins().join("kernel_selftests"),
        &[
            "dispatch_trigger_sigsys",
            "bad_prctl_param",
            "dispatch_and_return",
            "bad_selector",
            "disable_dispatch",
            "direct_dispatch_range",
            "dispatch_range",
        ],
    );
}

#[test]
fn registers() {
    run(
        &this_run_bins().join("registers"),
        &[
            "native_reference_is_deterministic",
            "emulate_preserves_registers",
            "reissue_preserves_registers",
            "deny_preserves_registers",
            "emulate_leaves_red_zone",
            "reissue_leaves_red_zone",
            "redirect_preserves_registers",
            "redirect_leaves_red_zone",
            "entry_emulate_preserves_registers",
            "entry_reissue_preserves_registers",
            "entry_redirect_preserves_registers",
        ],
    );
}

/// The smallest program on sud runs, trapped.
#[test]
fn minimal() {
    let out = Command::new(this_run_bins().join("minimal"))
        .output()
        .expect("run minimal");
    assert!(out.status.success(), "minimal ended {}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "minimal: getppid emulated, write reissued\n"
    );
}

const REGION_CASES: [&str; 8] = [
    "region_found_and_page_aligned",
    "region_holds_every_entry_point",
    "region_goes_on_past_every_syscall",
    "restorer_bytes",
    "region_is_executable_mapping",
    "symbols_for_generated_code",
    "trampolines_run_while_blocked",
    "outside_syscall_traps_while_blocked",
];

#[test]
fn region() {
    run(&this_run_bins().join("region"), &REGION_CASES);
}

/// Whether `binary` says it was linked by LLD (lld writes its name into
/// `.comment`; GNU ld writes nothing there).
fn linked_by_lld(binary: &Path) -> bool {
    let bytes = std::fs::read(binary).expect("read binary");
    bytes
        .windows(b"Linker: LLD".len())
        .any(|w| w == b"Linker: LLD")
}

/// Whatever linker this run uses, the region is found, under each linker in
/// turn: with link.ld (freestanding, static, non-PIE), without any script
/// (the same, with the linker's default layout), and in a PIE (the std demo).
#[test]
fn region_found_under_both_linkers() {
    for (name, flags) in LINKERS {
        let bins = build(&format!("freestanding-{name}"), Some(flags), true);
        let region = bins.join("region");
        assert_eq!(
            linked_by_lld(&region),
            name == "lld",
            "{name} did not link {}",
            region.display()
        );
        run(&region, &REGION_CASES);

        let bins = build(
            &format!("freestanding-{name}-no-script"),
            Some(flags),
            false,
        );
        let minimal = bins.join("minimal");
        assert_eq!(linked_by_lld(&minimal), name == "lld");
        let out = Command::new(&minimal).output().expect("run minimal");
        assert!(
            out.status.success(),
            "minimal linked by {name} without link.ld ended {}",
            out.status
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "minimal: getppid emulated, write reissued\n"
        );
        let audit = bins.join("audit_tracee");
        let out = Command::new(&audit).output().expect("run audit_tracee");
        assert!(
            out.status.success(),
            "audit_tracee linked by {name} without link.ld ended {}",
            out.status
        );

        let target = Path::new(MANIFEST_DIR)
            .join("target")
            .join(format!("pie-{name}"));
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(MANIFEST_DIR)
            .args(["build", "--example", "demo", "--target-dir"])
            .arg(&target);
        if profile() == "release" {
            cargo.arg("--release");
        }
        let status = cargo.env("RUSTFLAGS", flags).status().expect("run cargo");
        assert!(status.success());
        let demo = target.join(profile()).join("examples").join("demo");
        assert_eq!(linked_by_lld(&demo), name == "lld");
        let out = Command::new(&demo).output().expect("run demo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        assert!(
            out.status.success(),
            "demo linked by {name} ended {}",
            out.status
        );
        assert!(stdout.contains("emulated -> 4242") && stdout.contains("reissued -> 50"));
    }
}

/// The audit: `audit_tracee` runs every runtime path with the selector at
/// BLOCK while this test traces it with ptrace, stopping at every syscall
/// the kernel executes and at every signal.  Dispatched syscalls never reach
/// ptrace's syscall stops (dispatch comes first), so the two views together
/// cover every `syscall` instruction the tracee runs:
/// - each dispatched one (a SIGSYS with si_code SYS_USER_DISPATCH) came from
///   the guest's code, never from the runtime's;
/// - each one executed while the selector said BLOCK lies in the allowed
///   region, and the restorer and both reissue stubs are among them.
#[test]
fn runtime_syscalls_while_blocked_lie_in_region() {
    let tracee = this_run_bins().join("audit_tracee");
    let out = Command::new(&tracee)
        .env("SUD_AUDIT_ADDRESSES", "1")
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "name value [value]" pairs, in hex.
    let value = |name: &str, nth: usize| {
        let i = fields
            .iter()
            .position(|f| *f == name)
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        usize::from_str_radix(fields[i + 1 + nth].trim_start_matches("0x"), 16).unwrap()
    };
    let selector = value("selector", 0);
    let region = value("region", 0)..value("region", 1);
    let guest = value("guest", 0)..value("guest", 1);
    let restorer = value("restorer", 0);
    let reissue = value("reissue", 0);
    let reissue_sigreturn = value("reissue_sigreturn", 0);
    let fork = value("fork", 0);

    let trace = ptrace::trace(&tracee, selector);
    print!("{}", trace.stdout);
    assert!(trace.exited_zero, "the tracee failed:\n{}", trace.stdout);
    assert!(trace.stdout.contains("audit workload done"));

    let dispatched: Vec<_> = trace.sigsys.iter().filter(|s| s.code == 2).collect();
    // getpid, getppid, 500, tgkill(SIGUSR1), the guest restorer's
    // rt_sigreturn, tgkill(SIGSYS), getuid (redirected), fork, wait4; the
    // sud_entry call is no signal at all.
    assert_eq!(
        dispatched.len(),
        9,
        "dispatched syscalls: {:x?}",
        trace.sigsys
    );
    for sigsys in &dispatched {
        assert!(
            guest.contains(&sigsys.call_addr),
            "a runtime syscall was dispatched: {sigsys:x?}"
        );
    }
    assert!(
        trace.sigsys.iter().any(|s| s.code == -6),
        "the foreign SIGSYS (SI_TKILL) was not seen"
    );

    let blocked: Vec<_> = trace
        .syscalls
        .iter()
        .filter(|s| s.selector_blocked)
        .collect();
    for syscall in &blocked {
        assert!(
            region.contains(&syscall.ip),
            "syscall {} ran under BLOCK from {:#x}, outside {region:x?}",
            syscall.nr,
            syscall.ip
        );
    }
    let ran_from = |entry: usize| blocked.iter().any(|s| (entry..entry + 16).contains(&s.ip));
    assert!(
        ran_from(restorer),
        "no rt_sigreturn from sud_restorer under BLOCK"
    );
    assert!(
        ran_from(reissue),
        "no reissued syscall from sud_reissue under BLOCK"
    );
    assert!(
        ran_from(reissue_sigreturn),
        "no guest rt_sigreturn from sud_reissue_sigreturn under BLOCK"
    );
    // The fork stub blocks signals first: its fork is a few instructions in.
    assert!(
        blocked
            .iter()
            .any(|s| s.nr == 57 && (fork..fork + 128).contains(&s.ip)),
        "no fork from sud_reissue_fork under BLOCK"
    );
    println!(
        "{} syscalls executed while blocked, all in the region; {} dispatched, all from guest code",
        blocked.len(),
        dispatched.len()
    );
}

/// A minimal ptrace tracer: every syscall-entry stop and every SIGSYS.
mod ptrace {
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    #[derive(Debug)]
    pub struct SyscallEntry {
        pub nr: u64,
        /// The address after the `syscall` instruction.
        pub ip: usize,
        pub selector_blocked: bool,
    }

    #[derive(Debug)]
    pub struct Sigsys {
        pub code: i32,
        pub call_addr: usize,
    }

    pub struct Trace {
        pub syscalls: Vec<SyscallEntry>,
        pub sigsys: Vec<Sigsys>,
        pub exited_zero: bool,
        pub stdout: String,
    }

    const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
    const SYSCALL_INFO_ENTRY: u8 = 1;

    /// Runs `binary` traced from its first instruction; `selector` is the
    /// address of its selector byte.
    pub fn trace(binary: &Path, selector: usize) -> Trace {
        let mut command = Command::new(binary);
        command.stdout(Stdio::piped());
        // SAFETY: PTRACE_TRACEME is async-signal-safe; the child stops at exec.
        unsafe {
            command.pre_exec(|| {
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = command.spawn().expect("spawn tracee");
        let pid = child.id() as libc::pid_t;
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        });
        let mut trace = Trace {
            syscalls: Vec::new(),
            sigsys: Vec::new(),
            exited_zero: false,
            stdout: String::new(),
        };
        let mut status = 0;
        // SAFETY: ptrace on our own traced child, with valid buffers.
        unsafe {
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFSTOPPED(status), "tracee did not stop at exec");
            let options = libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL;
            assert_eq!(libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options), 0);
            let mut inject = 0;
            loop {
                assert_eq!(libc::ptrace(libc::PTRACE_SYSCALL, pid, 0, inject), 0);
                inject = 0;
                assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
                if libc::WIFEXITED(status) {
                    trace.exited_zero = libc::WEXITSTATUS(status) == 0;
                    break;
                }
                if libc::WIFSIGNALED(status) {
                    break;
                }
                let signal = libc::WSTOPSIG(status);
                if signal == libc::SIGTRAP | 0x80 {
                    let mut info = [0u64; 11];
                    let size = std::mem::size_of_val(&info);
                    let got = libc::ptrace(PTRACE_GET_SYSCALL_INFO, pid, size, info.as_mut_ptr());
                    assert!(got > 0);
                    if info[0] as u8 == SYSCALL_INFO_ENTRY {
                        let word =
                            libc::ptrace(libc::PTRACE_PEEKDATA, pid, selector & !7, 0) as u64;
                        let byte = (word >> (8 * (selector & 7))) & 0xff;
                        trace.syscalls.push(SyscallEntry {
                            nr: info[3],
                            ip: info[1] as usize,
                            selector_blocked: byte == 1,
                        });
                    }
                } else {
                    if signal == libc::SIGSYS {
                        let mut info: libc::siginfo_t = std::mem::zeroed();
                        assert_eq!(libc::ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut info), 0);
                        let raw = &*(&info as *const libc::siginfo_t as *const [u64; 16]);
                        trace.sigsys.push(Sigsys {
                            code: info.si_code,
                            call_addr: raw[2] as usize,
                        });
                    }
                    inject = signal;
                }
            }
        }
        trace.stdout = reader.join().unwrap();
        let _ = child.wait();
        trace
    }
}
