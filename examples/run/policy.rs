//! What becomes of the guest's syscalls.  Nearly all run natively
//! (`Action::Reissue`, with the guest's own registers).  The exceptions are
//! what the kernel would have set up for a program of its own, and this
//! process's kernel set up for the host instead:
//! - `brk`: the guest's program break lives in the area reserved after its
//!   image (the real one belongs to the host's malloc), with the kernel's
//!   semantics;
//! - `readlink` / `readlinkat` of `/proc/self/exe` answer the guest's file;
//! - `execve` / `execveat` of `/proc/self/exe` run the guest's file (busybox
//!   re-executes itself that way).
//!
//! This runs in signal context, with the guest's thread pointer still loaded
//! on the threads the guest created: no allocation, no locks but its own,
//! no std; memory and the guest's buffers only through sud's never-trapped
//! syscalls.

use crate::memory::{self, page_up};
use crate::trace;
use linux_raw_sys::general::{
    __NR_brk, __NR_execve, __NR_execveat, __NR_readlink, __NR_readlinkat, PROT_READ, PROT_WRITE,
};
use std::ffi::CStr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use sud::{Action, Errno, Syscall};

/// The path the guest names itself by.
const SELF_EXE: &[u8] = b"/proc/self/exe\0";

/// The guest's file: an absolute path, NUL-terminated, that the guest's
/// execve can be pointed at (it lives in this process's memory, which is
/// the guest's).
static EXE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static EXE_LEN: AtomicUsize = AtomicUsize::new(0);

static BREAK: ProgramBreak = ProgramBreak {
    lock: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    current: AtomicUsize::new(0),
    limit: AtomicUsize::new(0),
};

/// Before the guest runs: its file (absolute) and its break's area.
pub fn setup(exe: &'static CStr, break_area: Range<usize>) {
    EXE.store(exe.as_ptr().cast_mut().cast(), Ordering::Relaxed);
    EXE_LEN.store(exe.to_bytes().len(), Ordering::Relaxed);
    BREAK.start.store(break_area.start, Ordering::Relaxed);
    BREAK.current.store(break_area.start, Ordering::Relaxed);
    BREAK.limit.store(break_area.end, Ordering::Release);
}

/// sud's callback: the policy above, then `--trace`'s view of it.
/// Calls that trapped (0) and that came through rewritten sites (1).
static COUNTS: [std::sync::atomic::AtomicUsize; 2] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 2];

pub fn on_syscall(call: &mut Syscall) -> Action {
    // Calls that trapped, and calls through rewritten sites (no siginfo).
    let through_sites = call.siginfo().is_none();
    COUNTS[through_sites as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if call.number() == linux_raw_sys::general::__NR_exit_group
        && std::env::var_os("SUD_RUN_COUNTS").is_some()
    {
        let [trapped, sites] = COUNTS
            .each_ref()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed));
        eprintln!("run: {trapped} trapped calls, {sites} through rewritten sites");
    }
    let action = decide(call);
    trace::traced(call, action)
}

fn decide(call: &mut Syscall) -> Action {
    let [a0, a1, a2, a3, ..] = call.args();
    match call.number() {
        __NR_brk => Action::Emulate(BREAK.set(a0)),
        __NR_readlink => readlink_exe(a0, a1, a2),
        __NR_readlinkat => readlink_exe(a1, a2, a3),
        __NR_execve if names_self(a0) => {
            call.regs_mut().rdi = EXE.load(Ordering::Relaxed) as u64;
            Action::Reissue
        }
        __NR_execveat if names_self(a1) => {
            call.regs_mut().rsi = EXE.load(Ordering::Relaxed) as u64;
            Action::Reissue
        }
        _ => Action::Reissue,
    }
}

/// Whether the guest's string at `path` is "/proc/self/exe".  A string the
/// kernel could not read is not: the reissued call fails as it would.
fn names_self(path: usize) -> bool {
    let mut name = [0u8; SELF_EXE.len()];
    memory::read_guest(path, &mut name).is_ok() && name == SELF_EXE
}

/// `readlink(path, buf, size)`: the guest's file for "/proc/self/exe",
/// truncated to `size` and without NUL as the kernel gives it.
fn readlink_exe(path: usize, buf: usize, size: usize) -> Action {
    if !names_self(path) {
        return Action::Reissue;
    }
    // The kernel takes the size as an int.
    let size = size as i32;
    if size <= 0 {
        return Action::Deny(Errno::EINVAL);
    }
    // SAFETY: EXE and EXE_LEN describe the leaked string `setup` was given.
    let exe = unsafe {
        std::slice::from_raw_parts(EXE.load(Ordering::Relaxed), EXE_LEN.load(Ordering::Relaxed))
    };
    let answer = &exe[..exe.len().min(size as usize)];
    match memory::write_guest(buf, answer) {
        Ok(()) => Action::Emulate(answer.len()),
        Err(e) => Action::Deny(e),
    }
}

/// The guest's program break: `[start, current)` is its heap, inside the
/// reserved `[start, limit)`; the pages past `current` are inaccessible.
struct ProgramBreak {
    lock: AtomicBool,
    start: AtomicUsize,
    current: AtomicUsize,
    limit: AtomicUsize,
}

impl ProgramBreak {
    /// `brk(request)` as mm/mmap.c answers it: the new break, or the
    /// current one unchanged when `request` is below the start (brk(0)
    /// included) or cannot be had.  Shrinking frees the pages, so that
    /// growing again gives zeroes.
    fn set(&self, request: usize) -> usize {
        while self.lock.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let current = self.current.load(Ordering::Relaxed);
        let old_end = page_up(current).unwrap_or(current);
        let result = match page_up(request) {
            _ if request < self.start.load(Ordering::Relaxed) => current,
            None => current,
            Some(new_end) if new_end == old_end => request,
            Some(new_end) if request < current => {
                let _ = memory::discard(new_end..old_end);
                request
            }
            Some(new_end) if new_end > self.limit.load(Ordering::Relaxed) => current,
            Some(new_end) => match memory::protect(old_end..new_end, PROT_READ | PROT_WRITE) {
                Ok(()) => request,
                Err(_) => current,
            },
        };
        self.current.store(result, Ordering::Relaxed);
        self.lock.store(false, Ordering::Release);
        result
    }
}
