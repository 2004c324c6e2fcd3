//! sud's C interface as C and C++ programs see it.
//!
//! Builds the library the way a C user does, `cargo run -p sud-capi-pack`,
//! with this test run's profile (debug: `dev`; release: `capi`, the shipped
//! build) and RUSTFLAGS; compiles the programs in this directory and
//! `examples/jit.c` with the system's `cc` and `c++` (and `clang` and
//! `musl-gcc`, where there are), linked by GNU ld or, unless RUSTFLAGS chose GNU ld
//! (`-C linker-features=-lld`), by the toolchain's rust-lld as Rust programs
//! are; runs them and checks that every case they were meant to run
//! reported `ok`.  The header itself is checked against the Rust
//! definitions: every struct layout and constant, compiled by the C
//! compiler from values Rust prints, and every function against what the
//! libraries export.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::{env, fs};

const CAPI: &str = env!("CARGO_MANIFEST_DIR");

fn release() -> bool {
    !cfg!(debug_assertions)
}

/// Whether this run links with GNU ld rather than rust-lld.
fn gnu_ld() -> bool {
    env::var("RUSTFLAGS").is_ok_and(|flags| flags.contains("linker-features=-lld"))
}

/// The packed library of this run's profile and linker, and where its
/// test programs go.
struct Library {
    dir: PathBuf,
    bins: PathBuf,
}

fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let target = Path::new(CAPI).join("../target/capi-tests");
        let profile = if release() { "capi" } else { "dev" };
        let variant = target.join(format!(
            "{profile}-{}",
            if gnu_ld() { "gnu-ld" } else { "lld" }
        ));
        let dir = variant.join("lib");
        // Its own target directory: the `cargo test` running this holds
        // the lock of the workspace's.
        print!(
            "{}",
            run_ok(
                Command::new(env!("CARGO"))
                    .current_dir(CAPI)
                    .args(["run", "-q", "-p", "sud-capi-pack", "--target-dir"])
                    .arg(&target)
                    .args(["--", "--profile", profile, "--out"])
                    .arg(&dir)
            )
        );
        let bins = variant.join("bin");
        fs::create_dir_all(&bins).expect("create the test programs' directory");
        Library { dir, bins }
    })
}

/// A C or C++ compiler driver.
#[derive(Clone, Copy)]
struct Compiler {
    command: &'static str,
    cxx: bool,
}

const CC: Compiler = Compiler::c("cc");
const CXX: Compiler = Compiler::cxx("c++");
const CLANG: Compiler = Compiler::c("clang");
const CLANGXX: Compiler = Compiler::cxx("clang++");
const MUSL: Compiler = Compiler::c("musl-gcc");

impl Compiler {
    const fn c(command: &'static str) -> Compiler {
        Compiler {
            command,
            cxx: false,
        }
    }

    const fn cxx(command: &'static str) -> Compiler {
        Compiler { command, cxx: true }
    }

    fn is_clang(self) -> bool {
        self.command.starts_with("clang")
    }

    /// Whether this machine has it.
    fn present(self) -> bool {
        Command::new(self.command)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// The driver with the language standard and every warning an error.
    fn strict(self) -> Command {
        let mut command = Command::new(self.command);
        command
            .arg(if self.cxx { "-std=c++17" } else { "-std=c11" })
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg("-I")
            .arg(Path::new(CAPI).join("include"));
        command
    }

    /// Compiles and links `sources` into `name` in the run's directory of
    /// test programs.
    fn build(self, name: &str, sources: &[&str], flags: &[&str]) -> PathBuf {
        let library = library();
        let out = library.bins.join(name);
        let mut command = self.strict();
        command.args(["-O2", "-g"]);
        for source in sources {
            command.arg(Path::new(CAPI).join(source));
        }
        command.args(flags).arg("-o").arg(&out);
        // musl-gcc links with GNU ld always: with lld, even an empty static
        // musl program crashes at start (Debian's musl 1.2.3).
        if !gnu_ld() && self.command != MUSL.command {
            // rust-lld, through the toolchain's `ld.lld` wrapper.
            command
                .arg(format!("-B{}", gcc_ld().display()))
                .arg("-fuse-ld=lld");
        }
        run_ok(&mut command);
        out
    }

    /// Builds `source` against the static library.
    fn build_static(self, name: &str, source: &str, flags: &[&str]) -> PathBuf {
        let archive = library().dir.join("libsud_capi.a");
        let mut all = flags.to_vec();
        all.push(archive.to_str().expect("UTF-8 path"));
        self.build(name, &[source], &all)
    }
}

/// The directory of the toolchain's `ld.lld` wrapper around rust-lld.
fn gcc_ld() -> PathBuf {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot");
    let sysroot = String::from_utf8(sysroot.stdout).expect("UTF-8 sysroot");
    let host = Command::new("rustc")
        .args(["--print", "host-tuple"])
        .output()
        .expect("rustc --print host-tuple");
    let host = String::from_utf8(host.stdout).expect("UTF-8 host");
    Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin/gcc-ld")
}

/// Runs `command`, failing the test with its output unless it succeeds;
/// returns its stdout.
fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?} ended {}\n--- stdout\n{stdout}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a test program and checks that it exited 0 and that each of
/// `cases` reported `ok`.
fn run_cases(bin: &Path, cases: &[&str]) -> String {
    let stdout = run_ok(&mut Command::new(bin));
    print!("{stdout}");
    for case in cases {
        assert!(
            stdout.lines().any(|l| l == format!("ok {case}")),
            "{}: case {case} did not report ok",
            bin.display()
        );
    }
    assert!(!stdout.contains("FAIL"), "{}: a case failed", bin.display());
    stdout
}

