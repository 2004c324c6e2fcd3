//! The kernel's own tests of Syscall User Dispatch,
//! tools/testing/selftests/syscall_user_dispatch/sud_test.c (Linux 6.17),
//! ported case by case to sud's API, under their original names.  Each
//! runs in a child process of its own, as under the kselftest harness.

#![no_std]
#![no_main]
#![allow(non_upper_case_globals)]

use core::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use linux_raw_sys::general::{__NR_sysinfo, SIGSYS, SYS_USER_DISPATCH};
use linux_raw_sys::prctl::{
    PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
    SYSCALL_DISPATCH_FILTER_ALLOW, SYSCALL_DISPATCH_FILTER_BLOCK,
};
use sud::{Action, Errno, Error, SELECTOR, Syscall, guest, set_syscall_user_dispatch};
use sud_freestanding::{case, check, check_eq, run, say};

/// A syscall number Linux does not have (`__NR_syscalls + 1` in the C test).
const MAGIC_SYSCALL_1: u32 = 0xff00;

#[unsafe(no_mangle)]
fn test_main() -> i32 {
    run(&[
        case!(dispatch_trigger_sigsys, signal SIGSYS),
        case!(bad_prctl_param),
        case!(dispatch_and_return),
        case!(bad_selector, signal SIGSYS),
        case!(disable_dispatch),
        case!(direct_dispatch_range),
        case!(dispatch_range),
    ])
}

/// A selector byte the test writes directly, as the C test does: `set`
/// stores any value, 0 or 1 or (for bad_selector) neither.
struct RawSelector(AtomicU8);

impl RawSelector {
    const fn new() -> Self {
        RawSelector(AtomicU8::new(SYSCALL_DISPATCH_FILTER_ALLOW as u8))
    }
    fn set(&self, value: u32) {
        self.0.store(value as u8, Ordering::SeqCst);
    }
    fn ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
}

/// `struct sysinfo` is 112 bytes on x86-64.
fn sysinfo() -> Result<usize, Errno> {
    let mut info = [0u64; 14];
    // SAFETY: sysinfo writes 112 bytes into a live buffer.
    unsafe { guest::syscall1(__NR_sysinfo, info.as_mut_ptr() as usize) }
}

/// prctl(PR_SET_SYSCALL_USER_DISPATCH, ...) through sud's typed wrapper.
fn prctl(op: u32, offset: usize, len: usize, selector: *const u8) -> Result<(), Error> {
    // SAFETY: the cases choose their configurations knowingly, as the C test does.
    unsafe { set_syscall_user_dispatch(op, offset, len, selector) }
}

/// TEST_SIGNAL(dispatch_trigger_sigsys, SIGSYS): an armed thread whose
/// selector says BLOCK, with no handler, dies of SIGSYS.
fn dispatch_trigger_sigsys() {
    let sel = RawSelector::new();
    check_eq!(sysinfo(), Ok(0));
    check_eq!(prctl(PR_SYS_DISPATCH_EXCLUSIVE_ON, 0, 0, sel.ptr()), Ok(()));
    sel.set(SYSCALL_DISPATCH_FILTER_BLOCK);
    let _ = sysinfo();
    sel.set(SYSCALL_DISPATCH_FILTER_ALLOW);
    say!("  unreachable: sysinfo was not dispatched");
}

