//! Runs a static (or static-pie) x86-64 Linux executable as sud's guest,
//! inside this process, as the kernel would have started it:
//!
//!     cargo run --release --example run -- [--trace] [--global] [--rewrite] <executable> [args...]
//!
//! The loader maps the executable's PT_LOAD segments (at their addresses
//! for ET_EXEC, at a base of its choosing for a static-pie; anything with
//! PT_INTERP is refused), builds the initial stack and auxiliary vector as
//! `execve` does, arms this thread with a `sud::Thread` of its own and
//! jumps to the entry point with the selector at BLOCK.  From the first
//! guest instruction on, every guest syscall reaches the callback in
//! `policy.rs`: nearly all run natively, a few (the program break,
//! `/proc/self/exe`) are answered for the guest.  The guest never comes
//! back: its `exit_group` ends the process with its status.
//!
//! `--rewrite` rewrites the guest image's trap sites at their first trap
//! (`sud::rewrite_sites`: a `mov eax, n` before the `syscall` becomes a
//! `jmp` to a thunk, or the `syscall` a `jmp` to nearby padding); `SUD_RUN_COUNTS=1` prints, at
//! exit_group, how many calls trapped and how many came through such sites.
//! `--global` arms the first guest thread with the global selector
//! (`sud::arm`) rather than a `sud::Thread`; threads the guest creates run
//! on host threads of their own either way (`sud::set_spawn_hook`), unless
//! `--no-hook`: then they are the guest's own clones, as it made them.
//! `--trace` prints each guest syscall strace-style on standard error
//! (`trace.rs`).  Bad input — a missing file, not an ELF executable, a
//! dynamically linked one, segments where the host already has memory —
//! gives one line on standard error and exit status 2.
//!
//! - `elf.rs`: checking and mapping the executable;
//! - `stack.rs`: the initial stack and auxiliary vector;
//! - `policy.rs`: the callback; `trace.rs`: `--trace`; `names.rs`: syscall
//!   and errno names; `memory.rs`: mappings and guest memory.

#![allow(non_upper_case_globals)]

mod elf;
mod memory;
mod names;
mod policy;
mod stack;
mod trace;

use linux_raw_sys::prctl::SYSCALL_DISPATCH_FILTER_BLOCK;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::exit;

/// Why the guest could not be started.
enum Failure {
    /// The executable (exit status 2).
    Input(String),
    /// This machine or process (exit status 1).
    Host(String),
}

fn main() {
    let mut args = std::env::args_os().skip(1).peekable();
    let (mut trace, mut global, mut rewrite, mut hook) = (false, false, false, true);
    let options = ["--trace", "--global", "--rewrite", "--no-hook"].map(OsString::from);
    while let Some(option) = args.next_if(|a| options.contains(a)) {
        trace |= option == "--trace";
        global |= option == "--global";
        rewrite |= option == "--rewrite";
        hook &= option != "--no-hook";
    }
    args.next_if(|a| a == "--");
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!(
            "usage: run [--trace] [--global] [--rewrite] [--no-hook] \
             <static-or-static-pie-executable> [args...]"
        );
        exit(2);
    };
    let options = Options {
        trace,
        global,
        rewrite,
        hook,
    };
    let Err(failure) = start(options, path.clone(), args.collect());
    match failure {
        Failure::Input(why) => {
            eprintln!("run: {}: {why}", path.display());
            exit(2)
        }
        Failure::Host(why) => {
            eprintln!("run: {why}");
            exit(1)
        }
    }
}

/// Loads the guest and jumps into it; returns only if that fails.
/// The command line's options.
struct Options {
    trace: bool,
    global: bool,
    rewrite: bool,
    hook: bool,
}

