//! The C callback: installing it, its view of a trapped syscall
//! (`struct sud_syscall`), and its answer.
//!
//! sud calls a Rust [`sud::Handler`], a plain `fn`; here that is
//! [`dispatch`], which finds the C callback and its user pointer (one
//! `Hook`), lends it the trapped syscall as an opaque `struct
//! sud_syscall`, and turns the `int` it returns into an [`Action`].  The
//! redirect function goes the same way through [`redirect`].

use crate::error::{invalid, status};
use crate::hook::Hook;
use core::ffi::{c_int, c_void};
use core::ptr::{null, null_mut};
use sud::{Action, Errno, Registers, SigInfo, Syscall, UContext};

/// `SUD_ACTION_EMULATE`: [`Action::Emulate`] with the value given to
/// [`sud_emulate`].
pub const SUD_ACTION_EMULATE: c_int = 1;
/// `SUD_ACTION_REISSUE`: [`Action::Reissue`].
pub const SUD_ACTION_REISSUE: c_int = 2;
/// `SUD_ACTION_DENY`: [`Action::Deny`] with the errno given to [`sud_deny`].
pub const SUD_ACTION_DENY: c_int = 3;
/// `SUD_ACTION_REDIRECT`: [`Action::Redirect`] to the function given to
/// [`sud_install_redirect`].
pub const SUD_ACTION_REDIRECT: c_int = 4;

/// `int (*)(struct sud_syscall *call, void *user)`: the C callback.
pub type SudHandler = unsafe extern "C" fn(call: *mut SudSyscall, user: *mut c_void) -> c_int;
/// `uint64_t (*)(struct sud_syscall *call, void *user)`: the C redirect function.
pub type SudRedirect = unsafe extern "C" fn(call: *mut SudSyscall, user: *mut c_void) -> u64;

/// `struct sud_syscall`, opaque to C: the trapped syscall, lent to the
/// callback for the length of one call, and the answer it is building.
pub struct SudSyscall {
    syscall: *mut Syscall<'static>,
    /// The value of an emulated call.
    value: usize,
    /// The errno of a denied call.
    errno: Errno,
}

impl SudSyscall {
    /// A view of `syscall`, valid while `syscall` is borrowed: the callback
    /// gets a pointer to it for the length of its call.  It answers ENOSYS
    /// until told otherwise.
    fn new(syscall: &mut Syscall<'_>) -> SudSyscall {
        SudSyscall {
            syscall: (syscall as *mut Syscall<'_>).cast(),
            value: Errno::ENOSYS.to_syscall_result(),
            errno: Errno::ENOSYS,
        }
    }
}

/// The syscall behind the view `call`.
///
/// # Safety
/// `call` is the pointer a callback or redirect function was given, and
/// that call has not returned.
unsafe fn trapped<'a>(call: *const SudSyscall) -> &'a mut Syscall<'a> {
    // SAFETY: the caller's promise: the view lives on the stack of
    // `dispatch` or `redirect`, which hold the borrow of the syscall until
    // the C function returns, and use it for nothing else meanwhile.
    unsafe { &mut *(*call).syscall.cast::<Syscall<'a>>() }
}

/// The C callback and its user pointer.
static HANDLER: Hook = Hook::new();
/// The C redirect function and its user pointer.
static REDIRECT: Hook = Hook::new();

/// The [`sud::Handler`] behind every C callback.
pub fn dispatch(syscall: &mut Syscall<'_>) -> Action {
    let (handler, user) = HANDLER.get();
    if handler == 0 {
        return Action::default();
    }
    // SAFETY: HANDLER holds 0 or a `SudHandler` stored by sud_install.
    let handler = unsafe { core::mem::transmute::<usize, SudHandler>(handler) };
    let mut call = SudSyscall::new(syscall);
    // SAFETY: the C callback gets a view that lives until it returns, and
    // the user pointer it was installed with.
    match unsafe { handler(&mut call, user as *mut c_void) } {
        SUD_ACTION_EMULATE => Action::Emulate(call.value),
        SUD_ACTION_REISSUE => Action::Reissue,
        SUD_ACTION_DENY => Action::Deny(call.errno),
        SUD_ACTION_REDIRECT if REDIRECT.get().0 != 0 => Action::Redirect,
        _ => Action::default(),
    }
}

/// The [`sud::Redirect`] behind every C redirect function.
pub fn redirect(syscall: &mut Syscall<'_>) -> usize {
    let (function, user) = REDIRECT.get();
    if function == 0 {
        return Errno::ENOSYS.to_syscall_result();
    }
    // SAFETY: REDIRECT holds 0 or a `SudRedirect` stored by sud_install_redirect.
    let function = unsafe { core::mem::transmute::<usize, SudRedirect>(function) };
    let mut call = SudSyscall::new(syscall);
    // SAFETY: as in dispatch.
    unsafe { function(&mut call, user as *mut c_void) as usize }
}

/// `int sud_install(sud_handler *handler, void *user)`: [`sud::install`]
/// with a C callback, which gets `user` on every call.  Installing again
/// swaps callback and pointer together.
#[unsafe(no_mangle)]
pub extern "C" fn sud_install(handler: Option<SudHandler>, user: *mut c_void) -> c_int {
    let Some(handler) = handler else {
        return invalid();
    };
    HANDLER.set(handler as usize, user as usize);
    status(sud::install(dispatch))
}

/// `int sud_uninstall(void)`: [`sud::uninstall`].
#[unsafe(no_mangle)]
pub extern "C" fn sud_uninstall() -> c_int {
    let result = status(sud::uninstall());
    if result == 0 {
        HANDLER.set(0, 0);
    }
    result
}

/// `void sud_install_redirect(sud_redirect *function, void *user)`:
/// [`sud::install_redirect`] with a C function (NULL: none, and
/// `SUD_ACTION_REDIRECT` denies with ENOSYS).
#[unsafe(no_mangle)]
pub extern "C" fn sud_install_redirect(function: Option<SudRedirect>, user: *mut c_void) {
    REDIRECT.set(function.map_or(0, |f| f as usize), user as usize);
    // It cannot fail (its Result is for symmetry with install).
    let _ = sud::install_redirect(redirect);
}

/// `int sud_emulate(struct sud_syscall *call, uint64_t value)`: the
/// guest's result will be `value`; returns `SUD_ACTION_EMULATE`.
///
/// # Safety
/// `call` is the view the running callback was given.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_emulate(call: *mut SudSyscall, value: u64) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { (*call).value = value as usize };
    SUD_ACTION_EMULATE
}

