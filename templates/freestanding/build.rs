// No C runtime (`_start` is sud's), no libc, static, not position
// independent, and sud's layout for its allowed region (`sud.ld`, put on
// the search path by sud's build script).  Here rather than in RUSTFLAGS,
// which would reach build scripts too.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,-Tsud.ld", // GNU ld and lld; with gold or mold, leave this line out
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
