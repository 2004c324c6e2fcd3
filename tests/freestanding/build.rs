//! Link every test executable freestanding: no C runtime, no libc, static,
//! not position independent, with sud's linker script (found on the search
//! path that sud's own build script sets).
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,-Tsud.ld"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
