//! Register semantics of a trapped syscall.  Guest code (assembly below,
//! outside the allowed region) loads every general register, RFLAGS and
//! every vector register (xmm0-15, ymm0-15 or zmm0-31 and k1-k7, as wide as
//! the CPU and kernel allow) with patterns, makes one `syscall`, and stores
//! them all again.  The same syscall made natively, unarmed, is the
//! reference: emulated and reissued calls must leave exactly the same state,
//! RCX and R11 included, while the callback deliberately clobbers every
//! vector register.  A second guest fills its red zone, makes a trapped
//! syscall and checks that no byte of it changed.

#![no_std]
#![no_main]
#![allow(non_upper_case_globals)]

use core::mem::offset_of;
use linux_raw_sys::general::{__NR_getpid, __NR_getppid};
use sud::{Action, Errno, SELECTOR, Syscall, guest};
use sud_freestanding::{case, check, check_eq, run, say};

#[unsafe(no_mangle)]
fn test_main() -> i32 {
    say!("vector state tested: {}", Width::detect().name());
    run(&[
        case!(native_reference_is_deterministic),
        case!(emulate_preserves_registers),
        case!(reissue_preserves_registers),
        case!(deny_preserves_registers),
        case!(emulate_leaves_red_zone),
        case!(reissue_leaves_red_zone),
        case!(redirect_preserves_registers),
        case!(redirect_leaves_red_zone),
        case!(entry_emulate_preserves_registers),
        case!(entry_reissue_preserves_registers),
        case!(entry_redirect_preserves_registers),
    ])
}

/// The general registers and RFLAGS, in the order the assembly uses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Gprs {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rflags: u64,
}

/// zmm0-31 (64 bytes each) then k0-7 (8 bytes each); narrower widths use a prefix.
const VECTOR_BYTES: usize = 32 * 64 + 8 * 8;
const K_OFFSET: usize = 32 * 64;

#[repr(C)]
struct State {
    input: Gprs,
    output: Gprs,
    rsp_before: u64,
    rsp_after: u64,
    callee_saved: [u64; 6],
    width: u64,
    /// Bytes to lower RSP by before the syscall: the kernel lays the signal
    /// frame out relative to RSP, with 64-byte alignment, so a sweep over
    /// shifts puts every part of it next to the red zone in turn.
    stack_shift: u64,
    /// RSP on entry to the round trip, restored on the way out.
    entry_rsp: u64,
    vectors_in: [u8; VECTOR_BYTES],
    vectors_out: [u8; VECTOR_BYTES],
    /// x87 registers st0-7 (loaded as integers), control word, MXCSR.
    x87_in: [u64; 8],
    x87_out: [u64; 8],
    fcw_in: u16,
    fcw_out: u16,
    mxcsr_in: u32,
    mxcsr_out: u32,
}

/// The ABI's x87 control word and MXCSR, which the round trip puts back.
static DEFAULT_FCW: u16 = 0x37f;
static DEFAULT_MXCSR: u32 = 0x1f80;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Width {
    Sse = 1,
    Avx = 2,
    Avx512 = 3,
}

impl Width {
    /// The widest vector state both the CPU and the kernel (XCR0) enable.
    fn detect() -> Width {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        let leaf1 = __cpuid(1);
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        if !osxsave {
            return Width::Sse;
        }
        let xcr0: u64;
        // SAFETY: xgetbv(0) is allowed when CPUID.1:ECX.OSXSAVE is set.
        unsafe {
            let (lo, hi): (u32, u32);
            core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack));
            xcr0 = (hi as u64) << 32 | lo as u64;
        }
        let leaf7 = __cpuid_count(7, 0);
        if leaf7.ebx & (1 << 16) != 0 && xcr0 & 0xe6 == 0xe6 {
            Width::Avx512
        } else if leaf1.ecx & (1 << 28) != 0 && xcr0 & 0x6 == 0x6 {
            Width::Avx
        } else {
            Width::Sse
        }
    }

    fn name(self) -> &'static str {
        match self {
            Width::Sse => "xmm0-15",
            Width::Avx => "ymm0-15",
            Width::Avx512 => "zmm0-31 and k1-7",
        }
    }

    /// The bytes of the vector area this width loads and stores.
    fn covers(self, byte: usize) -> bool {
        let (regs, bytes) = match self {
            Width::Sse => (16, 16),
            Width::Avx => (16, 32),
            Width::Avx512 => (32, 64),
        };
        if byte >= K_OFFSET {
            return self == Width::Avx512 && byte >= K_OFFSET + 8; // k1-k7
        }
        byte / 64 < regs && byte % 64 < bytes
    }
}

