//! The allowed region: its bounds and its entry points.

/// `struct sud_range`: the half-open address range `[start, end)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SudRange {
    pub start: usize,
    pub end: usize,
}

/// `struct sud_symbols`: [`sud::RegionSymbols`], field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SudSymbols {
    pub syscall_c: [usize; 7],
    pub syscall: usize,
    pub reissue: usize,
    pub reissue_sigreturn: usize,
    pub restorer: usize,
    pub entry: usize,
    pub fork: usize,
}

/// `struct sud_range sud_allowed_region(void)`: [`sud::allowed_region`].
#[unsafe(no_mangle)]
pub extern "C" fn sud_allowed_region() -> SudRange {
    let region = sud::allowed_region();
    SudRange {
        start: region.start,
        end: region.end,
    }
}

/// `struct sud_symbols sud_region_symbols(void)`: [`sud::region_symbols`].
#[unsafe(no_mangle)]
pub extern "C" fn sud_region_symbols() -> SudSymbols {
    let sud::RegionSymbols {
        syscall_c,
        syscall,
        reissue,
        reissue_sigreturn,
        restorer,
        entry,
        fork,
    } = sud::region_symbols();
    SudSymbols {
        syscall_c,
        syscall,
        reissue,
        reissue_sigreturn,
        restorer,
        entry,
        fork,
    }
}
