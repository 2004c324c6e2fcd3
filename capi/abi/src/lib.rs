//! The C interface of sud, as Rust: every function `capi/include/sud.h`
//! declares (exported under its C name) and every struct it shares with C.
//!
//! The C library (`libsud_capi.a`, `libsud_capi.so`) is this crate plus a
//! panic handler, built by the `sud-capi` crate.  Rust code links this crate
//! directly when it wants the C interface itself: sud's bench compares a C
//! callback with a Rust one through it, and the header's layout test reads
//! its constants and structs.
//!
//! Conventions, the same in every module:
//! - a function that can fail returns an `int`: 0, a negative errno
//!   ([`sud::Error::Os`]), or one of the `SUD_ERR_*` codes ([`error`]);
//! - a pointer argument the C caller passes is checked for NULL where NULL
//!   has no meaning, and the function then fails with `-EINVAL`;
//! - the C callback and its user pointer, and the redirect function and
//!   its, are kept as one pair each (`hook.rs`) behind the Rust callbacks that
//!   sud calls ([`call`]).
//!
//! Everything else is sud's own API, passed through: the kernel structs
//! (`Registers`, `SigInfo`, `UContext`) are sud's `#[repr(C)]` types, and
//! a host signal handler is a [`sud::HostHandler`] as it is.

#![no_std]

pub mod arm;
pub mod call;
pub mod error;
mod hook;
mod page;
pub mod region;
pub mod rewrite;
pub mod signals;
pub mod spawn;
pub mod syscalls;
pub mod thread;

pub use arm::*;
pub use call::*;
pub use error::*;
pub use region::*;
pub use rewrite::*;
pub use signals::*;
pub use spawn::*;
pub use syscalls::*;
pub use thread::*;