core::arch::global_asm!(
    r#"
    .pushsection .bss
    .p2align 3
guest_state:
    .zero 8                             # the State of the running round trip
    .popsection

    .text
# A round trip: extern "C" fn(state: *mut State) loads state.input and
# state.vectors_in, makes one syscall with `insn`, and stores state.output
# and vectors_out.  guest_roundtrip uses `syscall`; guest_roundtrip_entry
# `call sud_entry` (with RSP 16-byte aligned, and R11 = the selector, from
# state.input), returning to guest_roundtrip_entry_resume.
.macro roundtrip name, insn, align
    .globl \name
    .type \name, @function
\name:
    mov [rdi + {SAVED}], rbx            # keep the callee-saved registers the test overwrites
    mov [rdi + {SAVED} + 8], rbp
    mov [rdi + {SAVED} + 16], r12
    mov [rdi + {SAVED} + 24], r13
    mov [rdi + {SAVED} + 32], r14
    mov [rdi + {SAVED} + 40], r15
    mov [rip + guest_state], rdi        # every register is a test value after the syscall: find the state here
    mov [rdi + {ENTRY_RSP}], rsp        # to come back to
    sub rsp, [rdi + {SHIFT}]            # this run's stack alignment
    \align
    mov rax, [rdi + {WIDTH}]            # which vector registers to load
    cmp rax, 3
    je 3f
    cmp rax, 2
    je 2f
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movdqu xmm\n, [rdi + {VIN} + \n * 64]   # SSE: xmm0-15
    .endr
    jmp 9f
2:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    vmovdqu ymm\n, [rdi + {VIN} + \n * 64]  # AVX: ymm0-15
    .endr
    jmp 9f
3:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqu64 zmm\n, [rdi + {VIN} + \n * 64] # AVX-512: zmm0-31
    .endr
    .irp n, 1,2,3,4,5,6,7
    kmovq k\n, [rdi + {VIN} + {KOFF} + \n * 8] # and the mask registers k1-7
    .endr
9:
    fldcw [rdi + {FCW_IN}]              # x87: a control word of the test's (53-bit precision)
    .irp n, 0,1,2,3,4,5,6,7
    fild qword ptr [rdi + {X87_IN} + \n * 8]   # and eight values on its stack: st7..st0
    .endr
    ldmxcsr [rdi + {MXCSR_IN}]          # SSE control of the test's (round toward zero)
    push qword ptr [rdi + {IN} + {RFLAGS}]  # RFLAGS from the test pattern
    popfq
    mov [rdi + {RSP_BEFORE}], rsp
    mov rax, [rdi + {IN} + {RAX}]       # the syscall number
    mov rbx, [rdi + {IN} + {RBX}]
    mov rcx, [rdi + {IN} + {RCX}]
    mov rdx, [rdi + {IN} + {RDX}]
    mov rsi, [rdi + {IN} + {RSI}]
    mov rbp, [rdi + {IN} + {RBP}]
    mov r8, [rdi + {IN} + {R8}]
    mov r9, [rdi + {IN} + {R9}]
    mov r10, [rdi + {IN} + {R10}]
    mov r11, [rdi + {IN} + {R11}]
    mov r12, [rdi + {IN} + {R12}]
    mov r13, [rdi + {IN} + {R13}]
    mov r14, [rdi + {IN} + {R14}]
    mov r15, [rdi + {IN} + {R15}]
    mov rdi, [rdi + {IN} + {RDI}]       # last: it held the state pointer
    \insn                               # the guest syscall under test
    pushfq                              # RFLAGS first: nothing below changes the flags until it is saved
    push rax
    mov rax, [rip + guest_state]
    mov [rax + {OUT} + {RBX}], rbx
    mov [rax + {OUT} + {RCX}], rcx
    mov [rax + {OUT} + {RDX}], rdx
    mov [rax + {OUT} + {RSI}], rsi
    mov [rax + {OUT} + {RDI}], rdi
    mov [rax + {OUT} + {RBP}], rbp
    mov [rax + {OUT} + {R8}], r8
    mov [rax + {OUT} + {R9}], r9
    mov [rax + {OUT} + {R10}], r10
    mov [rax + {OUT} + {R11}], r11
    mov [rax + {OUT} + {R12}], r12
    mov [rax + {OUT} + {R13}], r13
    mov [rax + {OUT} + {R14}], r14
    mov [rax + {OUT} + {R15}], r15
    pop qword ptr [rax + {OUT} + {RAX}]
    pop qword ptr [rax + {OUT} + {RFLAGS}]
    mov [rax + {RSP_AFTER}], rsp
    mov rdi, rax
    cld                                 # the test pattern may set DF; the ABI wants it clear
    .irp n, 7,6,5,4,3,2,1,0
    fistp qword ptr [rdi + {X87_OUT} + \n * 8]  # the x87 stack, emptied again: st0 was loaded last
    .endr
    fnstcw [rdi + {FCW_OUT}]
    stmxcsr [rdi + {MXCSR_OUT}]
    fldcw [rip + {DEFAULT_FCW}]         # the ABI's control word and MXCSR back for Rust code
    ldmxcsr [rip + {DEFAULT_MXCSR}]
    mov rax, [rdi + {WIDTH}]
    cmp rax, 3
    je 3f
    cmp rax, 2
    je 2f
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movdqu [rdi + {VOUT} + \n * 64], xmm\n
    .endr
    jmp 9f
2:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    vmovdqu [rdi + {VOUT} + \n * 64], ymm\n
    .endr
    vzeroupper                          # leave no dirty upper state to Rust code
    jmp 9f
3:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqu64 [rdi + {VOUT} + \n * 64], zmm\n
    .endr
    .irp n, 1,2,3,4,5,6,7
    kmovq [rdi + {VOUT} + {KOFF} + \n * 8], k\n
    .endr
    vzeroupper
9:
    mov rbx, [rdi + {SAVED}]            # give the caller its registers back
    mov rbp, [rdi + {SAVED} + 8]
    mov r12, [rdi + {SAVED} + 16]
    mov r13, [rdi + {SAVED} + 24]
    mov r14, [rdi + {SAVED} + 32]
    mov r15, [rdi + {SAVED} + 40]
    mov rsp, [rdi + {ENTRY_RSP}]
    ret
    .size \name, . - \name
.endm

.macro align16
    and rsp, -16                        # sud_entry wants a 16-byte aligned stack at the call
.endm

.macro call_entry
    call sud_entry
    .globl guest_roundtrip_entry_resume
guest_roundtrip_entry_resume:
.endm

    roundtrip guest_roundtrip, syscall, nop
    roundtrip guest_roundtrip_entry, call_entry, align16


    .globl clobber_vectors
    .type clobber_vectors, @function
# extern "C" fn clobber_vectors(width: u64): overwrites the x87 registers
# and sets every vector and mask register of that width to all ones, as
# ordinary code may (its x87 control word and MXCSR are the ABI's).
clobber_vectors:
    fninit                              # x87: the ABI's state (the guest's differs), then
    .irp n, 0,1,2,3,4,5,6,7
    fldpi                               # junk in every register
    .endr
    .irp n, 0,1,2,3,4,5,6,7
    fstp st(0)                          # and the stack empty again, as the ABI wants it
    .endr
    pcmpeqd xmm0, xmm0                  # all ones
    cmp rdi, 3
    je 3f
    cmp rdi, 2
    je 2f
    .irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movdqa xmm\n, xmm0
    .endr
    ret
2:
    vpcmpeqd ymm0, ymm0, ymm0
    .irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    vmovdqa ymm\n, ymm0
    .endr
    vzeroupper
    ret
3:
    vpternlogd zmm0, zmm0, zmm0, 0xff   # all ones
    .irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqa64 zmm\n, zmm0
    .endr
    kxnorq k1, k1, k1
    .irp n, 2,3,4,5,6,7
    kmovq k\n, k1
    .endr
    vzeroupper
    ret
    .size clobber_vectors, . - clobber_vectors

    .globl guest_red_zone
    .type guest_red_zone, @function
# extern "C" fn guest_red_zone(nr: u64, shift: u64) -> (u64, u64): lowers RSP
# by `shift`, fills the 128-byte red zone below it, makes syscall `nr`, and
# returns (its result, the number of red-zone qwords that changed).
guest_red_zone:
    sub rsp, rsi                        # this run's stack alignment; rsi survives the syscall
    .irp i, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16
    mov rax, 0x5ed2015e00000000 + \i
    mov [rsp - \i * 8], rax             # qword i of the red zone gets its own pattern
    .endr
    mov rax, rdi
    syscall                             # the guest syscall under test
    xor edx, edx                        # count of changed qwords
    .irp i, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16
    mov rcx, 0x5ed2015e00000000 + \i
    cmp [rsp - \i * 8], rcx
    setne cl
    movzx ecx, cl
    add rdx, rcx
    .endr
    add rsp, rsi
    ret
    .size guest_red_zone, . - guest_red_zone
    "#,
    SAVED = const offset_of!(State, callee_saved),
    WIDTH = const offset_of!(State, width),
    SHIFT = const offset_of!(State, stack_shift),
    X87_IN = const offset_of!(State, x87_in),
    X87_OUT = const offset_of!(State, x87_out),
    FCW_IN = const offset_of!(State, fcw_in),
    FCW_OUT = const offset_of!(State, fcw_out),
    MXCSR_IN = const offset_of!(State, mxcsr_in),
    MXCSR_OUT = const offset_of!(State, mxcsr_out),
    DEFAULT_FCW = sym DEFAULT_FCW,
    DEFAULT_MXCSR = sym DEFAULT_MXCSR,
    ENTRY_RSP = const offset_of!(State, entry_rsp),
    VIN = const offset_of!(State, vectors_in),
    VOUT = const offset_of!(State, vectors_out),
    KOFF = const K_OFFSET,
    IN = const offset_of!(State, input),
    OUT = const offset_of!(State, output),
    RSP_BEFORE = const offset_of!(State, rsp_before),
    RSP_AFTER = const offset_of!(State, rsp_after),
    RAX = const offset_of!(Gprs, rax),
    RBX = const offset_of!(Gprs, rbx),
    RCX = const offset_of!(Gprs, rcx),
    RDX = const offset_of!(Gprs, rdx),
    RSI = const offset_of!(Gprs, rsi),
    RDI = const offset_of!(Gprs, rdi),
    RBP = const offset_of!(Gprs, rbp),
    R8 = const offset_of!(Gprs, r8),
    R9 = const offset_of!(Gprs, r9),
    R10 = const offset_of!(Gprs, r10),
    R11 = const offset_of!(Gprs, r11),
    R12 = const offset_of!(Gprs, r12),
    R13 = const offset_of!(Gprs, r13),
    R14 = const offset_of!(Gprs, r14),
    R15 = const offset_of!(Gprs, r15),
    RFLAGS = const offset_of!(Gprs, rflags),
);

