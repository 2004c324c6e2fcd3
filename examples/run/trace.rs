//! `--trace`: every guest syscall, strace-style, on the host's standard
//! error: `[pid N] name(args in hex) = result`, `= -1 ENAME` on error.
//!
//! Most syscalls are traced by carrying them out ourselves: the callback
//! answers `Action::Redirect`, and [`carry_out`] makes the call with sud's
//! never-trapped `host::syscall6` in ordinary code (outside signal context,
//! interruptible and restartable as the guest's own call would be) and
//! prints its result.  Those sud must reissue itself — tasks, signal state,
//! exec and exit, the waits with a mask of their own, and the thread
//! pointer's `arch_prctl` — are printed before they run, with `= ?`.

use crate::memory::{self, PAGE};
use crate::names;
use linux_raw_sys::general::{
    __NR_arch_prctl, __NR_brk, __NR_clone, __NR_clone3, __NR_epoll_pwait, __NR_epoll_pwait2,
    __NR_execve, __NR_execveat, __NR_exit, __NR_exit_group, __NR_fork, __NR_getpid, __NR_gettid,
    __NR_io_pgetevents, __NR_io_uring_enter, __NR_mmap, __NR_mremap, __NR_ppoll, __NR_pselect6,
    __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_rt_sigreturn, __NR_rt_sigsuspend, __NR_shmat,
    __NR_sigaltstack, __NR_vfork, __NR_write, SIG_BLOCK, SIG_SETMASK,
};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use sud::{Action, Errno, Syscall, host};

/// Where trace lines go: a descriptor of the host's standard error that
/// the guest does not know about (so its redirections leave the trace
/// alone); -1 while not tracing.
static TRACE_FD: AtomicI32 = AtomicI32::new(-1);
/// Syscalls traced, by number.
static COUNTS: Mutex<Option<HashMap<u32, u64>>> = Mutex::new(None);
/// The guest's first process: lines from others carry their pid.
static FIRST_PID: AtomicUsize = AtomicUsize::new(0);

/// Starts tracing to `fd` (close-on-exec: exec'd programs do not inherit
/// it), for the guest process `pid`.
pub fn start(fd: i32, pid: usize) {
    FIRST_PID.store(pid, Ordering::Relaxed);
    TRACE_FD.store(fd, Ordering::Release);
}

fn enabled() -> bool {
    TRACE_FD.load(Ordering::Relaxed) >= 0
}

/// The callback's answer `action`, seen by the tracer: printed now when
/// its result is known (emulated, denied) or never will be (reissued by
/// sud), or turned into a redirect to [`carry_out`].
pub fn traced(call: &Syscall, action: Action) -> Action {
    if !enabled() {
        return action;
    }
    // How many of each syscall, kept as std code keeps things (a lock and
    // a map, on whichever guest thread traps: each has its own thread data).
    *COUNTS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(call.number())
        .or_default() += 1;
    let line = |result| (call.number(), call.args(), result);
    match action {
        Action::Reissue if reissued_by_sud(call.number()) => emit(line(None)),
        Action::Reissue => return Action::Redirect,
        Action::Emulate(value) => emit(line(Some(value))),
        Action::Deny(errno) => emit(line(Some(errno.to_syscall_result()))),
        _ => {}
    }
    action
}

/// The redirect function: the guest's syscall, made for it and printed.
pub fn carry_out(call: &mut Syscall) -> usize {
    let (nr, [a1, a2, a3, a4, a5, a6]) = (call.number(), call.args());
    // SAFETY: the guest's own syscall with its own arguments, as it would
    // have run; only those that must not run from here (reissued_by_sud)
    // never get here.
    let result = unsafe { host::syscall6(nr, a1, a2, a3, a4, a5, a6) };
    let result = result.unwrap_or_else(Errno::to_syscall_result);
    let _held = SignalsHeld::new();
    emit((nr, call.args(), Some(result)));
    result
}

/// Every signal held back while a redirect function prints: a guest
/// handler that landed in the middle of `format!` would trace its own
/// syscalls from its callback, inside the allocator's lock.  The callback
/// itself runs with every signal blocked already.
struct SignalsHeld(u64);

impl SignalsHeld {
    fn new() -> SignalsHeld {
        let (all, mut before) = (!0u64, 0u64);
        // SAFETY: rt_sigprocmask reads and writes the two masks we own.
        let _ = unsafe {
            host::syscall4(
                __NR_rt_sigprocmask,
                SIG_BLOCK as usize,
                &raw const all as usize,
                &raw mut before as usize,
                size_of::<u64>(),
            )
        };
        SignalsHeld(before)
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        // SAFETY: puts back the mask `new` found.
        let _ = unsafe {
            host::syscall4(
                __NR_rt_sigprocmask,
                SIG_SETMASK as usize,
                &raw const self.0 as usize,
                0,
                size_of::<u64>(),
            )
        };
    }
}

