//! `struct sud_guest_thread` and the spawn hook: host threads for the
//! threads the guest creates, from C ([`sud::set_spawn_hook`]).
//!
//! sud hands each new guest thread (a clone or clone3 that makes a thread
//! like a pthread, on a stack of its own) to the C hook, in a page of its
//! own ([`page`]); the hook makes a host thread (a pthread) that runs it
//! with [`sud_thread_run_guest`], which frees the page.  A C function and
//! its user pointer are kept as one pair ([`Hook`]), as the callback's are.

use crate::error::{code, invalid};
use crate::hook::Hook;
use crate::page::{self, PAGE};
use crate::thread::{SudThread, thread};
use core::ffi::{c_int, c_void};
use static_assertions::const_assert;
use sud::{Errno, GuestThread, SpawnHook};

/// `struct sud_guest_thread`, opaque to C: a guest thread about to start.
#[repr(transparent)]
pub struct SudGuestThread(GuestThread);

const_assert!(size_of::<SudGuestThread>() <= PAGE && align_of::<SudGuestThread>() <= PAGE);

/// `sud_spawn_hook`: `int (*)(struct sud_guest_thread *thread, void *user)`.
/// Returns 0 when it took `thread` (to run with [`sud_thread_run_guest`] or
/// free with [`sud_guest_thread_free`]), or a negative errno, the guest's
/// clone's, when it did not (sud frees `thread`).
pub type SudSpawnHook =
    unsafe extern "C" fn(thread: *mut SudGuestThread, user: *mut c_void) -> c_int;

/// The C hook and its user pointer (function 0: none).
static SPAWN: Hook = Hook::new();

/// `void sud_set_spawn_hook(sud_spawn_hook hook, void *user)`: runs each
/// thread the guest creates on a host thread `hook` makes (`hook` NULL:
/// none, the default: guest threads are made by the guest's own clone).
/// As for the callback, a guest thread being created meanwhile sees the
/// old pair or the new one; one created while the hook is being removed
/// may see neither, and its clone then fails with EAGAIN.
#[unsafe(no_mangle)]
pub extern "C" fn sud_set_spawn_hook(hook: Option<SudSpawnHook>, user: *mut c_void) {
    match hook {
        Some(function) => {
            SPAWN.set(function as usize, user as usize);
            sud::set_spawn_hook(Some(through_c as SpawnHook));
        }
        None => {
            sud::set_spawn_hook(None);
            SPAWN.set(0, 0);
        }
    }
}

/// The Rust hook sud calls: the guest thread into a page, then to C.
fn through_c(start: GuestThread) -> Result<(), Errno> {
    let (function, user) = SPAWN.get();
    if function == 0 {
        // The hook is being removed (see sud_set_spawn_hook).
        return Err(Errno::EAGAIN);
    }
    // Dropping `start` on an error tells its creator, which then fails.
    let page = page::map::<SudGuestThread>()?;
    // SAFETY: SPAWN holds 0 or a SudSpawnHook, and not 0 here.
    let function = unsafe { core::mem::transmute::<usize, SudSpawnHook>(function) };
    // SAFETY: a fresh page, large and aligned enough (asserted above).
    unsafe { page.write(SudGuestThread(start)) };
    // SAFETY: the C hook's contract: it takes the page or leaves it alone.
    let taken = unsafe { function(page, user as *mut c_void) };
    if taken == 0 {
        return Ok(());
    }
    // SAFETY: the hook did not take it: ours to drop (which tells the
    // creator) and give back.
    unsafe { free(page) };
    // Not an errno: the clone fails as one whose thread never started.
    Err(taken
        .checked_neg()
        .and_then(Errno::from_raw)
        .unwrap_or(Errno::EAGAIN))
}

/// Drops the guest thread in `thread` and gives back its page.
///
/// # Safety
/// `thread` came from sud's spawn hook and nothing uses it any more.
unsafe fn free(thread: *mut SudGuestThread) {
    // SAFETY: the caller's promise.
    unsafe {
        thread.drop_in_place();
        page::unmap(thread);
    }
}

/// `int sud_thread_run_guest(struct sud_thread *thread, struct
/// sud_guest_thread *guest, int *exit_status)`: [`Thread::run_guest`](sud::Thread::run_guest)
/// on the calling thread, whose `thread` the host made for it.  Takes
/// `guest` (freed on return, whatever the result); on success
/// `*exit_status` (NULL: not wanted) is the guest thread's exit status.
///
/// # Safety
/// `thread` came from [`sud_thread_new`](crate::sud_thread_new) on this
/// thread and was not freed; `guest` is NULL or came from the spawn hook
/// and was not run or freed; `exit_status` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_run_guest(
    thread: *mut SudThread,
    guest: *mut SudGuestThread,
    exit_status: *mut c_int,
) -> c_int {
    if guest.is_null() {
        return invalid();
    }
    // SAFETY: the caller's promise: a live guest thread, used by no one
    // after; moved out, then its page is given back.
    let start = unsafe {
        let start = guest.read().0;
        page::unmap(guest);
        start
    };
    if thread.is_null() {
        // Dropped: its creator's clone fails.
        drop(start);
        return invalid();
    }
    // SAFETY: the caller's promise.
    match unsafe { self::thread(thread) }.run_guest(start) {
        Ok(status) => {
            // SAFETY: NULL or writable, the caller's promise.
            if let Some(exit_status) = unsafe { exit_status.as_mut() } {
                *exit_status = status;
            }
            0
        }
        Err(error) => code(error),
    }
}

/// `void sud_guest_thread_free(struct sud_guest_thread *guest)`: frees a
/// guest thread the hook took and will not run; its creator's clone fails
/// with EAGAIN.  NULL does nothing.
///
/// # Safety
/// `guest` is NULL or came from the spawn hook and was not run or freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_guest_thread_free(guest: *mut SudGuestThread) {
    if !guest.is_null() {
        // SAFETY: the caller's promise.
        unsafe { free(guest) };
    }
}

/// `void *sud_guest_thread_data(const struct sud_guest_thread *guest)`:
/// the pointer its creator's thread was given with `sud_thread_set_data()`
/// ([`GuestThread::data`]); the new thread starts with the same.
///
/// # Safety
/// `guest` came from the spawn hook and was not run or freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_guest_thread_data(guest: *const SudGuestThread) -> *mut c_void {
    // SAFETY: the caller's promise.
    unsafe { (*guest).0.data().cast() }
}
