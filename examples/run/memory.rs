//! Memory as the loader and the program break use it: mappings made with
//! sud's never-trapped syscalls (so the same calls serve before arming and
//! inside the callback), the host's own mappings as `/proc/self/maps` lists
//! them, and the guest's memory read and written with the kernel's checks.

use linux_raw_sys::general::{
    __NR_getpid, __NR_mmap, __NR_mprotect, __NR_process_vm_readv, __NR_process_vm_writev,
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_NONE, iovec,
};
use std::ops::Range;
use sud::{Errno, host};

pub const PAGE: usize = 4096;

pub fn page_down(addr: usize) -> usize {
    addr & !(PAGE - 1)
}

/// `addr` rounded up to a page; None past the end of the address space.
pub fn page_up(addr: usize) -> Option<usize> {
    Some(addr.checked_add(PAGE - 1)? & !(PAGE - 1))
}

/// `mmap(addr, len, prot, flags, fd, offset)`.
pub fn map(
    addr: usize,
    len: usize,
    prot: u32,
    flags: u32,
    fd: Option<i32>,
    offset: usize,
) -> Result<usize, Errno> {
    let fd = fd.map_or(usize::MAX, |fd| fd as usize);
    let flags = if fd == usize::MAX {
        flags | MAP_ANONYMOUS
    } else {
        flags
    };
    // SAFETY: callers map only over memory that is theirs: fresh ranges, or
    // with MAP_FIXED ranges they reserved themselves.
    unsafe {
        host::syscall6(
            __NR_mmap,
            addr,
            len,
            prot as usize,
            (flags | MAP_PRIVATE) as usize,
            fd,
            offset,
        )
    }
}

/// Gives `range` (page-aligned, inside a reservation of ours) back as
/// fresh inaccessible pages: the contents are gone, the addresses kept.
pub fn discard(range: Range<usize>) -> Result<(), Errno> {
    map(range.start, range.len(), PROT_NONE, MAP_FIXED, None, 0).map(drop)
}

/// `mprotect(range, prot)`.
pub fn protect(range: Range<usize>, prot: u32) -> Result<(), Errno> {
    // SAFETY: callers change only mappings of their own.
    unsafe { host::syscall3(__NR_mprotect, range.start, range.len(), prot as usize) }.map(drop)
}

/// One line of `/proc/self/maps`.
pub struct Mapping {
    pub range: Range<usize>,
    pub name: String,
}

/// The process's mappings, in address order.
pub fn host_mappings() -> std::io::Result<Vec<Mapping>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    let parse = |line: &str| -> Option<Mapping> {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let name = fields.nth(4).unwrap_or("").to_string();
        Some(Mapping {
            range: usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?,
            name: if name.is_empty() {
                "anonymous".to_string()
            } else {
                name
            },
        })
    };
    Ok(text.lines().filter_map(parse).collect())
}

/// Copies guest memory at `addr` into `buf` as the kernel would read it
/// for a syscall: an address the guest could not pass gives EFAULT rather
/// than a fault in the host.
pub fn read_guest(addr: usize, buf: &mut [u8]) -> Result<(), Errno> {
    transfer(__NR_process_vm_readv, addr, buf.as_mut_ptr(), buf.len())
}

/// Copies `bytes` into guest memory at `addr`, or fails with EFAULT as the
/// kernel would.
pub fn write_guest(addr: usize, bytes: &[u8]) -> Result<(), Errno> {
    transfer(
        __NR_process_vm_writev,
        addr,
        bytes.as_ptr().cast_mut(),
        bytes.len(),
    )
}

fn transfer(nr: u32, remote: usize, local: *mut u8, len: usize) -> Result<(), Errno> {
    let local = iovec {
        iov_base: local.cast(),
        iov_len: len as u64,
    };
    let remote = iovec {
        iov_base: remote as *mut _,
        iov_len: len as u64,
    };
    // SAFETY: getpid has no arguments; process_vm_readv/writev on this very
    // process copies between `local` (ours, `len` bytes) and the guest's
    // address, which the kernel checks.
    let done = unsafe {
        let pid = host::syscall0(__NR_getpid)?;
        host::syscall6(
            nr,
            pid,
            &raw const local as usize,
            1,
            &raw const remote as usize,
            1,
            0,
        )?
    };
    if done == len {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}
