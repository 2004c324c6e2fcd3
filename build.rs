//! Puts the crate's linker script on the linker's search path as `sud.ld`, so a
//! freestanding static executable adds exactly one flag: `-C link-arg=-Tsud.ld`.
//! Nothing else needs it: the allowed region's bounds come from the
//! `__start_sud_allowed` / `__stop_sud_allowed` symbols every ELF linker defines.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("link.ld", out.join("sud.ld")).expect("copy link.ld into OUT_DIR");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