/// Every compiler of a language that this machine has.
fn compilers(cxx: bool) -> Vec<Compiler> {
    let (system, clang) = if cxx { (CXX, CLANGXX) } else { (CC, CLANG) };
    let mut all = vec![system];
    if clang.present() {
        all.push(clang);
    } else {
        println!("no {}: built with {} only", clang.command, system.command);
    }
    all
}

const GLIBC_CASES: &[&str] = &[
    "support",
    "install_refuses_null",
    "emulate",
    "arguments",
    "reissue",
    "deny",
    "registers",
    "redirect",
    "entry",
    "host_syscalls",
    "region",
    "global_selector",
    "inclusive",
    "set_syscall_user_dispatch",
    "resume_allowed",
    "host_handler",
    "adopt",
    "guest_action",
    "thread_handle",
    "strerror_names_codes",
    "reinstall",
];

#[test]
fn glibc_pie() {
    for cc in compilers(false) {
        let bin = cc.build_static(&format!("glibc-pie-{}", cc.command), "tests/glibc.c", &[]);
        run_cases(&bin, GLIBC_CASES);
    }
}

#[test]
fn glibc_static() {
    let bin = CC.build_static("glibc-static", "tests/glibc.c", &["-static"]);
    assert!(
        !run_ok(Command::new("readelf").arg("-d").arg(&bin)).contains("NEEDED"),
        "not static"
    );
    run_cases(&bin, GLIBC_CASES);
}

#[test]
fn musl_pie_and_static() {
    if !MUSL.present() {
        println!("no musl-gcc: the musl builds are skipped");
        return;
    }
    for (name, flags) in [("musl-pie", &[][..]), ("musl-static", &["-static"][..])] {
        let bin = MUSL.build_static(name, "tests/glibc.c", flags);
        run_cases(&bin, GLIBC_CASES);
    }
}

#[test]
fn glibc_shared_library() {
    let dir = library().dir.to_str().expect("UTF-8 path").to_string();
    let bin = CC.build(
        "glibc-shared",
        &["tests/glibc.c"],
        &[
            "-DSUD_TEST_SHARED",
            "-L",
            &dir,
            "-lsud_capi",
            &format!("-Wl,-rpath,{dir}"),
        ],
    );
    let dynamic = run_ok(Command::new("readelf").arg("-d").arg(&bin));
    assert!(dynamic.contains("libsud_capi.so"), "not linked to the .so");
    run_cases(&bin, GLIBC_CASES);
}

#[test]
fn cpp_callback_with_user_pointer() {
    for cxx in compilers(true) {
        let bin = cxx.build_static(&format!("cpp-{}", cxx.command), "tests/cpp.cpp", &[]);
        run_cases(&bin, &["member_callback_with_user_pointer"]);
    }
}

#[test]
fn pthreads_each_with_a_sud_thread() {
    let bin = CC.build_static("threads", "tests/threads.c", &["-pthread"]);
    run_cases(&bin, &["threads_each_with_a_sud_thread"]);
}

