//! Syscall User Dispatch for JITs, emulators and compatibility layers:
//! `#![no_std]`, no libc, x86-64 Linux 5.11 and later.
//!
//! A thread armed with [`arm`] has its syscalls dispatched as SIGSYS
//! whenever its [`Selector`] says BLOCK, except those made from the
//! [allowed region](allowed_region), where the runtime keeps every
//! instruction that must run meanwhile.  sud's SIGSYS handler ([`install`])
//! hands each trapped syscall to a Rust [`Handler`], which [emulates,
//! reissues or denies](Action) it.
//!
//! ```no_run
//! use linux_raw_sys::general as nr;
//! use sud::{Action, Syscall};
//!
//! fn on_syscall(call: &mut Syscall) -> Action {
//!     match call.number() {
//!         nr::__NR_getppid => Action::Emulate(4242),
//!         nr::__NR_write => Action::Reissue,
//!         _ => Action::default(), // Deny(ENOSYS)
//!     }
//! }
//!
//! sud::install(on_syscall)?;
//! sud::arm()?;
//! // SAFETY: only guest code runs until allow().
//! unsafe { sud::SELECTOR.block() };
//! // ... run guest code: its syscalls reach on_syscall ...
//! sud::SELECTOR.allow();
//! sud::disarm()?;
//! # Ok::<(), sud::Error>(())
//! ```
//!
//! **Redirect**: a syscall that may block, or needs locks and allocation, is
//! better handled by ordinary code than in a signal handler:
//!
//! ```no_run
//! # use linux_raw_sys::general::__NR_read;
//! # use sud::{Action, Syscall};
//! fn on_syscall(call: &mut Syscall) -> Action {
//!     if call.number() == __NR_read { Action::Redirect } else { Action::Reissue }
//! }
//! // Runs after rt_sigreturn, selector at ALLOW; its result is the syscall's.
//! fn read_from_my_vfs(call: &mut Syscall) -> usize {
//!     let [_fd, _buf, _len, ..] = call.args();
//!     0 // end of file
//! }
//! sud::install(on_syscall)?;
//! sud::install_redirect(read_from_my_vfs)?;
//! # Ok::<(), sud::Error>(())
//! ```
//!
//! **Threads**: for several guest threads, give each a selector of its own
//! with [`Thread`]; the tasks guest code creates (clone, clone3, fork, vfork)
//! are armed again before they run a guest instruction.  While armed, SIGSYS
//! stays deliverable whatever the guest does with masks and dispositions
//! (see `src/reissue/sigstate.rs`), and [`install_host_handler`] runs host signal
//! handlers under ALLOW.
//!
//! ```no_run
//! let thread = sud::Thread::new()?;
//! thread.arm()?;
//! let selector_for_generated_code: *mut u8 = thread.selector().as_ptr();
//! # let _ = selector_for_generated_code;
//! # Ok::<(), sud::Error>(())
//! ```
//!
//! **Inclusive mode** (Linux 6.17): only a given range is trapped, say a
//! JIT's code cache; everything else runs natively.
//!
//! ```no_run
//! # let code_cache = 0x7000_0000usize..0x7100_0000;
//! match sud::arm_inclusive(code_cache) {
//!     Err(sud::Error::NoInclusiveMode) => sud::arm()?, // fall back: exclusive mode
//!     other => other?,
//! }
//! # Ok::<(), sud::Error>(())
//! ```
//!
//! **The signal-free entry**: generated code can `call sud_entry` in place of
//! `syscall`, with R11 = its thread's selector (0: the global one); the same
//! callback decides, with no signal.  RAX = the result, RCX and R11 as after
//! a `syscall`, everything else kept; the caller's red zone is not.
//!
//! ```no_run
//! # // SAFETY: sud_entry takes the syscall's registers and R11, clobbers RCX and R11.
//! # unsafe {
//! let result: usize;
//! core::arch::asm!(
//!     "call {entry}",
//!     entry = in(reg) sud::region_symbols().entry,
//!     inlateout("rax") 110usize => result, // getppid
//!     inlateout("r11") 0usize => _,        // the global selector
//!     lateout("rcx") _,
//! );
//! # let _ = result;
//! # }
//! ```
//!
//! **A freestanding static executable** (no libc, its own `_start`): the
//! feature `freestanding` adds `sud::freestanding`, whose `entry!(main)`
//! defines `_start`, the panic handler and the C memory functions; the
//! README's freestanding section is a complete template.
//!
//! Where things are, layer by layer from the bottom (each module uses only
//! those above it in this list; `asm.rs` is imported by nobody):
//! - `kernel/`: the kernel ABI types (signal frame, `kernel_sigaction`,
//!   `stack_t`), layouts asserted; `error.rs`: [`Errno`], [`Error`];
//!   `xsave.rs`: how the direct paths keep the extended state; `tp.rs`:
//!   reading and writing the thread pointers (FS and GS bases);
//! - `sys/`: typed wrappers for every syscall the runtime makes, through the
//!   trampolines; the raw [`host`] and [`guest`] syscalls;
//! - `table.rs`: tables that grow on demand (vforks under way);
//!   `rewrite/`: rewriting hot trap sites (experimental, opt-in);
//! - `region.rs`: the [allowed region](allowed_region) and the asm symbols;
//! - `selector.rs`: [`Selector`]; `arm.rs`: arming, [`support`];
//! - `thread/`: per-thread state and its arena, the host's thread pointers,
//!   [`Thread`], [`arm`], the spawn hook (host threads for guest threads),
//!   the state a rewritten site finds;
//! - `dispositions/`: the guest's and the host's signal dispositions and
//!   their lock;
//! - `callback/`: the callback's view ([`Syscall`]) and answer ([`Action`]);
//! - `reissue/`: what a reissued syscall needs (tasks, the signal state,
//!   sigaltstack, masked waits), behind one router, and the guest's view of
//!   a seccomp trap at a reissue stub;
//! - `signals/`: [`install`], host and guest handlers (on the guest's own
//!   alternate stack where it asks), faults, foreign SIGSYS;
//! - `dispatch/`: the SIGSYS path and the direct paths (`sud_entry`,
//!   redirect, rewritten sites), which put it all together;
//! - `freestanding.rs` (feature `freestanding`): `_start`, panic handler,
//!   memory functions, for a static executable without libc;
//! - `asm/x86_64/*.s` through `asm.rs`: every line of assembly.

