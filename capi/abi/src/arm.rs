//! Support detection, arming the calling thread, and the global selector.

use crate::error::status;
use core::ffi::{c_int, c_uint};
use linux_raw_sys::prctl::{
    PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
    SYSCALL_DISPATCH_FILTER_ALLOW, SYSCALL_DISPATCH_FILTER_BLOCK,
};

/// `SUD_SUPPORT_EXCLUSIVE`: [`sud::Support::exclusive`], in [`sud_support`]'s answer.
pub const SUD_SUPPORT_EXCLUSIVE: c_uint = 1;
/// `SUD_SUPPORT_INCLUSIVE`: [`sud::Support::inclusive`].
pub const SUD_SUPPORT_INCLUSIVE: c_uint = 2;
/// `SUD_SELECTOR_ALLOW`: the selector value that lets syscalls run.
pub const SUD_SELECTOR_ALLOW: u8 = SYSCALL_DISPATCH_FILTER_ALLOW as u8;
/// `SUD_SELECTOR_BLOCK`: the selector value that dispatches them.
pub const SUD_SELECTOR_BLOCK: u8 = SYSCALL_DISPATCH_FILTER_BLOCK as u8;
/// `SUD_DISPATCH_OFF`, an `op` of [`sud_set_syscall_user_dispatch`].
pub const SUD_DISPATCH_OFF: c_uint = PR_SYS_DISPATCH_OFF;
/// `SUD_DISPATCH_EXCLUSIVE_ON`.
pub const SUD_DISPATCH_EXCLUSIVE_ON: c_uint = PR_SYS_DISPATCH_EXCLUSIVE_ON;
/// `SUD_DISPATCH_INCLUSIVE_ON`.
pub const SUD_DISPATCH_INCLUSIVE_ON: c_uint = PR_SYS_DISPATCH_INCLUSIVE_ON;

/// `unsigned sud_support(void)`: [`sud::support`], as `SUD_SUPPORT_*` bits.
#[unsafe(no_mangle)]
pub extern "C" fn sud_support() -> c_uint {
    let support = sud::support();
    let bit = |has: bool, bit: c_uint| if has { bit } else { 0 };
    bit(support.exclusive, SUD_SUPPORT_EXCLUSIVE) | bit(support.inclusive, SUD_SUPPORT_INCLUSIVE)
}

/// `int sud_arm(void)`: [`sud::arm`].
#[unsafe(no_mangle)]
pub extern "C" fn sud_arm() -> c_int {
    status(sud::arm())
}

/// `int sud_arm_inclusive(uintptr_t start, uintptr_t end)`:
/// [`sud::arm_inclusive`]`(start..end)`.
#[unsafe(no_mangle)]
pub extern "C" fn sud_arm_inclusive(start: usize, end: usize) -> c_int {
    status(sud::arm_inclusive(start..end))
}

/// `int sud_disarm(void)`: [`sud::disarm`].
#[unsafe(no_mangle)]
pub extern "C" fn sud_disarm() -> c_int {
    status(sud::disarm())
}

/// `volatile uint8_t *sud_global_selector(void)`: [`sud::SELECTOR`], the
/// byte also exported as `sud_selector`.
#[unsafe(no_mangle)]
pub extern "C" fn sud_global_selector() -> *mut u8 {
    sud::SELECTOR.as_ptr()
}

/// `int sud_set_syscall_user_dispatch(unsigned op, uintptr_t offset,
/// uintptr_t len, const volatile uint8_t *selector)`:
/// [`sud::set_syscall_user_dispatch`].
///
/// # Safety
/// As for [`sud::set_syscall_user_dispatch`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_set_syscall_user_dispatch(
    op: c_uint,
    offset: usize,
    len: usize,
    selector: *const u8,
) -> c_int {
    // SAFETY: the caller's promise.
    status(unsafe { sud::set_syscall_user_dispatch(op, offset, len, selector) })
}
