//! Register semantics of rewritten sites and of the direct paths' extended
//! state, bit for bit against native Linux.  One guest routine loads every
//! general register, RFLAGS, the vector and mask registers and MXCSR with
//! patterns (optionally x87 too, or with everything but SSE first put in its
//! initial state), makes one syscall, and stores it all again with XINUSE
//! and an FXSAVE image of the x87 state.  Run natively (unarmed) it is the
//! reference; run under sud, at a trapped `syscall`, at a site rewritten to
//! each form ([`SiteForm`]) and through `call sud_entry`, with a callback
//! that clobbers every vector, mask and x87 register, each outcome
//! (emulate, reissue, deny, redirect) must leave exactly the same state.
//! Each case runs in a process of its own, with extended state kept by
//! plain moves (the default where it fits) and by XSAVE.

#![allow(non_upper_case_globals)]

mod common;

use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_getpid, __NR_getppid};
use sud::{Action, Errno, Policy, SELECTOR, SiteForm, Syscall};

/// What the guest routine loads and stores.
#[repr(C, align(64))]
struct State {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8-r15, rflags.
    gprs_in: [u64; 16],
    gprs_out: [u64; 16],
    zmm_in: [[u8; 64]; 32],
    zmm_out: [[u8; 64]; 32],
    k_in: [u64; 8],
    k_out: [u64; 8],
    fxsave_out: [u8; 512],
    /// Bits of [`WIDE`], [`X87`], [`INIT`].
    how: u64,
    xinuse_out: u64,
    mxcsr_in: u32,
    mxcsr_out: u32,
    /// The caller's callee-saved registers and RSP, kept across the routine.
    saved: [u64; 7],
    /// Initial state for XRSTOR: a legacy area and a zero header.
    init_area: InitArea,
}

/// XRSTOR wants its area 64-byte aligned.
#[repr(C, align(64))]
struct InitArea([u8; 576]);

/// Load zmm0-31 and k0-7 whole (else xmm0-15 only, the rest untouched).
const WIDE: u64 = 1;
/// Load eight values onto the x87 stack (its state in use).
const X87: u64 = 2;
/// First put x87, the masks, zmm16-31 and the upper halves in their
/// initial state (with XRSTOR and VZEROUPPER).
const INIT: u64 = 4;

/// Where each register is in `gprs_*` (the guest routine's order).
const RAX: usize = 0;
const RBX: usize = 1;
const RCX: usize = 2;
const RDX: usize = 3;
const RSI: usize = 4;
const RDI: usize = 5;
const RBP: usize = 6;
const R8: usize = 7;
const R9: usize = 8;
const R10: usize = 9;
const R11: usize = 10;
const R12: usize = 11;
const R13: usize = 12;
const R14: usize = 13;
const R15: usize = 14;
const RFLAGS: usize = 15;
/// The components the routine puts in their initial state with XRSTOR:
/// x87, the masks, zmm16-31 (the upper halves go with VZEROUPPER).
const INIT_COMPONENTS: u32 = 1 << 0 | 1 << 5 | 1 << 7;
/// CF, PF, AF, ZF, SF and OF set, plus the always-one bit 1 and IF.
const TEST_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x800 | 0x2 | 0x200;

core::arch::global_asm!(
    include_str!("common/extended_state.s"),
    GPRS_IN = const core::mem::offset_of!(State, gprs_in),
    GPRS_OUT = const core::mem::offset_of!(State, gprs_out),
    ZMM_IN = const core::mem::offset_of!(State, zmm_in),
    ZMM_OUT = const core::mem::offset_of!(State, zmm_out),
    K_IN = const core::mem::offset_of!(State, k_in),
    K_OUT = const core::mem::offset_of!(State, k_out),
    FXSAVE_OUT = const core::mem::offset_of!(State, fxsave_out),
    HOW = const core::mem::offset_of!(State, how),
    XINUSE_OUT = const core::mem::offset_of!(State, xinuse_out),
    MXCSR_IN = const core::mem::offset_of!(State, mxcsr_in),
    MXCSR_OUT = const core::mem::offset_of!(State, mxcsr_out),
    SAVED = const core::mem::offset_of!(State, saved),
    INIT_AREA = const core::mem::offset_of!(State, init_area),
    WIDE = const WIDE,
    X87 = const X87,
    INIT = const INIT,
    NR_GETPPID = const __NR_getppid,
    INIT_COMPONENTS = const INIT_COMPONENTS,
    AT_RAX = const RAX * 8,
    AT_RBX = const RBX * 8,
    AT_RCX = const RCX * 8,
    AT_RDX = const RDX * 8,
    AT_RSI = const RSI * 8,
    AT_RDI = const RDI * 8,
    AT_RBP = const RBP * 8,
    AT_R8 = const R8 * 8,
    AT_R9 = const R9 * 8,
    AT_R10 = const R10 * 8,
    AT_R11 = const R11 * 8,
    AT_R12 = const R12 * 8,
    AT_R13 = const R13 * 8,
    AT_R14 = const R14 * 8,
    AT_R15 = const R15 * 8,
    AT_RFLAGS = const RFLAGS * 8,
);