unsafe extern "C" {
    fn guest_roundtrip(state: *mut State);
    fn guest_roundtrip_entry(state: *mut State);
    static guest_roundtrip_entry_resume: u8;
    fn clobber_vectors(width: u64);
    fn guest_red_zone(nr: u64, shift: u64) -> RedZone;
}

#[repr(C)]
#[derive(Debug, PartialEq, Eq)]
struct RedZone {
    result: u64,
    changed_qwords: u64,
}

/// CF, PF, AF, ZF, SF, DF and OF set, plus the always-one bit 1 and IF.
const TEST_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800 | 0x2 | 0x200;

/// A state whose every register holds a distinct pattern.
fn patterned_state(nr: u32, stack_shift: u64) -> State {
    let mut input = Gprs::default();
    let fields = [
        &mut input.rbx,
        &mut input.rcx,
        &mut input.rdx,
        &mut input.rsi,
        &mut input.rdi,
        &mut input.rbp,
        &mut input.r8,
        &mut input.r9,
        &mut input.r10,
        &mut input.r11,
        &mut input.r12,
        &mut input.r13,
        &mut input.r14,
        &mut input.r15,
    ];
    for (i, field) in fields.into_iter().enumerate() {
        *field = 0x0123_4567_89ab_cdef ^ (0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1));
    }
    input.rax = nr as u64;
    input.rflags = TEST_RFLAGS;
    let mut state = State {
        input,
        output: Gprs::default(),
        rsp_before: 0,
        rsp_after: 0,
        callee_saved: [0; 6],
        width: Width::detect() as u64,
        stack_shift,
        entry_rsp: 0,
        vectors_in: [0; VECTOR_BYTES],
        vectors_out: [0; VECTOR_BYTES],
        x87_in: core::array::from_fn(|i| 0x1234_5678_9abc + i as u64 * 1_000_003),
        x87_out: [0; 8],
        fcw_in: 0x27f,
        fcw_out: 0,
        mxcsr_in: 0x7f80,
        mxcsr_out: 0,
    };
    for (i, byte) in state.vectors_in.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    state
}

