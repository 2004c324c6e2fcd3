//! A seccomp trap (SECCOMP_RET_TRAP) of a syscall that sud's callback
//! reissues, compared with the same trap natively: the SIGSYS handler (the
//! application's, installed before sud, or the guest's own, installed by a
//! trapped rt_sigaction) must see what it sees natively (si_call_addr, RIP,
//! RSP, every register, the signal mask), and what it writes into the frame
//! (RAX, RIP, other registers) must reach the guest as it does natively.
//! One case per reissue stub: `sud_reissue`, the masked-wait stubs (a mask
//! holding SIGSYS), and the task stubs (fork, vfork, clone with a stack).
//! Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::guest::{armed_thread, blocked};
use common::signals::{KernelSigaction, guest_rt_sigaction};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_clone, __NR_epoll_pwait, __NR_fork, __NR_getpid, __NR_io_uring_enter, __NR_ppoll,
    __NR_pselect6, __NR_rt_sigsuspend, __NR_vfork, CLONE_FILES, CLONE_FS, CLONE_SIGHAND,
    CLONE_SYSVSEM, CLONE_THREAD, CLONE_VM, SA_RESTORER, SA_SIGINFO, SIGSYS, SYS_SECCOMP,
};
use linux_raw_sys::io_uring::{IORING_ENTER_EXT_ARG, IORING_ENTER_GETEVENTS};
use std::mem::offset_of;
use std::sync::Mutex;
use sud::{Action, Registers};

/// The guest's call: registers in, registers out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Call {
    /// RAX, RDI, RSI, RDX, R10, R8, R9 for the syscall.
    input: [u64; 7],
    /// RSP at the `syscall`.
    rsp: u64,
    /// What the guest has after it: RAX, RBX, RCX, RDX, RSI, RDI, RBP,
    /// R8..R15, RSP, RFLAGS.
    output: [u64; 17],
}

/// The values the guest gives the registers the syscall does not take.
const RBX: u64 = 0x0b0b_0b0b_0b0b_0b0b;
const RBP: u64 = 0x0bb0_0bb0_0bb0_0bb0;
const R12: u64 = 0x1212_1212_1212_1212;
const R13: u64 = 0x1313_1313_1313_1313;
const R14: u64 = 0x1414_1414_1414_1414;
const R15: u64 = 0x1515_1515_1515_1515;
/// CF, PF, ZF and SF set, and IF (which user code cannot clear).
const RFLAGS: u64 = 0x2c5;

// seccomp_guest_call(call: *mut Call): the guest makes the syscall in
// `call` with every other register set, then records every register.  A
// SIGSYS handler that resumes it at seccomp_guest_landing skips the `mov`
// to R13 that follows the syscall.
core::arch::global_asm!(
    "
    .text
    .globl seccomp_guest_call
    .type seccomp_guest_call, @function
seccomp_guest_call:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov r11, rdi
    push {RFLAGS}
    popfq
    movabs rbx, {RBX}
    movabs rbp, {RBP}
    movabs r12, {R12}
    movabs r13, {R13}
    movabs r14, {R14}
    movabs r15, {R15}
    mov rax, [r11 + {IN}]
    mov rdi, [r11 + {IN} + 8]
    mov rsi, [r11 + {IN} + 16]
    mov rdx, [r11 + {IN} + 24]
    mov r10, [r11 + {IN} + 32]
    mov r8, [r11 + {IN} + 40]
    mov r9, [r11 + {IN} + 48]
    mov [r11 + {RSP}], rsp
    syscall
    .globl seccomp_guest_after_syscall
seccomp_guest_after_syscall:
    movabs r13, 0xdead
    .globl seccomp_guest_landing
seccomp_guest_landing:
    mov [rsp - 16], r11
    mov r11, [rsp]
    mov [r11 + {OUT}], rax
    mov [r11 + {OUT} + 8], rbx
    mov [r11 + {OUT} + 16], rcx
    mov [r11 + {OUT} + 24], rdx
    mov [r11 + {OUT} + 32], rsi
    mov [r11 + {OUT} + 40], rdi
    mov [r11 + {OUT} + 48], rbp
    mov [r11 + {OUT} + 56], r8
    mov [r11 + {OUT} + 64], r9
    mov [r11 + {OUT} + 72], r10
    mov rax, [rsp - 16]
    mov [r11 + {OUT} + 80], rax
    mov [r11 + {OUT} + 88], r12
    mov [r11 + {OUT} + 96], r13
    mov [r11 + {OUT} + 104], r14
    mov [r11 + {OUT} + 112], r15
    mov [r11 + {OUT} + 120], rsp
    pushfq
    pop qword ptr [r11 + {OUT} + 128]
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .size seccomp_guest_call, . - seccomp_guest_call
    ",
    RFLAGS = const RFLAGS,
    RBX = const RBX,
    RBP = const RBP,
    R12 = const R12,
    R13 = const R13,
    R14 = const R14,
    R15 = const R15,
    IN = const offset_of!(Call, input),
    RSP = const offset_of!(Call, rsp),
    OUT = const offset_of!(Call, output),
);

