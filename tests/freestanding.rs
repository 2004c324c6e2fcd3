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
    if cfg!(debug_assertions) { "debug" } else { "release" }
}

/// Builds the freestanding crate into `target/<dir>` with `rustflags`, once
/// per directory, and returns the directory holding the executables.
fn build(dir: &str, rustflags: Option<&str>) -> PathBuf {
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
        .args(["build", "--manifest-path", "tests/freestanding/Cargo.toml", "--bins", "--target-dir"])
        .arg(&target);
    if profile() == "release" {
        cargo.arg("--release");
    }
    if let Some(flags) = rustflags {
        cargo.env("RUSTFLAGS", flags);
    }
    let status = cargo.status().expect("run cargo");
    assert!(status.success(), "building the freestanding tests failed: {status}");
    built.push(dir.to_string());
    bins
}

/// The executables built the way this test run itself was built.
fn this_run_bins() -> &'static Path {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| build("freestanding", None))
}

/// Runs `bin` and checks exit status 0 and an `ok` line for each case.
fn run(bin: &Path, cases: &[&str]) -> String {
    let out = Command::new(bin).output().expect("run freestanding test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    assert!(out.status.success(), "{} ended {}", bin.display(), out.status);
    for case in cases {
        assert!(stdout.lines().any(|l| l == format!("ok {case}")), "case {case} did not report ok");
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
        ],
    );
}

const REGION_CASES: [&str; 7] = [
    "region_found_and_page_aligned",
    "region_holds_every_entry_point",
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
    bytes.windows(b"Linker: LLD".len()).any(|w| w == b"Linker: LLD")
}

/// Whatever linker this run uses, the region is found, with link.ld
/// (freestanding, static, non-PIE) and without it (the std demo, PIE),
/// under each linker in turn.
#[test]
fn region_found_under_both_linkers() {
    for (name, flags) in LINKERS {
        let bins = build(&format!("freestanding-{name}"), Some(flags));
        let region = bins.join("region");
        assert_eq!(linked_by_lld(&region), name == "lld", "{name} did not link {}", region.display());
        run(&region, &REGION_CASES);

        let target = Path::new(MANIFEST_DIR).join("target").join(format!("pie-{name}"));
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(MANIFEST_DIR).args(["build", "--example", "demo", "--target-dir"]).arg(&target);
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
        assert!(out.status.success(), "demo linked by {name} ended {}", out.status);
        assert!(stdout.contains("emulated -> 4242") && stdout.contains("reissued -> 50"));
    }
}