/// The stack shifts each case sweeps: every 8 bytes over two 64-byte lines.
const SHIFTS: core::ops::Range<u64> = 0..16;

fn roundtrip(nr: u32, shift: u64) -> State {
    let mut state = patterned_state(nr, shift * 8);
    // SAFETY: guest_roundtrip reads and writes only `state`, and restores
    // the callee-saved registers it uses.
    unsafe { guest_roundtrip(&mut state) };
    state
}

/// The native outcome of the syscall, unarmed: the reference.
fn native(nr: u32) -> State {
    roundtrip(nr, 0)
}

/// Runs syscall `nr` with the thread armed and blocked and `handler`
/// deciding, at every stack shift, and compares each outcome with the native one.
fn check_dispatched(nr: u32, handler: sud::Handler) {
    let want = native(nr);
    check_eq!(sud::install(handler), Ok(()));
    check_eq!(sud::arm(), Ok(()));
    for shift in SHIFTS {
        let mut state = patterned_state(nr, shift * 8);
        // SAFETY: only the guest round trip runs until allow().
        unsafe {
            SELECTOR.block();
            guest_roundtrip(&mut state);
        }
        SELECTOR.allow();
        check_same(&state, &want, shift * 8);
    }
    check_eq!(sud::disarm(), Ok(()));
}