/// TEST(bad_prctl_param): every row of the C test, each refused with the
/// errno the kernel gives, or accepted.
fn bad_prctl_param() {
    let sel = RawSelector::new();
    let s = sel.ptr();
    let bad = usize::MAX as *const u8; // (void *) -1
    let einval = Err(Error::Os(Errno::EINVAL));
    let efault = Err(Error::Os(Errno::EFAULT));
    // Invalid op.
    check_eq!(prctl(u32::MAX, 0, 0, s), einval);
    // PR_SYS_DISPATCH_OFF: offset != 0, len != 0, sel != NULL, then valid.
    let op = PR_SYS_DISPATCH_OFF;
    check_eq!(prctl(op, 0x1, 0x0, core::ptr::null()), einval);
    check_eq!(prctl(op, 0x0, 0xff, core::ptr::null()), einval);
    check_eq!(prctl(op, 0x0, 0x0, s), einval);
    check_eq!(prctl(op, 0x0, 0x0, core::ptr::null()), Ok(()));
    // PR_SYS_DISPATCH_EXCLUSIVE_ON: region bad (offset > 0 && len == 0).
    let op = PR_SYS_DISPATCH_EXCLUSIVE_ON;
    check_eq!(prctl(op, 0x1, 0x0, s), einval);
    check_eq!(prctl(op, usize::MAX, 0x0, s), einval);
    // Invalid selector.
    check_eq!(prctl(op, 0x0, 0x1, bad), efault);
    // Dispatcher range overflows unsigned long.
    check_eq!(prctl(op, 1, usize::MAX, s), einval);
    // Allowed range overflows unsigned long.
    check_eq!(prctl(op, usize::MAX, 0x1, s), einval);
    // PR_SYS_DISPATCH_INCLUSIVE_ON: 0 len, wrap-around, valid, bad selector.
    let op = PR_SYS_DISPATCH_INCLUSIVE_ON;
    check_eq!(prctl(op, 1, 0, core::ptr::null()), einval);
    check_eq!(prctl(op, usize::MAX, 2, core::ptr::null()), einval);
    check_eq!(prctl(op, 2, 3, core::ptr::null()), Ok(()));
    check_eq!(prctl(op, 2, 3, bad), efault);
}

// The handler's observations, global as in the C test.
static nr_syscalls_emulated: AtomicI32 = AtomicI32::new(0);
static si_code: AtomicI32 = AtomicI32::new(0);
static si_errno: AtomicI32 = AtomicI32::new(-1);
static syscall_addr: AtomicUsize = AtomicUsize::new(0);

/// handle_sigsys: counts MAGIC_SYSCALL_1, notes si_code, si_errno and the
/// call address, and returns the syscall number (the C handler leaves RAX,
/// which holds the number, alone).  Like the C handler, it leaves the
/// selector at ALLOW "in preparation for sigreturn".
fn handle_sigsys(call: &mut Syscall) -> Action {
    let info = *call.siginfo().expect("a trapped syscall has its siginfo");
    si_code.store(info.si_code, Ordering::SeqCst);
    si_errno.store(info.si_errno, Ordering::SeqCst);
    syscall_addr.store(call.call_addr(), Ordering::SeqCst);
    if info.si_syscall == MAGIC_SYSCALL_1 as i32 {
        nr_syscalls_emulated.fetch_add(1, Ordering::SeqCst);
    }
    call.resume_allowed();
    Action::Emulate(call.number() as usize)
}

/// `syscall(MAGIC_SYSCALL_1)` from one fixed instruction, as libc's
/// `syscall()` is in the C test: dispatch_range aims ranges at it.
#[inline(never)]
fn magic_syscall() -> Result<usize, Errno> {
    // SAFETY: a syscall the kernel does not have; it only returns ENOSYS.
    unsafe { guest::syscall0(MAGIC_SYSCALL_1) }
}

/// TEST(dispatch_and_return): a syscall is dispatched or not by the selector,
/// and the handler's answer is its result.
fn dispatch_and_return() {
    check_eq!(sud::install(handle_sigsys), Ok(()));
    SELECTOR.allow();
    check_eq!(sud::arm(), Ok(()));
    // MAGIC_SYSCALL_1 doesn't exist.
    SELECTOR.allow();
    check_eq!(magic_syscall(), Err(Errno::ENOSYS));
    // MAGIC_SYSCALL_1 should be emulated.
    nr_syscalls_emulated.store(0, Ordering::SeqCst);
    // SAFETY: the only syscall until allow() is the one meant to be emulated.
    unsafe { SELECTOR.block() };
    let ret = magic_syscall();
    SELECTOR.allow();
    check_eq!(ret, Ok(MAGIC_SYSCALL_1 as usize));
    check_eq!(nr_syscalls_emulated.load(Ordering::SeqCst), 1);
    check_eq!(si_code.load(Ordering::SeqCst), SYS_USER_DISPATCH as i32);
    check_eq!(si_errno.load(Ordering::SeqCst), 0);
}

