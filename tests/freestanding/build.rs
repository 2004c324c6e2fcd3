//! Link every test executable freestanding: no C runtime, no libc, static,
//! not position independent, with sud's linker script (found on the search
//! path that sud's own build script sets), unless SUD_WITHOUT_LINK_SCRIPT is
//! set: then with the linker's default layout, to show that sud needs no
//! script at all.
fn main() {
    let mut args = vec!["-nostartfiles", "-nostdlib", "-static", "-no-pie"];
    if std::env::var_os("SUD_WITHOUT_LINK_SCRIPT").is_none() {
        args.push("-Wl,-Tsud.ld");
    }
    for arg in args {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-env-changed=SUD_WITHOUT_LINK_SCRIPT");
    println!("cargo:rerun-if-changed=build.rs");
}
