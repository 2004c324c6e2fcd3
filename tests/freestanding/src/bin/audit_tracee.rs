//! Run under a ptrace tracer by ../../freestanding.rs
//! (`runtime_syscalls_while_blocked_lie_in_region`): exercises every path of
//! the runtime while the selector says BLOCK (emulate, reissue, deny, a guest
//! signal handler whose restorer lies outside the region, a foreign SIGSYS
//! forwarded to a previous handler) so that the tracer can check, from
//! outside, where each syscall came from.  With SUD_AUDIT_ADDRESSES in its environment
//! it only prints the addresses the tracer needs (the binary is static and
//! not position independent, so they are the same in every run).

#![no_std]
#![no_main]
#![allow(non_upper_case_globals)]

use core::sync::atomic::{AtomicUsize, Ordering};
use linux_raw_sys::general::{
    __NR_exit_group, __NR_fork, __NR_getpid, __NR_getppid, __NR_gettid, __NR_getuid,
    __NR_rt_sigaction, __NR_tgkill, __NR_wait4, SA_RESTORER, SA_SIGINFO, SIGSYS, SIGUSR1,
};
use sud::{Action, Errno, SELECTOR, Syscall, guest, host};
use sud_freestanding::{check_eq, say};

const MISSING: u32 = 500;

static GUEST_SIGNALS: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS_SIGSYS: AtomicUsize = AtomicUsize::new(0);

core::arch::global_asm!(
    "
    .text
    .globl audit_guest_start
audit_guest_start:                      # the guest code: every trapped syscall must come from here

    .globl audit_guest_restorer
    .type audit_guest_restorer, @function
audit_guest_restorer:                   # a guest handler's restorer, outside the allowed region
    mov rax, {NR_RT_SIGRETURN}
    syscall                             # trapped: sud must run it from the region instead
    ud2
    .size audit_guest_restorer, . - audit_guest_restorer

    .globl audit_guest_syscall
    .type audit_guest_syscall, @function
audit_guest_syscall:                    # extern C fn(nr, a1, a2, a3) -> raw result
    mov rax, rdi
    mov rdi, rsi
    mov rsi, rdx
    mov rdx, rcx
    xor r10d, r10d                      # argument 4: none (wait4's rusage)
    syscall                             # the guest's syscall
    ret
    .size audit_guest_syscall, . - audit_guest_syscall

    .globl audit_guest_end
audit_guest_end:
    ",
    NR_RT_SIGRETURN = const linux_raw_sys::general::__NR_rt_sigreturn,
);

unsafe extern "C" {
    static audit_guest_start: u8;
    static audit_guest_end: u8;
    fn audit_guest_restorer();
    fn audit_guest_syscall(nr: usize, a1: usize, a2: usize, a3: usize) -> usize;
}

fn guest_call(nr: u32, a1: usize, a2: usize, a3: usize) -> Result<usize, Errno> {
    // SAFETY: the syscalls below are harmless and answered by the handler.
    Errno::result(unsafe { audit_guest_syscall(nr as usize, a1, a2, a3) })
}

fn handler(call: &mut Syscall) -> Action {
    // The callback may make its own syscalls: they run under ALLOW.
    // SAFETY: gettid has no effect.
    let _ = unsafe { guest::syscall0(__NR_gettid) };
    match call.number() {
        __NR_getppid => Action::Emulate(4242),
        __NR_getpid | __NR_tgkill | __NR_fork | __NR_wait4 | __NR_exit_group => Action::Reissue,
        __NR_getuid => Action::Redirect,
        _ => Action::Deny(Errno::ENOSYS),
    }
}

/// The redirect function: ordinary code, under ALLOW; its own syscall runs
/// natively.
fn redirected(_: &mut Syscall) -> usize {
    // SAFETY: gettid has no effect.
    unsafe { guest::syscall0(__NR_gettid) }.map_or(0, |_| 777)
}

/// `call sud_entry` with the syscall's registers and R11 = 0 (the global
/// selector), from outside the allowed region.
fn entry_call(nr: u32) -> Result<usize, Errno> {
    let result: usize;
    // SAFETY: sud_entry clobbers RCX and R11 only, and writes below RSP
    // (no `nostack`: the compiler keeps the red zone free).
    unsafe {
        core::arch::asm!("call {entry}", entry = in(reg) sud::region_symbols().entry,
            inlateout("rax") nr as usize => result, inlateout("r11") 0usize => _, lateout("rcx") _);
    }
    Errno::result(result)
}

