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
//! use linux_raw_sys::general::{__NR_getppid, __NR_write};
//! use sud::{Action, Syscall};
//!
//! fn on_syscall(call: &mut Syscall) -> Action {
//!     match call.number() {
//!         __NR_getppid => Action::Emulate(4242),
//!         __NR_write => Action::Reissue,
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
//! sud::install_redirect(read_from_my_vfs);
//! # Ok::<(), sud::Error>(())
//! ```
//!
//! **Threads**: for several guest threads, give each a selector of its own
//! with [`Thread`]; the tasks guest code creates (clone, clone3, fork, vfork)
//! are armed again before they run a guest instruction.  While armed, SIGSYS
//! stays deliverable whatever the guest does with masks and dispositions
//! (see `src/signals.rs`), and [`install_host_handler`] runs host signal
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
//! # }
//! ```
//!
//! Where things are:
//! - the allowed region and its symbols: [`allowed_region`] (`src/region.rs`,
//!   `asm/x86_64/{trampolines,reissue,tasks,restorer}.s`);
//! - the selector and arming: `src/arm.rs`; per-thread state: `src/thread.rs`;
//! - the SIGSYS path: `asm/x86_64/sigsys_entry.s` -> `src/sigsys.rs`, with
//!   `src/tasks.rs` and `src/signals.rs` for what a reissue must take care of;
//! - the kernel structs it reads: `src/kernel.rs`.

#![no_std]
// Syscall numbers keep the kernel's names (`__NR_getpid`), in patterns too.
#![allow(non_upper_case_globals)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("sud supports x86-64 Linux only");

mod arm;
mod asm;
mod error;
mod kernel;
mod region;
mod signals;
mod sigsys;
mod syscalls;
mod tasks;
mod thread;

pub use arm::{
    SELECTOR, Selector, Support, arm, arm_inclusive, disarm, set_syscall_user_dispatch, support,
};
pub use error::{Errno, Error};
pub use kernel::{Registers, SigContext, SigInfo, UContext};
pub use region::{RegionSymbols, allowed_region, region_symbols};
pub use signals::{HostHandler, adopt_signal, guest_action, install_host_handler};
pub use sigsys::{Action, Handler, Redirect, Syscall, install, install_redirect, uninstall};
pub use syscalls::{guest, host};
pub use thread::Thread;
