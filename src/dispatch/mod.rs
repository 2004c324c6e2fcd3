//! The top of the runtime: the Rust halves of the entries the kernel and
//! generated code come in by, which put every layer below together.
//!
//! - [`signal`]: a syscall the kernel trapped (`sud_sigsys_entry`);
//! - [`direct`]: `sud_entry` and the redirect stubs, outside signal context;
//! - [`outcome`]: what the callback's decision comes to, shared by both.

pub(crate) mod direct;
pub(crate) mod outcome;
pub(crate) mod signal;
pub(crate) mod site;