extern "C" fn guest_signal_handler(_: i32) {
    GUEST_SIGNALS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn previous_sigsys_handler(_: i32, _: *mut u8, _: *mut u8) {
    PREVIOUS_SIGSYS.fetch_add(1, Ordering::SeqCst);
}

/// rt_sigaction with the kernel's struct, through the allowed region.
fn sigaction(signal: u32, handler: usize, flags: u32, restorer: usize) {
    let action = [handler, (flags | SA_RESTORER) as usize, restorer, 0];
    // SAFETY: a valid kernel_sigaction.
    unsafe {
        host::syscall4(
            __NR_rt_sigaction,
            signal as usize,
            action.as_ptr() as usize,
            0,
            8,
        )
        .unwrap();
    }
}

#[unsafe(no_mangle)]
fn test_main() -> i32 {
    let region = sud::allowed_region();
    let symbols = sud::region_symbols();
    say!(
        "selector {:#x} region {:#x} {:#x} guest {:#x} {:#x} restorer {:#x} reissue {:#x} reissue_sigreturn {:#x} fork {:#x}",
        SELECTOR.as_ptr() as usize,
        region.start,
        region.end,
        (&raw const audit_guest_start) as usize,
        (&raw const audit_guest_end) as usize,
        symbols.restorer,
        symbols.reissue,
        symbols.reissue_sigreturn,
        symbols.fork,
    );
    // The tracer first runs us with SUD_AUDIT_ADDRESSES set, for these only.
    if addresses_only() {
        return 0;
    }

    // A previous SIGSYS handler, for the foreign SIGSYS below.
    sigaction(
        SIGSYS,
        previous_sigsys_handler as *const () as usize,
        SA_SIGINFO,
        symbols.restorer,
    );
    sud::install(handler).unwrap();
    sud::install_redirect(redirected).unwrap();
    // A guest signal handler whose restorer lies outside the region.
    sigaction(
        SIGUSR1,
        guest_signal_handler as *const () as usize,
        0,
        audit_guest_restorer as *const () as usize,
    );
    sud::arm().unwrap();
    // SAFETY: only the guest calls below run until allow().
    unsafe { SELECTOR.block() };
    let pid = guest_call(__NR_getpid, 0, 0, 0);
    let results = [
        guest_call(__NR_getppid, 0, 0, 0),
        guest_call(MISSING, 0, 0, 0),
        // Reissued tgkill: SIGUSR1 arrives as the stub returns, its handler
        // runs under BLOCK, and its restorer's rt_sigreturn is trapped.
        guest_call(__NR_tgkill, pid.unwrap_or(0), tid(), SIGUSR1 as usize),
        // A SIGSYS that is not dispatch: forwarded to the previous handler.
        guest_call(__NR_tgkill, pid.unwrap_or(0), tid(), SIGSYS as usize),
        // Redirected: the redirect stubs, then ordinary code under ALLOW.
        guest_call(__NR_getuid, 0, 0, 0),
        // Reissued through sud_entry: no signal, then sud_reissue.
        entry_call(__NR_getpid),
    ];
    // A fork through the task stub: the child exits at once, the parent
    // waits for it, both through the guest.
    let child = guest_call(__NR_fork, 0, 0, 0);
    if child == Ok(0) {
        let _ = guest_call(__NR_exit_group, 0, 0, 0);
    }
    let mut status = -1i32;
    let waited = guest_call(
        __NR_wait4,
        child.unwrap_or(0),
        &mut status as *mut i32 as usize,
        0,
    );
    SELECTOR.allow();
    sud::disarm().unwrap();
    check_eq!(
        results,
        [Ok(4242), Err(Errno::ENOSYS), Ok(0), Ok(0), Ok(777), pid]
    );
    check_eq!(waited, child);
    check_eq!(status, 0);
    check_eq!(pid.is_ok(), true);
    check_eq!(GUEST_SIGNALS.load(Ordering::SeqCst), 1);
    check_eq!(PREVIOUS_SIGSYS.load(Ordering::SeqCst), 1);
    say!("audit workload done");
    0
}

fn tid() -> usize {
    // SAFETY: gettid has no effect.
    unsafe { host::syscall0(__NR_gettid) }.unwrap()
}

/// Whether SUD_AUDIT_ADDRESSES is set in the environment: read from
/// /proc/self/environ, since _start keeps the initial stack to itself.
fn addresses_only() -> bool {
    let mut buf = [0u8; 8192];
    let len = read_proc_environ(&mut buf);
    buf[..len]
        .split(|&b| b == 0)
        .any(|var| var.starts_with(b"SUD_AUDIT_ADDRESSES="))
}

fn read_proc_environ(buf: &mut [u8]) -> usize {
    use linux_raw_sys::general::{__NR_close, __NR_openat, __NR_read, AT_FDCWD, O_RDONLY};
    let path = b"/proc/self/environ\0";
    // SAFETY: a NUL-terminated path; reads into a live buffer.
    unsafe {
        let fd = host::syscall4(
            __NR_openat,
            AT_FDCWD as usize,
            path.as_ptr() as usize,
            O_RDONLY as usize,
            0,
        )
        .unwrap();
        let mut len = 0;
        while let Ok(n) = host::syscall3(
            __NR_read,
            fd,
            buf.as_mut_ptr().add(len) as usize,
            buf.len() - len,
        ) {
            if n == 0 {
                break;
            }
            len += n;
        }
        let _ = host::syscall1(__NR_close, fd);
        len
    }
}