/// `int sud_deny(struct sud_syscall *call, int errnum)`: the guest's
/// result will be `-errnum` (ENOSYS for a number outside 1..4095); returns
/// `SUD_ACTION_DENY`.
///
/// # Safety
/// As for [`sud_emulate`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_deny(call: *mut SudSyscall, errnum: c_int) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { (*call).errno = Errno::from_raw(errnum).unwrap_or(Errno::ENOSYS) };
    SUD_ACTION_DENY
}

/// `uint32_t sud_syscall_number(const struct sud_syscall *call)`:
/// [`Syscall::number`].
///
/// # Safety
/// `call` is the view the running callback or redirect function was given.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_number(call: *const SudSyscall) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }.number()
}

/// `void sud_syscall_args(const struct sud_syscall *call, uint64_t args[6])`:
/// [`Syscall::args`].
///
/// # Safety
/// As for [`sud_syscall_number`]; `args` has room for six values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_args(call: *const SudSyscall, args: *mut u64) {
    // SAFETY: the caller's promise.
    let values = unsafe { trapped(call) }.args().map(|v| v as u64);
    // SAFETY: the caller's promise: six u64 at `args`.
    unsafe { args.cast::<[u64; 6]>().write_unaligned(values) };
}

/// `uintptr_t sud_syscall_call_addr(const struct sud_syscall *call)`:
/// [`Syscall::call_addr`].
///
/// # Safety
/// As for [`sud_syscall_number`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_call_addr(call: *const SudSyscall) -> usize {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }.call_addr()
}

/// `struct sud_registers *sud_syscall_regs(struct sud_syscall *call)`:
/// [`Syscall::regs_mut`], to read and write.
///
/// # Safety
/// As for [`sud_syscall_number`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_regs(call: *mut SudSyscall) -> *mut Registers {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }.regs_mut()
}

/// `const struct sud_siginfo *sud_syscall_siginfo(const struct sud_syscall *call)`:
/// [`Syscall::siginfo`], or NULL.
///
/// # Safety
/// As for [`sud_syscall_number`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_siginfo(call: *const SudSyscall) -> *const SigInfo {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }
        .siginfo()
        .map_or(null(), |info| info as *const SigInfo)
}

/// `struct sud_ucontext *sud_syscall_ucontext(struct sud_syscall *call)`:
/// [`Syscall::ucontext`], or NULL.
///
/// # Safety
/// As for [`sud_syscall_number`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_ucontext(call: *mut SudSyscall) -> *mut UContext {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }
        .ucontext()
        .map_or(null_mut(), |uc| uc as *mut UContext)
}

/// `volatile uint8_t *sud_syscall_selector(const struct sud_syscall *call)`:
/// [`Syscall::selector`].
///
/// # Safety
/// As for [`sud_syscall_number`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_selector(call: *const SudSyscall) -> *mut u8 {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }.selector().as_ptr()
}

/// `void *sud_syscall_thread_data(const struct sud_syscall *call)`:
/// [`Syscall::thread_data`].
///
/// # Safety
/// As for [`sud_syscall_number`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_thread_data(call: *const SudSyscall) -> *mut c_void {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }.thread_data().cast()
}

/// `void sud_syscall_resume_allowed(struct sud_syscall *call)`:
/// [`Syscall::resume_allowed`].
///
/// # Safety
/// As for [`sud_syscall_number`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_syscall_resume_allowed(call: *mut SudSyscall) {
    // SAFETY: the caller's promise.
    unsafe { trapped(call) }.resume_allowed();
}