unsafe extern "C" {
    fn seccomp_guest_call(call: *mut Call);
    static seccomp_guest_after_syscall: u8;
    static seccomp_guest_landing: u8;
}

/// What the SIGSYS handler saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    code: i32,
    errno: i32,
    call_addr: u64,
    syscall: i32,
    arch: u32,
    regs: Registers,
    mask: u64,
}

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

/// What the handler answers: RAX, and changes to other registers.
const ANSWER: u64 = 0x777;

/// The SIGSYS handler, the application's or the guest's: records what it
/// sees, then emulates the call (RAX), changes three registers and moves
/// RIP past the instruction after the syscall.
extern "C" fn on_sigsys(_: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel's (or sud's) siginfo and ucontext for this SIGSYS.
    let (info, uc) = unsafe {
        (
            &*(info as *const sud::SigInfo),
            &mut *(uc as *mut sud::UContext),
        )
    };
    let regs = &mut uc.uc_mcontext.regs;
    SEEN.lock().unwrap().push(Seen {
        code: info.si_code,
        errno: info.si_errno,
        call_addr: info.si_call_addr,
        syscall: info.si_syscall,
        arch: info.si_arch,
        regs: *regs,
        mask: uc.uc_sigmask,
    });
    regs.rax = ANSWER;
    regs.r12 += 1;
    regs.rdi ^= 0x10;
    regs.r9 ^= 0x1000;
    regs.rip = (&raw const seccomp_guest_landing) as u64;
}

/// Installs `on_sigsys` for SIGSYS with libc, as an application does.
fn install_application_handler() {
    // SAFETY: a zeroed sigaction with an SA_SIGINFO handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()),
            0
        );
    }
}

/// SIGSYS's bit in a signal mask.
const SIGSYS_BIT: u64 = 1 << (SIGSYS - 1);

/// The memory the cases point the kernel at (never read by it: seccomp
/// traps every call first), at stable addresses.
struct Memory {
    /// A mask holding SIGSYS, so that sud reissues through a mask stub.
    mask: u64,
    /// pselect6's (mask pointer, size) pair.
    pair: [u64; 2],
    /// io_uring's struct io_uring_getevents_arg.
    uring_arg: [u64; 3],
    /// A stack for the clone.
    stack: [u64; 512],
}

/// The filter's marker in the calls that take a plain first argument.
const MARKER: u64 = 0x5ecc;

/// The cases: a name, the syscall's registers, and the first argument the
/// filter matches (none: every call of that number).
fn cases(memory: &'static Memory) -> Vec<(&'static str, [u64; 7], Option<u32>)> {
    let mask = &memory.mask as *const u64 as u64;
    let pair = memory.pair.as_ptr() as u64;
    let uring_arg = memory.uring_arg.as_ptr() as u64;
    let stack_top = memory.stack.as_ptr() as u64 + 8 * memory.stack.len() as u64;
    let thread =
        (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM) as u64;
    let getevents = (IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG) as u64;
    vec![
        (
            "getpid",
            [__NR_getpid as u64, MARKER, 2, 3, 4, 5, 6],
            Some(MARKER as u32),
        ),
        (
            "rt_sigsuspend",
            [__NR_rt_sigsuspend as u64, mask, 8, 3, 4, 5, 6],
            // Its only argument is the mask pointer, which the stub points
            // at its copy: a filter on it would not match under sud.
            None,
        ),
        (
            "ppoll",
            [__NR_ppoll as u64, MARKER, 0, 0, mask, 8, 6],
            Some(MARKER as u32),
        ),
        (
            "epoll_pwait",
            [__NR_epoll_pwait as u64, MARKER, 0, 1, 0, mask, 8],
            Some(MARKER as u32),
        ),
        (
            "pselect6",
            [__NR_pselect6 as u64, MARKER, 0, 0, 0, 0, pair],
            Some(MARKER as u32),
        ),
        (
            "io_uring_enter",
            [
                __NR_io_uring_enter as u64,
                MARKER,
                0,
                1,
                getevents,
                uring_arg,
                24,
            ],
            Some(MARKER as u32),
        ),
        ("fork", [__NR_fork as u64, 1, 2, 3, 4, 5, 6], None),
        ("vfork", [__NR_vfork as u64, 1, 2, 3, 4, 5, 6], None),
        (
            "clone",
            [__NR_clone as u64, thread, stack_top, 0, 0, 0, 6],
            Some(thread as u32),
        ),
    ]
}

/// Runs one case as guest code: what the handler saw, and what the guest
/// got back, with RSP taken relative to the guest's at its syscall.
fn run(input: [u64; 7]) -> (Seen, Call) {
    let mut call = Call {
        input,
        ..Call::default()
    };
    SEEN.lock().unwrap().clear();
    // SAFETY: seccomp traps the syscall, whose registers point at valid memory.
    unsafe { seccomp_guest_call(&mut call) };
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the handler ran {} times", seen.len());
    let mut seen = seen[0];
    seen.regs.rsp = seen.regs.rsp.wrapping_sub(call.rsp);
    call.output[15] = call.output[15].wrapping_sub(call.rsp);
    call.rsp = 0;
    (seen, call)
}

