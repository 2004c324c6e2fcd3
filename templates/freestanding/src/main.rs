#![no_std]
#![no_main]

use core::fmt::Write;
use linux_raw_sys::general as nr;
use sud::freestanding::{Startup, Stdout};
use sud::{Action, Syscall};

sud::freestanding::entry!(main);

fn on_syscall(call: &mut Syscall) -> Action {
    match call.number() {
        nr::__NR_getppid => Action::Emulate(4242),
        _ => Action::Reissue,
    }
}

fn main(startup: Startup) -> i32 {
    sud::install(on_syscall).expect("install");
    sud::arm().expect("arm");
    // SAFETY: until allow(), only syscalls that on_syscall answers are made.
    let ppid = unsafe {
        sud::SELECTOR.block();
        let ppid = sud::guest::syscall0(nr::__NR_getppid);
        sud::SELECTOR.allow();
        ppid
    };
    let _ = writeln!(Stdout, "{} arguments; getppid() = {ppid:?}", startup.argc());
    0
}