/// TEST_SIGNAL(bad_selector, SIGSYS): a selector holding neither 0 nor 1
/// kills the thread with a SIGSYS no handler can catch.
fn bad_selector() {
    static glob_sel: RawSelector = RawSelector::new();
    check_eq!(sud::install(handle_sigsys), Ok(()));
    let region = sud::allowed_region();
    check_eq!(
        prctl(
            PR_SYS_DISPATCH_EXCLUSIVE_ON,
            region.start,
            region.len(),
            glob_sel.ptr()
        ),
        Ok(())
    );
    glob_sel.set(u32::MAX); // -1
    let _ = sysinfo();
    glob_sel.set(SYSCALL_DISPATCH_FILTER_ALLOW);
    say!("  unreachable: the bad selector did not kill the thread");
}

/// TEST(disable_dispatch): PR_SYS_DISPATCH_OFF turns dispatch off, whatever
/// the selector then says.
fn disable_dispatch() {
    let sel = RawSelector::new();
    check_eq!(prctl(PR_SYS_DISPATCH_EXCLUSIVE_ON, 0, 0, sel.ptr()), Ok(()));
    sel.set(SYSCALL_DISPATCH_FILTER_ALLOW);
    check_eq!(sud::disarm(), Ok(()));
    // Shouldn't have any effect...
    sel.set(SYSCALL_DISPATCH_FILTER_BLOCK);
    let ret = sysinfo();
    sel.set(SYSCALL_DISPATCH_FILTER_ALLOW);
    check_eq!(ret, Ok(0));
}

/// TEST(direct_dispatch_range): a syscall inside the exempt range runs
/// whatever the selector says (the whole address space, here).
fn direct_dispatch_range() {
    let sel = RawSelector::new();
    check_eq!(
        prctl(PR_SYS_DISPATCH_EXCLUSIVE_ON, 0, usize::MAX, sel.ptr()),
        Ok(())
    );
    sel.set(SYSCALL_DISPATCH_FILTER_BLOCK);
    let ret = sysinfo();
    sel.set(SYSCALL_DISPATCH_FILTER_ALLOW);
    check_eq!(ret, Ok(0));
}

/// test_range(): arm with (op, off, size) and check whether MAGIC_SYSCALL_1
/// is dispatched.  The global selector is the one sud's dispatcher flips, so
/// it is the one armed here.
fn test_range(op: u32, off: usize, size: usize, dispatch: bool) {
    nr_syscalls_emulated.store(0, Ordering::SeqCst);
    SELECTOR.allow();
    check_eq!(prctl(op, off, size, SELECTOR.as_ptr()), Ok(()));
    // SAFETY: only magic_syscall runs until allow().
    unsafe { SELECTOR.block() };
    let ret = magic_syscall();
    SELECTOR.allow();
    let count = nr_syscalls_emulated.load(Ordering::SeqCst);
    if dispatch {
        check!(
            ret == Ok(MAGIC_SYSCALL_1 as usize) && count == 1,
            "op {op} [{off:#x}, +{size}) should dispatch: {ret:?}, {count} emulated"
        );
    } else {
        check!(
            ret == Err(Errno::ENOSYS) && count == 0,
            "op {op} [{off:#x}, +{size}) should not dispatch: {ret:?}, {count} emulated"
        );
    }
}

/// TEST(dispatch_range): the range is respected at both ends, in both modes;
/// the kernel tests the address after the `syscall` instruction.
fn dispatch_range() {
    check_eq!(sud::install(handle_sigsys), Ok(()));
    test_range(PR_SYS_DISPATCH_EXCLUSIVE_ON, 0, 0, true);
    let addr = syscall_addr.load(Ordering::SeqCst);
    check!(addr != 0, "the first dispatch reported no call address");
    test_range(PR_SYS_DISPATCH_EXCLUSIVE_ON, addr, 1, false);
    test_range(PR_SYS_DISPATCH_EXCLUSIVE_ON, addr - 100, 200, false);
    test_range(PR_SYS_DISPATCH_EXCLUSIVE_ON, addr + 1, 100, true);
    test_range(PR_SYS_DISPATCH_EXCLUSIVE_ON, addr - 100, 100, true);
    test_range(PR_SYS_DISPATCH_INCLUSIVE_ON, addr, 1, true);
    test_range(PR_SYS_DISPATCH_INCLUSIVE_ON, addr - 1, 1, false);
    test_range(PR_SYS_DISPATCH_INCLUSIVE_ON, addr + 1, 1, false);
    SELECTOR.allow();
}