/// Every case natively, then under sud (callback: Reissue) with the handler
/// the application's, or (`guest_handler`) the guest's: each must be what it was natively.
fn compare_with_native(guest_handler: bool) {
    install_application_handler();
    let memory: &'static mut Memory = Box::leak(Box::new(Memory {
        mask: SIGSYS_BIT | 1 << (libc::SIGUSR2 - 1),
        pair: [0; 2],
        uring_arg: [0; 3],
        stack: [0; 512],
    }));
    memory.pair = [&memory.mask as *const u64 as u64, 8];
    memory.uring_arg = [&memory.mask as *const u64 as u64, 8, 0];
    let memory: &'static Memory = memory;
    let cases = cases(memory);
    for (_, input, marker) in &cases {
        common::seccomp(input[0] as u32, marker.as_slice(), libc::SECCOMP_RET_TRAP);
    }
    let native: Vec<_> = cases.iter().map(|(_, input, _)| run(*input)).collect();
    // Natively: the trap at the guest's syscall, and the handler's answer.
    let after_syscall = (&raw const seccomp_guest_after_syscall) as u64;
    for ((name, input, _), (seen, call)) in cases.iter().zip(&native) {
        assert_eq!(seen.code, SYS_SECCOMP as i32, "{name}");
        assert_eq!(seen.syscall as u64, input[0], "{name}");
        assert_eq!(
            (seen.call_addr, seen.regs.rip),
            (after_syscall, after_syscall),
            "{name}"
        );
        assert_eq!(seen.regs.rsp, 0, "{name}");
        assert_eq!(call.output[0], ANSWER, "{name}");
        assert_eq!(call.output[11], R12 + 1, "{name}: R12");
        assert_eq!(
            call.output[12], R13,
            "{name}: the mov to R13 was not skipped"
        );
    }

    sud::install(|_| Action::Reissue).unwrap();
    let thread = armed_thread();
    if guest_handler {
        let action = KernelSigaction {
            handler: on_sigsys as *const () as usize,
            flags: (SA_SIGINFO | SA_RESTORER) as u64,
            restorer: 0x1234,
            mask: 0,
        };
        assert_eq!(
            blocked(&thread, || guest_rt_sigaction(SIGSYS, Some(&action))).0,
            Ok(0)
        );
    }
    let mask = common::sigblk(common::gettid());
    for ((name, input, _), native) in cases.iter().zip(&native) {
        let under_sud = blocked(&thread, || run(*input));
        assert_eq!(
            &under_sud, native,
            "{name}: (what the handler saw, what the guest got)"
        );
        assert_eq!(
            common::sigblk(common::gettid()),
            mask,
            "{name}: the thread's mask"
        );
    }
    // The fork stub counts a fork on its way until its syscall has run; a
    // trapped fork never runs it, and must not hold code writes back for
    // good: a site is still rewritten.
    assert!(
        site_rewritten(&thread),
        "a trapped fork holds rewriting back"
    );
}

/// Whether a fresh `mov eax, getppid; syscall; ret` site, in a range to
/// rewrite at the first trap, is rewritten when it runs.
fn site_rewritten(thread: &sud::Thread) -> bool {
    let code = [0xb8, libc::SYS_getppid as u8, 0, 0, 0, 0x0f, 0x05, 0xc3];
    // SAFETY: a fresh private page, ours.
    let page = unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        ) as *mut u8;
        std::ptr::copy_nonoverlapping(code.as_ptr(), page, code.len());
        libc::mprotect(page.cast(), 4096, libc::PROT_READ | libc::PROT_EXEC);
        page
    };
    sud::rewrite_sites(page as usize..page as usize + 4096, sud::Policy::FirstTrap).unwrap();
    // SAFETY: the site makes getppid, reissued.
    let site: extern "C" fn() -> usize = unsafe { std::mem::transmute(page) };
    for _ in 0..2 {
        assert_eq!(
            blocked(thread, || site()),
            std::os::unix::process::parent_id() as usize
        );
    }
    // SAFETY: our page.
    unsafe { *page == 0xe9 }
}

#[test]
fn seccomp_trap_of_a_reissued_syscall_is_native_to_the_previous_handler() {
    isolated(
        "seccomp_trap_of_a_reissued_syscall_is_native_to_the_previous_handler",
        Ends::Passing,
        || compare_with_native(false),
    );
}

#[test]
fn seccomp_trap_of_a_reissued_syscall_is_native_to_the_guest_handler() {
    isolated(
        "seccomp_trap_of_a_reissued_syscall_is_native_to_the_guest_handler",
        Ends::Passing,
        || compare_with_native(true),
    );
}
