//! `struct sud_thread`: a [`sud::Thread`] that C holds by pointer.
//!
//! A `Thread` is a small value that Rust keeps on the stack; C gets it in
//! a page of its own, mapped by [`sud_thread_new`] and unmapped by
//! [`sud_thread_free`] (sud has no allocator and C's may not exist).  The
//! page is nothing next to what the thread's state already takes (its
//! alternate signal stack alone is 120 KiB).

use crate::error::{code, invalid, status};
use crate::page::{self, PAGE};
use core::ffi::{c_int, c_void};
use static_assertions::const_assert;
use sud::Thread;

/// `struct sud_thread`, opaque to C.
#[repr(transparent)]
pub struct SudThread(Thread);

const_assert!(size_of::<SudThread>() <= PAGE && align_of::<SudThread>() <= PAGE);

/// `int sud_thread_new(struct sud_thread **thread)`: [`Thread::new`] for the
/// calling thread; `*thread` is set on success.
///
/// # Safety
/// `thread` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_new(thread: *mut *mut SudThread) -> c_int {
    if thread.is_null() {
        return invalid();
    }
    let page = match page::map::<SudThread>() {
        Ok(page) => page,
        Err(errno) => return -errno.raw(),
    };
    match Thread::new() {
        Ok(state) => {
            // SAFETY: the page is ours, writable, and large and aligned
            // enough; `thread` is writable (the caller's promise).
            unsafe {
                page.write(SudThread(state));
                thread.write(page);
            }
            0
        }
        Err(error) => {
            // SAFETY: the page mapped above, which holds nothing.
            unsafe { page::unmap(page) };
            code(error)
        }
    }
}

/// The `Thread` behind `thread`.
///
/// # Safety
/// `thread` came from [`sud_thread_new`] and was not freed.
pub(crate) unsafe fn thread<'a>(thread: *const SudThread) -> &'a Thread {
    // SAFETY: the caller's promise.
    unsafe { &(*thread).0 }
}

/// `void sud_thread_free(struct sud_thread *thread)`: drops the
/// [`Thread`] (disarms the calling thread, puts its previous alternate stack
/// back, releases the state) and frees `thread`.  NULL does nothing.
///
/// # Safety
/// `thread` is NULL or came from [`sud_thread_new`] on this very thread,
/// and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_free(thread: *mut SudThread) {
    if thread.is_null() {
        return;
    }
    // SAFETY: the caller's promise: a live SudThread, used by no one after.
    unsafe {
        thread.drop_in_place();
        page::unmap(thread);
    }
}

/// `int sud_thread_arm(struct sud_thread *thread)`: [`Thread::arm`].
///
/// # Safety
/// `thread` came from [`sud_thread_new`] on this thread and was not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_arm(thread: *mut SudThread) -> c_int {
    // SAFETY: the caller's promise.
    status(unsafe { self::thread(thread) }.arm())
}

/// `int sud_thread_arm_inclusive(struct sud_thread *thread, uintptr_t start,
/// uintptr_t end)`: [`Thread::arm_inclusive`]`(start..end)`.
///
/// # Safety
/// As for [`sud_thread_arm`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_arm_inclusive(
    thread: *mut SudThread,
    start: usize,
    end: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    status(unsafe { self::thread(thread) }.arm_inclusive(start..end))
}

/// `int sud_thread_disarm(struct sud_thread *thread)`: [`Thread::disarm`].
///
/// # Safety
/// As for [`sud_thread_arm`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_disarm(thread: *mut SudThread) -> c_int {
    // SAFETY: the caller's promise.
    status(unsafe { self::thread(thread) }.disarm())
}

/// `volatile uint8_t *sud_thread_selector(const struct sud_thread *thread)`:
/// [`Thread::selector`].
///
/// # Safety
/// `thread` came from [`sud_thread_new`] and was not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_selector(thread: *const SudThread) -> *mut u8 {
    // SAFETY: the caller's promise.
    unsafe { self::thread(thread) }.selector().as_ptr()
}

/// `void sud_thread_set_data(struct sud_thread *thread, void *data)`:
/// [`Thread::set_data`].
///
/// # Safety
/// As for [`sud_thread_selector`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_set_data(thread: *mut SudThread, data: *mut c_void) {
    // SAFETY: the caller's promise.
    unsafe { self::thread(thread) }.set_data(data.cast());
}

/// `void sud_thread_set_redirect_stack(struct sud_thread *thread, void *base,
/// size_t len)`: [`Thread::set_redirect_stack`].
///
/// # Safety
/// As for [`sud_thread_selector`], and as for [`Thread::set_redirect_stack`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_thread_set_redirect_stack(
    thread: *mut SudThread,
    base: *mut c_void,
    len: usize,
) {
    // SAFETY: the caller's promise, for both.
    unsafe { self::thread(thread).set_redirect_stack(base.cast(), len) };
}
