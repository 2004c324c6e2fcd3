//! Profiling aid (not the demo): calls `sud_entry` N times, unarmed, with a
//! callback that emulates getppid, so that an instruction counter such as
//! `valgrind --tool=callgrind` sees sud's user-space path alone.
//!
//!     cargo build --release --example entry_profile
//!     valgrind --tool=callgrind target/release/examples/entry_profile 100000

#![allow(non_upper_case_globals)]

use linux_raw_sys::general::__NR_getppid;
use sud::{Action, Syscall};

fn emulate(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        Action::Emulate(4242)
    } else {
        Action::default()
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    sud::install(emulate).expect("install");
    let entry = sud::region_symbols().entry;
    for _ in 0..n {
        let result: usize;
        // SAFETY: sud_entry takes the syscall's registers and R11 (0: the
        // global selector) and clobbers RCX and R11 only.
        unsafe {
            core::arch::asm!("call {entry}", entry = in(reg) entry,
                inlateout("rax") __NR_getppid as usize => result, inlateout("r11") 0usize => _,
                lateout("rcx") _);
        }
        assert_eq!(result, 4242);
    }
    println!("{n} calls through sud_entry");
}