#[test]
fn guest_threads_on_pthreads_through_the_spawn_hook() {
    // The guest child runs on a thread pointer of its own: no canary there.
    let flags = ["-pthread", "-fno-stack-protector"];
    let bin = CC.build_static("spawn", "tests/spawn.c", &flags);
    run_cases(
        &bin,
        &[
            "guest_thread_runs_on_a_host_thread",
            "refused_and_freed_guest_threads_fail_their_clone",
        ],
    );
}

#[test]
fn trap_sites_rewritten_from_c() {
    let bin = CC.build_static("rewrite", "tests/rewrite.c", &[]);
    run_cases(&bin, &["sites_rewritten_listed_and_forgotten"]);
}

/// The flags of a freestanding program: no libc, no C runtime, static, not
/// position independent (a static PIE would need a C runtime's relocation).
fn freestanding_flags(cc: Compiler) -> Vec<&'static str> {
    let mut flags = vec![
        "-ffreestanding",
        "-fno-stack-protector",
        "-nostdlib",
        "-static",
        "-nostartfiles",
        "-Wl,--gc-sections",
    ];
    if !cc.is_clang() {
        // clang's -static is never PIE, and it warns about the flag.
        flags.push("-no-pie");
    }
    flags
}

fn build_freestanding(cc: Compiler) -> PathBuf {
    let bin = cc.build_static(
        &format!("freestanding-{}", cc.command),
        "tests/freestanding.c",
        &freestanding_flags(cc),
    );
    let headers = run_ok(Command::new("readelf").args(["-l", "-d"]).arg(&bin));
    assert!(
        !headers.contains("INTERP") && headers.contains("There is no dynamic section"),
        "{} is not a static program:\n{headers}",
        bin.display()
    );
    bin
}

#[test]
fn freestanding_arms_and_traps() {
    for cc in compilers(false) {
        let bin = build_freestanding(cc);
        let stdout = run_cases(
            &bin,
            &[
                "install_and_arm",
                "jit_page",
                "disarm",
                "emulate",
                "reissue",
                "jit_code_trapped",
                "deny",
                "callback_calls",
                "thread_arm",
                "thread_jit_code_trapped",
            ],
        );
        assert!(stdout.contains("freestanding: a reissued write\n"));
    }
}

#[test]
fn jit_example() {
    for cc in compilers(false) {
        let bin = cc.build_static(&format!("jit-{}", cc.command), "examples/jit.c", &[]);
        let stdout = run_ok(&mut Command::new(&bin));
        print!("{stdout}");
        for line in [
            "  guest: hello from guest code (a reissued write)",
            "emulated -> 4242",
            "reissued -> 50",
            "denied -> Permission denied (errno 13)",
            "denied -> Function not implemented (errno 38)",
            "cost per guest syscall: emulate ",
        ] {
            assert!(stdout.contains(line), "jit.c did not print {line:?}");
        }
    }
}

/// Sizes of the shipped build: the packed static library, and a stripped
/// freestanding C program on it.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "sizes are measured on the shipped (release) build: cargo test --release"
)]
fn sizes() {
    let archive = fs::metadata(library().dir.join("libsud_capi.a"))
        .expect("the packed library")
        .len();
    let program = build_freestanding(CC);
    let stripped = program.with_extension("stripped");
    run_ok(Command::new("strip").arg("-o").arg(&stripped).arg(&program));
    let stripped = fs::metadata(&stripped).expect("stripped program").len();
    println!("libsud_capi.a: {archive} bytes; stripped freestanding C program: {stripped} bytes");
    assert!(archive <= 512 * 1024, "libsud_capi.a is {archive} bytes");
    assert!(
        stripped <= 64 * 1024,
        "the freestanding program is {stripped} bytes"
    );
}

// ----------------------------------------------------------- the header --

/// sud.h without its comments.
fn header() -> String {
    let text = fs::read_to_string(Path::new(CAPI).join("include/sud.h")).expect("read sud.h");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        out += &rest[..start];
        let end = rest[start..].find("*/").expect("closed comment");
        rest = &rest[start + end + 2..];
    }
    out + rest
}

