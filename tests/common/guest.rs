//! The tests' dispatch policy and the guest side of it: getppid emulated
//! (answered `FAKE_PPID`), everything else reissued; a thread armed with a
//! selector of its own; guest code run with that selector at BLOCK; a
//! getppid made as guest code (trapped when blocked) or as host code.

use linux_raw_sys::general::__NR_getppid;
use std::sync::atomic::{AtomicU64, Ordering};
use sud::{Action, Errno, Syscall, Thread, guest};

/// What emulated getppid answers: a trapped call is told this.
pub const FAKE_PPID: usize = 7777;

/// The selector of the thread whose getppid was last trapped.
pub static LAST_GETPPID_SELECTOR: AtomicU64 = AtomicU64::new(0);

/// The tests' policy: getppid emulated, everything else run natively.
pub fn emulate_getppid(call: &mut Syscall) -> Action {
    if call.number() == __NR_getppid {
        LAST_GETPPID_SELECTOR.store(call.selector().as_ptr() as u64, Ordering::SeqCst);
        Action::Emulate(FAKE_PPID)
    } else {
        Action::Reissue
    }
}

/// Sets up this thread with its own selector and arms it.
pub fn armed_thread() -> Thread {
    let thread = Thread::new().expect("Thread::new");
    thread.arm().expect("arm");
    thread
}

/// Runs `f` with `thread`'s selector at BLOCK.
pub fn blocked<T>(thread: &Thread, f: impl FnOnce() -> T) -> T {
    // SAFETY: the tests' guest code only makes syscalls meant for the callback.
    unsafe { thread.selector().block() };
    let out = f();
    thread.selector().allow();
    out
}

/// getppid, made as guest code: trapped while the selector says BLOCK.
pub fn trapped_getppid() -> Result<usize, Errno> {
    // SAFETY: getppid has no arguments or effects.
    unsafe { guest::syscall0(__NR_getppid) }
}

/// getppid through libc, as host code makes it: native while the selector
/// says ALLOW.
pub fn native_getppid() -> usize {
    // SAFETY: getppid has no effect.
    unsafe { libc::getppid() as usize }
}

/// The current stack pointer.
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reads RSP.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp) };
    rsp
}

/// A guest thread area: a pattern no host code writes, with FS pointed at
/// its middle (a libc finds its thread-locals around there).
pub struct GuestTls {
    area: Vec<u64>,
}

impl GuestTls {
    pub const PATTERN: u64 = 0xa5a5_5a5a_a5a5_5a5a;

    pub fn new() -> GuestTls {
        GuestTls {
            area: vec![Self::PATTERN; 8192],
        }
    }

    pub fn fs(&self) -> u64 {
        self.area.as_ptr() as u64 + 4096 * 8
    }

    pub fn untouched(&self) -> bool {
        self.area.iter().all(|&word| word == Self::PATTERN)
    }
}
