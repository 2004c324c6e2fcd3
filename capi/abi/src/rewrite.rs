//! Rewriting hot trap sites (experimental): [`sud::rewrite_sites`],
//! [`sud::rewritten_sites`] and [`sud::forget_sites`] for C.

use crate::error::{invalid, status};
use core::ffi::c_int;
use sud::{Policy, SiteForm};

/// `SUD_SITE_MOV`: [`SiteForm::Mov`].
pub const SUD_SITE_MOV: u32 = 0;
/// `SUD_SITE_ISLAND`: [`SiteForm::Island`].
pub const SUD_SITE_ISLAND: u32 = 1;

/// `struct sud_site`: a [`sud::Site`], its form flattened.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SudSite {
    /// The address of the site's `syscall`.
    pub syscall: usize,
    /// Its thunk.
    pub thunk: usize,
    /// The island (`SUD_SITE_ISLAND`), or 0.
    pub island: usize,
    /// `SUD_SITE_MOV` or `SUD_SITE_ISLAND`.
    pub form: u32,
    /// The syscall number the `mov` loads (`SUD_SITE_MOV`), or 0.
    pub number: u32,
}

/// `int sud_rewrite_sites(uintptr_t start, uintptr_t end, uint32_t traps)`:
/// [`sud::rewrite_sites`] for `[start, end)`, each site rewritten at its
/// `traps`th trap (1: the first); `-EINVAL` for 0 traps or an empty range.
#[unsafe(no_mangle)]
pub extern "C" fn sud_rewrite_sites(start: usize, end: usize, traps: u32) -> c_int {
    if traps == 0 || start >= end {
        return invalid();
    }
    let policy = match traps {
        1 => Policy::FirstTrap,
        n => Policy::AfterTraps(n),
    };
    status(sud::rewrite_sites(start..end, policy))
}

/// `size_t sud_rewritten_sites(struct sud_site *sites, size_t capacity)`:
/// the sites rewritten now, the first `capacity` of them stored in `sites`
/// (NULL with 0: only counted); returns how many there are.
///
/// # Safety
/// `sites` points to `capacity` writable `struct sud_site`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sud_rewritten_sites(sites: *mut SudSite, capacity: usize) -> usize {
    let mut count = 0;
    sud::rewritten_sites(|site| {
        if count < capacity && !sites.is_null() {
            let (form, number, island) = match site.form {
                SiteForm::Mov { number } => (SUD_SITE_MOV, number, 0),
                SiteForm::Island { island } => (SUD_SITE_ISLAND, 0, island),
            };
            let flat = SudSite {
                syscall: site.syscall,
                thunk: site.thunk,
                island,
                form,
                number,
            };
            // SAFETY: one of the caller's `capacity` structs.
            unsafe { sites.add(count).write(flat) };
        }
        count += 1;
    });
    count
}

/// `size_t sud_forget_sites(uintptr_t start, uintptr_t end)`:
/// [`sud::forget_sites`]: the sites put back.
#[unsafe(no_mangle)]
pub extern "C" fn sud_forget_sites(start: usize, end: usize) -> usize {
    sud::forget_sites(start..end)
}