fn start(
    options: Options,
    path: PathBuf,
    args: Vec<OsString>,
) -> Result<std::convert::Infallible, Failure> {
    let Options {
        trace,
        global,
        rewrite,
        hook,
    } = options;
    let host = |what: &'static str| move |e: sud::Error| Failure::Host(format!("{what}: {e}"));
    if !sud::support().exclusive {
        return Err(Failure::Host(
            "this kernel has no Syscall User Dispatch (Linux 5.11 or later)".into(),
        ));
    }
    let executable = elf::Executable::open(&path).map_err(Failure::Input)?;
    // What /proc/self/exe names, whatever directory the guest moves to.
    let absolute = std::fs::canonicalize(&path)
        .map_err(|e| Failure::Input(format!("cannot resolve: {}", elf::os_error(&e))))?;
    let absolute: &'static std::ffi::CStr =
        Box::leak(c_string(absolute.into_os_string()).into_boxed_c_str());
    let image = executable.load().map_err(Failure::Input)?;

    let argv: Vec<CString> = std::iter::once(path.clone().into_os_string())
        .chain(args)
        .map(c_string)
        .collect();
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(key, value)| c_string([key, value].join(std::ffi::OsStr::new("="))))
        .collect();
    // What execve names the process (ps, /proc/self/comm): the file's base
    // name, which the kernel cuts to 15 bytes as prctl does.
    if let Some(name) = path.file_name() {
        let name = c_string(name.to_owned());
        // SAFETY: PR_SET_NAME reads a NUL-terminated string.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
    let execfn = c_string(path.into_os_string());
    let start = stack::Start {
        argv: &argv,
        envp: &envp,
        execfn: &execfn,
    };
    let stack = stack::build(&start, &image).map_err(Failure::Input)?;
    policy::setup(absolute, image.break_area.clone());

    if trace {
        trace::start(trace_descriptor()?, std::process::id() as usize);
        sud::install_redirect(trace::carry_out).map_err(host("cannot install the tracer"))?;
    }
    // std ignores SIGPIPE; a native program starts with it at its default
    // (and would hand that on to what it execs).  std's fault handlers stay:
    // sud routes a fault in guest code to the guest's handler or the
    // default action, and one in host code to them.
    // SAFETY: resets a disposition; no handler of ours is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    sud::install(policy::on_syscall).map_err(host("cannot install the SIGSYS handler"))?;
    // Threads the guest creates run on host threads of their own, with
    // their own thread data for the callback.
    if hook {
        sud::set_spawn_hook(Some(spawn_guest_thread));
    }
    if rewrite {
        // The image's hot trap sites, rewritten at their
        // first trap: from its first page to its program break.
        let image_code = image.program_headers & !0xfff..image.break_area.start;
        sud::rewrite_sites(image_code, sud::Policy::FirstTrap)
            .map_err(host("cannot rewrite the guest's trap sites"))?;
    }
    let selector = if global {
        // The global selector, `sud_selector`, for the first thread.
        sud::arm().map_err(host("cannot arm Syscall User Dispatch"))?;
        sud::SELECTOR.as_ptr()
    } else {
        let thread = sud::Thread::new().map_err(host("cannot set up the guest thread"))?;
        thread
            .arm()
            .map_err(host("cannot arm Syscall User Dispatch"))?;
        let selector = thread.selector().as_ptr();
        // The guest's thread keeps its state until the process ends.
        std::mem::forget(thread);
        selector
    };
    drop((argv, envp, execfn));
    // SAFETY: the image is mapped and the stack built as the kernel would
    // for this executable; the thread is armed, with the callback installed.
    unsafe { enter_guest(image.entry, stack, selector) }
}

/// The spawn hook: a host thread for each thread the guest creates, which
/// runs it until it exits and then ends as host code.
fn spawn_guest_thread(start: sud::GuestThread) -> Result<(), sud::Errno> {
    std::thread::Builder::new()
        .name("guest".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let thread = sud::Thread::new().expect("a state for the guest thread");
            if let Err(e) = thread.run_guest(start) {
                eprintln!("run: a guest thread could not start: {e}");
            }
        })
        .map(drop)
        .map_err(|_| sud::Errno::EAGAIN)
}

fn c_string(s: OsString) -> CString {
    CString::new(s.into_vec()).expect("the kernel's strings hold no NUL")
}

/// A close-on-exec copy of standard error, numbered high so that the
/// guest's own descriptors (shells keep theirs from 10 up) never meet it.
fn trace_descriptor() -> Result<i32, Failure> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills `limit`; fcntl duplicates a descriptor.
    let fd = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let lowest = (limit.rlim_cur.saturating_sub(1)).min(1000) as i32;
        libc::fcntl(2, libc::F_DUPFD_CLOEXEC, lowest)
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::Host(format!(
            "cannot duplicate standard error: {}",
            elf::os_error(&e)
        )));
    }
    Ok(fd)
}

/// Starts the guest as the kernel starts a new program: RSP at argc, every
/// other general register 0 (RDX = 0: no function for atexit), RFLAGS with
/// only IF; the selector goes to BLOCK first, so the guest's very first
/// instruction already runs trapped.
///
/// # Safety
/// `entry` is the entry point of an image mapped in this process, `stack`
/// its initial stack as `stack::build` made it, `selector` the selector of
/// this thread's arming; the host's stack is abandoned for good.
unsafe fn enter_guest(entry: usize, stack: usize, selector: *mut u8) -> ! {
    // SAFETY: per the contract; no host code runs after the selector says
    // BLOCK, and the return address pushed below RSP lies in the guest's
    // free stack.
    unsafe {
        std::arch::asm!(
            "mov rsp, {stack}",
            "mov byte ptr [{selector}], {block}",
            "push {entry}",
            "push 0x202",
            "popfq",
            "xor eax, eax",
            "xor ebx, ebx",
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor edi, edi",
            "xor ebp, ebp",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            "xor r12d, r12d",
            "xor r13d, r13d",
            "xor r14d, r14d",
            "xor r15d, r15d",
            "ret",
            stack = in(reg) stack,
            selector = in(reg) selector,
            entry = in(reg) entry,
            block = const SYSCALL_DISPATCH_FILTER_BLOCK,
            options(noreturn),
        )
    }
}