/// Compares a dispatched outcome with the native one, register by register
/// and byte by byte.
fn check_same(got: &State, want: &State, shift: u64) {
    check!(
        got.output == want.output,
        "stack shift {shift}: {:x?} != {:x?}",
        got.output,
        want.output
    );
    check!(
        got.rsp_after == got.rsp_before,
        "stack shift {shift}: RSP moved"
    );
    check!(
        got.x87_out == got.x87_in,
        "stack shift {shift}: x87 {:x?} != {:x?}",
        got.x87_out,
        got.x87_in
    );
    check!(
        got.fcw_out == got.fcw_in,
        "stack shift {shift}: FCW {:#x} != {:#x}",
        got.fcw_out,
        got.fcw_in
    );
    check!(
        got.mxcsr_out == got.mxcsr_in,
        "stack shift {shift}: MXCSR {:#x} != {:#x}",
        got.mxcsr_out,
        got.mxcsr_in
    );
    let width = Width::detect();
    let mut bad = 0;
    for i in 0..VECTOR_BYTES {
        if width.covers(i) && got.vectors_out[i] != got.vectors_in[i] {
            if bad < 8 || i % 64 == 0 {
                say!(
                    "  stack shift {shift}: vector byte {i} (register {}, byte {}): {:#x} != {:#x}",
                    i / 64,
                    i % 64,
                    got.vectors_out[i],
                    got.vectors_in[i]
                );
            }
            bad += 1;
        }
    }
    check_eq!(bad, 0);
}