/// The syscalls sud itself must carry out when they are reissued, or that
/// change what makes the guest the guest (its thread pointer).
fn reissued_by_sud(nr: u32) -> bool {
    matches!(
        nr,
        __NR_clone
            | __NR_clone3
            | __NR_fork
            | __NR_vfork
            | __NR_execve
            | __NR_execveat
            | __NR_exit
            | __NR_exit_group
            | __NR_rt_sigreturn
            | __NR_rt_sigaction
            | __NR_rt_sigprocmask
            | __NR_sigaltstack
            | __NR_rt_sigsuspend
            | __NR_ppoll
            | __NR_pselect6
            | __NR_epoll_pwait
            | __NR_epoll_pwait2
            | __NR_io_pgetevents
            | __NR_io_uring_enter
            | __NR_arch_prctl
    )
}

/// One trace line: the call and, if known, its raw result.
struct Line {
    nr: u32,
    args: [usize; 6],
    result: Option<usize>,
    /// The calling thread, named unless it is the guest's first.
    tid: usize,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tid != FIRST_PID.load(Ordering::Relaxed) {
            write!(f, "[pid {}] ", self.tid)?;
        }
        match names::syscall(self.nr) {
            Some((name, _)) => f.write_str(name)?,
            None => write!(f, "syscall_{}", self.nr)?,
        }
        let count = names::syscall(self.nr).map_or(6, |(_, count)| count);
        let paths = names::path_arguments(self.nr);
        f.write_char('(')?;
        for (i, &arg) in self.args[..count].iter().enumerate() {
            f.write_str(if i > 0 { ", " } else { "" })?;
            match paths.contains(&i).then(|| GuestString::read(arg)).flatten() {
                Some(path) => write!(f, "{path}")?,
                None => write!(f, "{arg:#x}")?,
            }
        }
        f.write_str(") = ")?;
        match self.result.map(Errno::result) {
            None => f.write_str("?"),
            Some(Err(errno)) => write!(f, "-1 {errno}"),
            Some(Ok(value))
                if matches!(self.nr, __NR_mmap | __NR_mremap | __NR_brk | __NR_shmat) =>
            {
                write!(f, "{value:#x}")
            }
            Some(Ok(value)) => write!(f, "{value}"),
        }
    }
}

/// The start of a NUL-terminated string in guest memory, as strace shows
/// it: quoted, escaped, cut after [`GuestString::MAX`] bytes.
struct GuestString {
    bytes: [u8; GuestString::MAX],
    len: usize,
    cut: bool,
}

impl GuestString {
    const MAX: usize = 64;

    /// The string at `addr`, None where the guest could not pass it.
    /// Read a page at a time: the string may end right before a hole.
    fn read(addr: usize) -> Option<GuestString> {
        let mut s = GuestString {
            bytes: [0; Self::MAX],
            len: 0,
            cut: false,
        };
        while s.len < Self::MAX {
            let at = addr.checked_add(s.len)?;
            let chunk = (PAGE - at % PAGE).min(Self::MAX - s.len);
            memory::read_guest(at, &mut s.bytes[s.len..s.len + chunk]).ok()?;
            if let Some(end) = s.bytes[s.len..s.len + chunk].iter().position(|&b| b == 0) {
                s.len += end;
                return Some(s);
            }
            s.len += chunk;
        }
        s.cut = true;
        Some(s)
    }
}

impl fmt::Display for GuestString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for &b in &self.bytes[..self.len] {
            match b {
                b'"' | b'\\' => write!(f, "\\{}", b as char)?,
                b'\n' => f.write_str("\\n")?,
                0x20..0x7f => f.write_char(b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str(if self.cut { "\"..." } else { "\"" })
    }
}

/// Writes one line with one `write`, so that the lines of several guest
/// processes do not mix: formatted with std (`format!`, the host's
/// allocator and thread-locals, which sud's switch to the host's thread
/// pointer makes usable here) on the threads that have a host behind them.
/// A thread the guest created has none (its thread pointer stays the
/// guest's in host code): there the line is built on the stack.
fn emit((nr, args, result): (u32, [usize; 6], Option<usize>)) {
    // SAFETY: gettid and getpid have no arguments.
    let (tid, pid) = unsafe { (host::syscall0(__NR_gettid), host::syscall0(__NR_getpid)) };
    let line = Line {
        nr,
        args,
        result,
        tid: tid.unwrap_or(0),
    };
    if tid == pid {
        write_all(format!("{line}\n").as_bytes());
    } else {
        let mut buf = LineBuffer {
            bytes: [0; 512],
            len: 0,
        };
        let _ = writeln!(buf, "{line}");
        write_all(&buf.bytes[..buf.len]);
    }
}

fn write_all(mut bytes: &[u8]) {
    let fd = TRACE_FD.load(Ordering::Relaxed) as usize;
    while !bytes.is_empty() {
        // SAFETY: writes from our buffer to the trace descriptor.
        match unsafe { host::syscall3(__NR_write, fd, bytes.as_ptr() as usize, bytes.len()) } {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// A line being formatted; what does not fit is cut, and the newline kept.
struct LineBuffer {
    bytes: [u8; 512],
    len: usize,
}

impl fmt::Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - 1 - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if s.ends_with('\n') && take < s.len() {
            self.bytes[self.len] = b'\n';
            self.len += 1;
        }
        Ok(())
    }
}