unsafe extern "C" {
    fn xs_syscall(state: *mut State);
    fn xs_mov_site(state: *mut State);
    fn xs_island_site(state: *mut State);
    fn xs_entry(state: *mut State);
    static xs_sites_start: u8;
    static xs_sites_end: u8;
    static xs_mov_site_syscall: u8;
    static xs_island_site_syscall: u8;
    fn xs_clobber();
}

/// Where the guest makes its syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// A `syscall`, trapped.
    Trap,
    /// `mov eax, getppid; syscall`, rewritten to `SiteForm::Mov`.
    MovSite,
    /// `syscall; jmp` and padding, rewritten to `SiteForm::Island`.
    IslandSite,
    /// `call sud_entry` (R11 = 0: the global selector).
    Entry,
}

impl At {
    fn routine(self) -> unsafe extern "C" fn(*mut State) {
        match self {
            At::Trap => xs_syscall,
            At::MovSite => xs_mov_site,
            At::IslandSite => xs_island_site,
            At::Entry => xs_entry,
        }
    }
}

fn patterned(nr: u32, how: u64) -> Box<State> {
    let mut gprs_in = [0u64; 16];
    for (i, r) in gprs_in.iter_mut().enumerate() {
        *r = 0x0123_4567_89ab_cdef ^ 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1);
    }
    gprs_in[RAX] = nr as u64;
    gprs_in[R11] = 0; // sud_entry's selector: the global one
    gprs_in[RFLAGS] = TEST_RFLAGS;
    let mut state = Box::new(State {
        gprs_in,
        gprs_out: [0; 16],
        zmm_in: [[0; 64]; 32],
        zmm_out: [[0; 64]; 32],
        k_in: core::array::from_fn(|i| 0x5a5a_0000_0000_0001u64.rotate_left(i as u32 * 7)),
        k_out: [0; 8],
        fxsave_out: [0; 512],
        how,
        xinuse_out: 0,
        mxcsr_in: 0x7f80, // round toward zero
        mxcsr_out: 0,
        saved: [0; 7],
        init_area: InitArea([0; 576]),
    });
    for (r, bytes) in state.zmm_in.iter_mut().enumerate() {
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (r as u8).wrapping_mul(37) ^ (i as u8).wrapping_mul(11) ^ 0x5c;
        }
    }
    state
}

fn run(at: At, nr: u32, how: u64) -> Box<State> {
    let mut state = patterned(nr, how);
    // SAFETY: the routine reads and writes only `state`, and gives the
    // caller its callee-saved registers and RSP back.
    unsafe { (at.routine())(&mut *state) };
    state
}

/// Where `got` and `want` differ in what the guest observed, but RCX (the
/// return address, which differs between the routines: each is checked
/// against its own).
fn differences(got: &State, want: &State) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (g, w)) in got.gprs_out.iter().zip(&want.gprs_out).enumerate() {
        if i != RCX && g != w {
            out.push(format!("gpr {i}: {g:#x} != {w:#x}"));
        }
    }
    for (i, (g, w)) in got.zmm_out.iter().zip(&want.zmm_out).enumerate() {
        if g != w {
            out.push(format!("zmm{i}: {g:02x?} != {w:02x?}"));
        }
    }
    for (i, (g, w)) in got.k_out.iter().zip(&want.k_out).enumerate() {
        if g != w {
            out.push(format!("k{i}: {g:#x} != {w:#x}"));
        }
    }
    // x87 and MXCSR, then st0-7.
    if got.fxsave_out[..160] != want.fxsave_out[..160] {
        out.push(format!(
            "x87: {:02x?} != {:02x?}",
            &got.fxsave_out[..160],
            &want.fxsave_out[..160]
        ));
    }
    if got.xinuse_out != want.xinuse_out {
        out.push(format!(
            "XINUSE {:#x} != {:#x}",
            got.xinuse_out, want.xinuse_out
        ));
    }
    if got.mxcsr_out != want.mxcsr_out {
        out.push(format!(
            "MXCSR {:#x} != {:#x}",
            got.mxcsr_out, want.mxcsr_out
        ));
    }
    out
}

/// The address after the routine's syscall (or `call sud_entry`).
fn resume_of(at: At) -> u64 {
    match at {
        At::Trap | At::Entry => 0, // checked against the native run
        At::MovSite => &raw const xs_mov_site_syscall as u64 + 2,
        At::IslandSite => &raw const xs_island_site_syscall as u64 + 2,
    }
}

fn clobbering(action: Action) -> Action {
    // SAFETY: clobbers caller-saved vector, mask and x87 registers only.
    unsafe { xs_clobber() };
    action
}

fn emulate(call: &mut Syscall) -> Action {
    assert_eq!(call.number(), __NR_getppid);
    clobbering(Action::Emulate(std::os::unix::process::parent_id() as usize))
}

fn reissue(_: &mut Syscall) -> Action {
    clobbering(Action::Reissue)
}

fn deny(_: &mut Syscall) -> Action {
    clobbering(Action::Deny(Errno::ENOSYS))
}