fn clobbering_callback(action: Action) -> Action {
    check_abi_state();
    // SAFETY: clobbers only caller-saved vector and mask registers.
    unsafe { clobber_vectors(Width::detect() as u64) };
    action
}

fn getppid_value() -> usize {
    // SAFETY: getppid has no arguments and no effect.
    unsafe { guest::syscall0(__NR_getppid) }.unwrap()
}

/// The reference itself must be stable, or comparing with it proves nothing:
/// two native runs agree, the syscall preserved the vectors, RCX is the
/// return address and R11 the RFLAGS pattern.
fn native_reference_is_deterministic() {
    let a = native(__NR_getppid);
    for shift in SHIFTS {
        check_same(&roundtrip(__NR_getppid, shift), &a, shift * 8);
    }
    check_eq!(a.output.rax as usize, getppid_value());
    check_eq!(a.output.r11 & 0xcd5, TEST_RFLAGS & 0xcd5);
    check_eq!(a.output.rflags & 0xcd5, TEST_RFLAGS & 0xcd5);
    check!(
        a.output.rcx != a.input.rcx,
        "rcx was not set to the return address"
    );
}

fn emulate_preserves_registers() {
    fn handler(call: &mut Syscall) -> Action {
        check_eq!(call.number(), __NR_getppid);
        clobbering_callback(Action::Emulate(getppid_value()))
    }
    check_dispatched(__NR_getppid, handler);
}

fn reissue_preserves_registers() {
    fn handler(call: &mut Syscall) -> Action {
        check_eq!(call.number(), __NR_getpid);
        clobbering_callback(Action::Reissue)
    }
    check_dispatched(__NR_getpid, handler);
}

fn deny_preserves_registers() {
    fn handler(_: &mut Syscall) -> Action {
        clobbering_callback(Action::Deny(Errno::ENOSYS))
    }
    // A syscall the kernel does not have: denying it with ENOSYS must look
    // exactly like the kernel's own answer.
    const MISSING: u32 = 0xff00;
    check_dispatched(MISSING, handler);
}

/// Runs the red-zone guest armed and blocked at every stack shift; each run
/// must give `want`.
fn check_red_zone(handler: sud::Handler, nr: u32, want: RedZone) {
    check_eq!(sud::install(handler), Ok(()));
    check_eq!(sud::arm(), Ok(()));
    for shift in SHIFTS {
        // SAFETY: only the guest runs until allow().
        let got = unsafe {
            SELECTOR.block();
            let got = guest_red_zone(nr as u64, shift * 8);
            SELECTOR.allow();
            got
        };
        check!(
            got == want,
            "stack shift {}: {got:?} != {want:?}",
            shift * 8
        );
    }
    check_eq!(sud::disarm(), Ok(()));
}

fn emulate_leaves_red_zone() {
    fn handler(_: &mut Syscall) -> Action {
        Action::Emulate(77)
    }
    check_red_zone(
        handler,
        __NR_getppid,
        RedZone {
            result: 77,
            changed_qwords: 0,
        },
    );
}

fn reissue_leaves_red_zone() {
    fn handler(_: &mut Syscall) -> Action {
        Action::Reissue
    }
    let pid = guest_red_zone_native_pid();
    check_red_zone(
        handler,
        __NR_getpid,
        RedZone {
            result: pid,
            changed_qwords: 0,
        },
    );
}

/// What Rust code may assume on entry: DF clear, and the ABI's x87 control
/// word and MXCSR, whatever the guest had.
fn check_abi_state() {
    let (rflags, fcw, mxcsr): (u64, u16, u32);
    // SAFETY: reads RFLAGS, the x87 control word and MXCSR into locals.
    unsafe {
        let mut fcw_slot = 0u16;
        let mut mxcsr_slot = 0u32;
        core::arch::asm!("pushfq", "pop {}", "fnstcw [{}]", "stmxcsr [{}]", out(reg) rflags,
            in(reg) &mut fcw_slot, in(reg) &mut mxcsr_slot);
        (fcw, mxcsr) = (fcw_slot, mxcsr_slot);
    }
    check_eq!(rflags & 0x400, 0);
    check_eq!(fcw, DEFAULT_FCW);
    check_eq!(mxcsr, DEFAULT_MXCSR);
}

