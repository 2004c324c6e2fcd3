//! `sud::freestanding` as a freestanding executable meets it: `startup`
//! from `tests/freestanding/` (built the way `tests/freestanding.rs` builds
//! it, into the same directory) gets its arguments, environment and
//! auxiliary vector, and its panic handler reports and exits with 101 under
//! BLOCK.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `startup` executable, built once with this run's profile and RUSTFLAGS.
fn startup() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = env!("CARGO_MANIFEST_DIR");
        let target = Path::new(dir).join("target").join("freestanding");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(dir)
            .args(["build", "--manifest-path", "tests/freestanding/Cargo.toml"])
            .args(["--bin", "startup", "--target-dir"])
            .arg(&target);
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            cargo.arg("--release");
            "release"
        };
        let status = cargo.status().expect("run cargo");
        assert!(status.success(), "building startup failed: {status}");
        target.join(profile).join("startup")
    })
}

fn run(args: &[&str]) -> (Output, String) {
    let out = Command::new(startup())
        .args(args)
        .env("SUD_STARTUP", "here")
        .output()
        .expect("run startup");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    (out, stdout)
}

#[test]
fn arguments_environment_auxiliary_vector() {
    let (out, stdout) = run(&["one", "two"]);
    assert!(out.status.success(), "startup ended {}", out.status);
    for case in ["arguments", "environment", "auxiliary_vector"] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {case}")),
            "case {case} did not report ok"
        );
    }
}

/// The message goes to stderr (which the test executables join to stdout)
/// as std words it, and the status is 101, though every syscall outside the
/// allowed region is denied.
#[test]
fn panic_reports_and_exits_101_under_block() {
    let (out, stdout) = run(&["panic"]);
    assert_eq!(out.status.code(), Some(101), "startup ended {}", out.status);
    assert!(
        stdout.contains("panicked at ") && stdout.contains("panic under BLOCK\n"),
        "no panic message: {stdout:?}"
    );
}