fn redirect(_: &mut Syscall) -> Action {
    clobbering(Action::Redirect)
}

fn redirected(call: &mut Syscall) -> usize {
    // SAFETY: as above.
    unsafe { xs_clobber() };
    match call.number() {
        __NR_getppid => std::os::unix::process::parent_id() as usize,
        _ => Errno::ENOSYS.to_syscall_result(),
    }
}

/// Checks each `how` at `at` under `handler` against the native run of
/// the same guest code (for `sud_entry`, of the trapped routine).
fn check(at: At, nr: u32, handler: sud::Handler, by_xsave: bool) {
    if by_xsave {
        sud::__extended_state_through_xsave();
    }
    let hows = [WIDE, WIDE | X87, INIT, INIT | WIDE];
    let mut native: Vec<_> = hows
        .iter()
        .map(|&how| run(if at == At::Entry { At::Trap } else { at }, nr, how))
        .collect();
    if handler as *const () == deny as *const () {
        // The mov site's getppid, denied: the kernel's ENOSYS for a call it
        // does not have (which the other deny cases make natively).
        for want in &mut native {
            want.gprs_out[RAX] = Errno::ENOSYS.to_syscall_result() as u64;
        }
    }
    sud::install(handler).unwrap();
    sud::install_redirect(redirected).unwrap();
    if matches!(at, At::MovSite | At::IslandSite) {
        let range = &raw const xs_sites_start as usize..&raw const xs_sites_end as usize;
        sud::rewrite_sites(range, Policy::FirstTrap).unwrap();
    }
    sud::arm().unwrap();
    for (how, want) in hows.iter().zip(&native) {
        for round in 0..3 {
            // SAFETY: only the guest routine runs until allow().
            let got = unsafe {
                SELECTOR.block();
                let got = run(at, nr, *how);
                SELECTOR.allow();
                got
            };
            let resume = resume_of(at);
            if resume != 0 {
                assert_eq!(got.gprs_out[RCX], resume, "RCX");
                assert_eq!(want.gprs_out[RCX], resume, "native RCX");
            } else if at == At::Trap {
                assert_eq!(got.gprs_out[RCX], want.gprs_out[RCX], "RCX");
            }
            let differ = differences(&got, want);
            assert!(
                differ.is_empty(),
                "{at:?}, how {how:#x}, round {round}: {differ:#?}"
            );
        }
    }
    sud::disarm().unwrap();
    if matches!(at, At::MovSite | At::IslandSite) {
        let mut forms = Vec::new();
        sud::rewritten_sites(|site| forms.push(site.form));
        let want = match at {
            At::MovSite => SiteForm::Mov {
                number: __NR_getppid,
            },
            _ => SiteForm::Island {
                island: &raw const xs_island_site_syscall as usize + 4,
            },
        };
        assert_eq!(forms, [want], "the site was rewritten");
    }
}

/// Two tests per case: extended state kept by plain moves, and by XSAVE.
macro_rules! cases {
    ($($moves:ident, $xsave:ident: $at:expr, $nr:expr, $handler:expr;)*) => {
        $(
            #[test]
            fn $moves() {
                isolated(stringify!($moves), Ends::Passing, || check($at, $nr, $handler, false));
            }

            #[test]
            fn $xsave() {
                isolated(stringify!($xsave), Ends::Passing, || check($at, $nr, $handler, true));
            }
        )*
    };
}

// The mov site's number is its immediate, getppid; the others take theirs
// from RAX (0xff00: a syscall the kernel does not have, denied with its
// own ENOSYS).
cases! {
    trap_emulate, trap_emulate_by_xsave: At::Trap, __NR_getppid, emulate;
    trap_redirect, trap_redirect_by_xsave: At::Trap, __NR_getppid, redirect;
    entry_emulate, entry_emulate_by_xsave: At::Entry, __NR_getppid, emulate;
    entry_reissue, entry_reissue_by_xsave: At::Entry, __NR_getpid, reissue;
    entry_deny, entry_deny_by_xsave: At::Entry, 0xff00, deny;
    entry_redirect, entry_redirect_by_xsave: At::Entry, __NR_getppid, redirect;
    mov_site_emulate, mov_site_emulate_by_xsave: At::MovSite, __NR_getppid, emulate;
    mov_site_reissue, mov_site_reissue_by_xsave: At::MovSite, __NR_getppid, reissue;
    mov_site_deny, mov_site_deny_by_xsave: At::MovSite, __NR_getppid, deny;
    mov_site_redirect, mov_site_redirect_by_xsave: At::MovSite, __NR_getppid, redirect;
    island_site_emulate, island_site_emulate_by_xsave: At::IslandSite, __NR_getppid, emulate;
    island_site_reissue, island_site_reissue_by_xsave: At::IslandSite, __NR_getpid, reissue;
    island_site_deny, island_site_deny_by_xsave: At::IslandSite, 0xff00, deny;
    island_site_redirect, island_site_redirect_by_xsave: At::IslandSite, __NR_getppid, redirect;
}