/// The redirect function of these tests: ordinary code that clobbers every
/// vector register and makes its own syscall natively.
fn redirect_getpid(call: &mut Syscall) -> usize {
    check_abi_state();
    check_eq!(call.number(), __NR_getpid);
    check!(
        call.siginfo().is_none(),
        "a redirect function runs outside signal context"
    );
    check!(
        !SELECTOR.is_blocked(),
        "a redirect function runs under ALLOW"
    );
    // SAFETY: clobbers only caller-saved vector and mask registers.
    unsafe { clobber_vectors(Width::detect() as u64) };
    // SAFETY: getpid, natively: the selector says ALLOW.
    unsafe { guest::syscall0(__NR_getpid) }.unwrap()
}

fn redirect_preserves_registers() {
    fn handler(call: &mut Syscall) -> Action {
        check_eq!(call.number(), __NR_getpid);
        clobbering_callback(Action::Redirect)
    }
    sud::install_redirect(redirect_getpid).unwrap();
    check_dispatched(__NR_getpid, handler);
}

fn redirect_leaves_red_zone() {
    fn handler(_: &mut Syscall) -> Action {
        Action::Redirect
    }
    sud::install_redirect(redirect_getpid).unwrap();
    let pid = guest_red_zone_native_pid();
    check_red_zone(
        handler,
        __NR_getpid,
        RedZone {
            result: pid,
            changed_qwords: 0,
        },
    );
}

/// Runs syscall `nr` through `call sud_entry` with `handler` deciding, at
/// every stack shift, and compares with the native syscall: the same
/// registers, but RCX = the address after the `call`.
fn check_entry(nr: u32, handler: sud::Handler) {
    let mut want = native(nr);
    // After `call sud_entry`, RCX is the address after the call, as after a syscall.
    want.output.rcx = (&raw const guest_roundtrip_entry_resume) as u64;
    check_eq!(sud::install(handler), Ok(()));
    // Armed and blocked, as generated code would call it: sud_entry makes the
    // callback's syscalls run under ALLOW all the same.
    check_eq!(sud::arm(), Ok(()));
    for shift in SHIFTS {
        let mut state = patterned_state(nr, shift * 8);
        state.input.r11 = 0; // the global selector
        // SAFETY: only the guest round trip runs until allow().
        unsafe {
            SELECTOR.block();
            guest_roundtrip_entry(&mut state);
        }
        let still_blocked = SELECTOR.is_blocked();
        SELECTOR.allow();
        check!(still_blocked, "sud_entry left the selector at ALLOW");
        // The input R11 was the selector, not a pattern: compare the rest.
        check_same(&state, &want, shift * 8);
    }
    check_eq!(sud::disarm(), Ok(()));
}

fn entry_emulate_preserves_registers() {
    fn handler(call: &mut Syscall) -> Action {
        check!(call.siginfo().is_none());
        clobbering_callback(Action::Emulate(getppid_value()))
    }
    check_entry(__NR_getppid, handler);
}

fn entry_reissue_preserves_registers() {
    fn handler(_: &mut Syscall) -> Action {
        clobbering_callback(Action::Reissue)
    }
    check_entry(__NR_getpid, handler);
}

fn entry_redirect_preserves_registers() {
    fn handler(_: &mut Syscall) -> Action {
        clobbering_callback(Action::Redirect)
    }
    sud::install_redirect(redirect_getpid).unwrap();
    check_entry(__NR_getpid, handler);
}

fn guest_red_zone_native_pid() -> u64 {
    // SAFETY: getpid from the red-zone guest, unarmed.
    let native = unsafe { guest_red_zone(__NR_getpid as u64, 0) };
    check_eq!(native.changed_qwords, 0);
    native.result
}