#![no_std]
#![warn(missing_docs)]
// Examples, the README's included, compile without a warning.
#![doc(test(attr(deny(warnings))))]
// Syscall numbers keep the kernel's names (`__NR_getpid`), in patterns too.
#![allow(non_upper_case_globals)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("sud supports x86-64 Linux only");

mod arm;
mod asm;
mod callback;
mod dispatch;
mod dispositions;
mod error;
#[cfg(feature = "freestanding")]
pub mod freestanding;
mod kernel;
mod region;
mod reissue;
mod rewrite;
mod selector;
mod signals;
mod sys;
mod table;
mod thread;
mod tp;
mod xsave;

pub use arm::{Support, set_syscall_user_dispatch, support};
pub use callback::{Action, Handler, Redirect, Syscall, install_redirect};
pub use dispositions::{GuestAction, guest_action};
pub use error::{Errno, Error};
pub use kernel::{Registers, SigContext, SigInfo, SigStack, UContext};
pub use region::{RegionSymbols, allowed_region, region_symbols};
pub use rewrite::{Policy, Site, SiteForm, forget_sites, rewrite_sites, rewritten_sites};
pub use selector::{SELECTOR, Selector};
pub use signals::install::{install, uninstall};
pub use signals::{HostHandler, adopt_signal, install_host_handler};
pub use sys::{guest, host};
pub use thread::spawn::{GuestThread, SpawnHook, set_spawn_hook};
pub use thread::{Thread, arm, arm_inclusive, disarm};

/// For benchmarks and tests only, not part of the API: switches thread
/// pointers with `arch_prctl` from now on, as on a machine without FSGSBASE
/// (call it before arming).
#[doc(hidden)]
pub fn __thread_pointers_through_arch_prctl() {
    tp::force_arch_prctl();
}

/// For benchmarks and tests only, not part of the API: the direct paths
/// (`sud_entry`, redirect, rewritten sites) keep the extended state with
/// XSAVEC or XSAVE and XRSTOR, as on a machine where moving the registers
/// does not fit (call it before `install`).
#[doc(hidden)]
pub fn __extended_state_through_xsave() {
    xsave::force_instruction();
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