#[test]
fn header_is_clean_c11_and_cxx17() {
    let dir = library().bins.join("header");
    fs::create_dir_all(&dir).expect("create a directory");
    let system = "#include <errno.h>\n#include <signal.h>\n#include <stdint.h>\n\
                  #include <sys/syscall.h>\n#include <ucontext.h>\n#include <unistd.h>\n";
    for (order, text) in [
        ("first", format!("#include \"sud.h\"\n{system}")),
        ("last", format!("{system}#include \"sud.h\"\n")),
    ] {
        for cc in compilers(false).into_iter().chain(compilers(true)) {
            let source = dir.join(format!("{order}.{}", if cc.cxx { "cpp" } else { "c" }));
            fs::write(&source, format!("{text}int main(void) {{ return 0; }}\n"))
                .expect("write the source");
            let mut command = cc.strict();
            command.args([
                "-Wshadow",
                "-Wcast-qual",
                "-Wconversion",
                "-Wsign-conversion",
            ]);
            if !cc.cxx {
                command.args(["-Wstrict-prototypes", "-Wmissing-prototypes"]);
            } else if cc.is_clang() {
                command.arg("-Wold-style-cast");
            } else {
                command.args(["-Wold-style-cast", "-Wuseless-cast"]);
            }
            run_ok(
                command
                    .arg("-c")
                    .arg(&source)
                    .arg("-o")
                    .arg(dir.join("out.o")),
            );
        }
    }
}

/// `sizeof` a field, for the layout check.
fn field_size<T, F>(_: impl Fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Writes C assertions that `struct $c` has the size, alignment, field
/// offsets and field sizes of the Rust type `$rust`.
macro_rules! same_layout {
    ($out:expr, $c:literal, $rust:ty, { $($cf:ident: $rf:ident),* $(,)? }) => {{
        writeln!($out, "SAME(sizeof(struct {}), {});", $c, size_of::<$rust>()).unwrap();
        writeln!($out, "SAME(_Alignof(struct {}), {});", $c, align_of::<$rust>()).unwrap();
        $(
            writeln!(
                $out,
                "SAME(offsetof(struct {}, {}), {});",
                $c, stringify!($cf), core::mem::offset_of!($rust, $rf)
            ).unwrap();
            writeln!(
                $out,
                "SAME(sizeof(((struct {} *)0)->{}), {});",
                $c, stringify!($cf), field_size(|s: &$rust| &s.$rf)
            ).unwrap();
        )*
    }};
}

/// Every constant of sud.h with its value on the Rust side, where it has
/// the same name.
fn constants() -> Vec<(&'static str, i64)> {
    macro_rules! named {
        ($($name:ident),* $(,)?) => {
            vec![$((stringify!($name), sud_capi_abi::$name.into())),*]
        };
    }
    named![
        SUD_ERR_NO_SYSCALL_USER_DISPATCH,
        SUD_ERR_NO_INCLUSIVE_MODE,
        SUD_ERR_UNKNOWN,
        SUD_ERR_NOT_INSTALLED,
        SUD_ERR_ALREADY_MANAGED,
        SUD_ERR_OUT_OF_MEMORY,
        SUD_ERR_NO_FSGSBASE,
        SUD_SITE_MOV,
        SUD_SITE_ISLAND,
        SUD_SUPPORT_EXCLUSIVE,
        SUD_SUPPORT_INCLUSIVE,
        SUD_SELECTOR_ALLOW,
        SUD_SELECTOR_BLOCK,
        SUD_DISPATCH_OFF,
        SUD_DISPATCH_EXCLUSIVE_ON,
        SUD_DISPATCH_INCLUSIVE_ON,
        SUD_ACTION_EMULATE,
        SUD_ACTION_REISSUE,
        SUD_ACTION_DENY,
        SUD_ACTION_REDIRECT,
    ]
}

/// The names sud.h gives constants: object-like `#define SUD_*` and enum
/// members.
fn header_constants() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in header().lines() {
        let line = line.trim();
        let name = if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name.contains('(') || name == "SUD_H" {
                continue;
            }
            name
        } else if line.starts_with("SUD_") && line.contains('=') {
            line.split('=').next().unwrap_or("").trim()
        } else {
            continue;
        };
        names.insert(name.to_string());
    }
    names
}

