//! Reading and writing guest memory from signal context without ever
//! faulting: the kernel copies through `process_vm_readv`/`writev` on this
//! very process, and an address the guest may not access is EFAULT, exactly
//! as the syscall being emulated would report it.

use crate::error::Errno;
use core::mem::{MaybeUninit, size_of};

/// A `T` read from guest address `addr`.
pub(crate) fn read<T: Copy>(addr: usize) -> Result<T, Errno> {
    let mut value = MaybeUninit::<T>::uninit();
    read_bytes(value.as_mut_ptr().cast(), addr, size_of::<T>())?;
    // SAFETY: the kernel filled every byte; T is plain data (integers).
    Ok(unsafe { value.assume_init() })
}

/// The first `len` bytes of a `T` read from guest address `addr`, the rest
/// of it zero: for a struct the guest may pass in a shorter, older version
/// (clone3's `clone_args`).
pub(crate) fn read_prefix<T: Copy + Default>(addr: usize, len: usize) -> Result<T, Errno> {
    let mut value = T::default();
    let len = len.min(size_of::<T>());
    read_bytes((&mut value as *mut T).cast(), addr, len)?;
    Ok(value)
}

/// Writes `value` to guest address `addr`.
pub(crate) fn write<T: Copy>(addr: usize, value: &T) -> Result<(), Errno> {
    let done = super::process_vm_writev((value as *const T).cast(), addr, size_of::<T>())?;
    if done == size_of::<T>() {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

fn read_bytes(local: *mut u8, addr: usize, len: usize) -> Result<(), Errno> {
    if super::process_vm_readv(local, addr, len)? == len {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// Fills `buf` from guest address `addr` as far as the guest's memory
/// goes: the bytes read, fewer than asked where a page is missing.
pub(crate) fn read_up_to(buf: &mut [u8], addr: usize) -> Result<usize, Errno> {
    super::process_vm_readv(buf.as_mut_ptr(), addr, buf.len())
}