#[test]
fn header_matches_the_rust_definitions() {
    use linux_raw_sys::general::stack_t;
    use sud::{Registers, SigContext, SigInfo, UContext};
    use sud_capi_abi::{SudRange, SudSigaction, SudSite, SudSymbols};

    let mut c = String::from(
        "#include \"sud.h\"\n#include <stddef.h>\n\
         #define SAME(c, rust) _Static_assert((c) == (rust), #c \" is \" #rust \" in Rust\")\n",
    );
    same_layout!(c, "sud_registers", Registers, {
        r8: r8, r9: r9, r10: r10, r11: r11, r12: r12, r13: r13, r14: r14, r15: r15,
        rdi: rdi, rsi: rsi, rbp: rbp, rbx: rbx, rdx: rdx, rax: rax, rcx: rcx, rsp: rsp,
        rip: rip, rflags: rflags,
    });
    same_layout!(c, "sud_sigcontext", SigContext, {
        regs: regs, cs: cs, gs: gs, fs: fs, ss: ss, err: err, trapno: trapno,
        oldmask: oldmask, cr2: cr2, fpstate: fpstate, reserved1: reserved1,
    });
    same_layout!(c, "sud_stack", stack_t, { ss_sp: ss_sp, ss_flags: ss_flags, ss_size: ss_size });
    same_layout!(c, "sud_ucontext", UContext, {
        uc_flags: uc_flags, uc_link: uc_link, uc_stack: uc_stack, uc_mcontext: uc_mcontext,
        uc_sigmask: uc_sigmask,
    });
    same_layout!(c, "sud_siginfo", SigInfo, {
        si_signo: si_signo, si_errno: si_errno, si_code: si_code,
        call_addr: si_call_addr, syscall: si_syscall, arch: si_arch,
    });
    same_layout!(c, "sud_sigaction", SudSigaction, { handler: handler, flags: flags, mask: mask });
    same_layout!(c, "sud_range", SudRange, { start: start, end: end });
    same_layout!(c, "sud_site", SudSite, {
        syscall: syscall, thunk: thunk, island: island, form: form, number: number
    });
    same_layout!(c, "sud_symbols", SudSymbols, {
        syscall_c: syscall_c, syscall: syscall, reissue: reissue,
        reissue_sigreturn: reissue_sigreturn, restorer: restorer, entry: entry, fork: fork,
    });
    let constants = constants();
    for (name, value) in &constants {
        writeln!(c, "SAME({name}, {value});").unwrap();
    }
    // A kernel signal set holds signal s at bit s - 1.
    writeln!(c, "SAME(SUD_SIGBIT(31), {}ULL);", 1u64 << 30).unwrap();

    let listed: BTreeSet<String> = constants.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        header_constants(),
        listed,
        "sud.h's constants and this test's list differ"
    );

    let dir = library().bins.join("layout");
    fs::create_dir_all(&dir).expect("create a directory");
    let source = dir.join("layout.c");
    fs::write(&source, c).expect("write layout.c");
    run_ok(
        CC.strict()
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(dir.join("layout.o")),
    );
}

/// The functions sud.h declares (not its inline ones) and its variables.
fn header_symbols() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in header().lines() {
        // Declarations start at the left margin; inline definitions with
        // `static`, and typedefs name pointer types, not symbols.
        if line.starts_with([' ', '#', '}'])
            || line.starts_with("static")
            || line.starts_with("typedef")
        {
            continue;
        }
        for (at, _) in line.match_indices("sud_") {
            if line[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = line[at + name.len()..].trim_start();
            if after.starts_with('(') || (line.starts_with("extern") && after.starts_with(';')) {
                names.insert(name);
            }
        }
    }
    names
}

/// The `sud_*` symbols `nm` lists for `file` with `flags`.
fn exported(file: &Path, flags: &[&str]) -> BTreeSet<String> {
    run_ok(Command::new("nm").args(flags).arg(file))
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|name| name.starts_with("sud_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn header_declares_what_the_libraries_export() {
    // Assembly entry points: the static library has them, the shared
    // library's version script (rustc's) exports only Rust's symbols.
    let static_only: BTreeSet<String> = (0..=6)
        .map(|n| format!("sud_syscall{n}"))
        .chain(["sud_entry".to_string()])
        .collect();
    let declared = header_symbols();
    assert!(declared.contains("sud_install") && declared.contains("sud_selector"));
    let archive = exported(
        &library().dir.join("libsud_capi.a"),
        &["--defined-only", "-g"],
    );
    let missing: Vec<_> = declared.difference(&archive).collect();
    assert!(missing.is_empty(), "libsud_capi.a lacks {missing:?}");
    let shared = exported(
        &library().dir.join("libsud_capi.so"),
        &["-D", "--defined-only"],
    );
    let in_shared: BTreeSet<String> = declared.difference(&static_only).cloned().collect();
    assert_eq!(
        shared, in_shared,
        "libsud_capi.so exports other sud_* symbols than sud.h declares"
    );
}
