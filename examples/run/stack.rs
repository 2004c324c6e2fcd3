//! The guest's initial stack, laid out as the kernel's `execve` leaves it
//! (fs/exec.c, fs/binfmt_elf.c `create_elf_tables`): at the very top an
//! 8-byte zero, the file name (AT_EXECFN), the environment and argument
//! strings, the platform string, 16 random bytes (AT_RANDOM); below them,
//! 16-byte aligned, argc, argv[], NULL, envp[], NULL and the auxiliary
//! vector, ending with AT_NULL.  RSP points at argc.

use crate::elf::Image;
use crate::memory::{self, PAGE};
use linux_raw_sys::auxvec::{
    AT_BASE, AT_BASE_PLATFORM, AT_ENTRY, AT_EXECFD, AT_EXECFN, AT_NULL, AT_PHDR, AT_PHENT,
    AT_PHNUM, AT_PLATFORM, AT_RANDOM,
};
use linux_raw_sys::general::{__NR_getrandom, MAP_STACK, PROT_NONE, PROT_READ, PROT_WRITE};
use std::ffi::{CStr, CString};

/// The stack's size; the page below it stays inaccessible, as a guard.
const STACK_SIZE: usize = 8 << 20;

/// What goes on the stack besides the image's own entries.
pub struct Start<'a> {
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    /// AT_EXECFN: the file name as given.
    pub execfn: &'a CStr,
}

/// Maps the guest's stack and fills it; returns the initial RSP.
pub fn build(start: &Start, image: &Image) -> Result<usize, String> {
    let errno = |what: &str, e: sud::Errno| format!("cannot {what}: {}", crate::elf::errno_text(e));
    let base = memory::map(
        0,
        PAGE + STACK_SIZE,
        PROT_READ | PROT_WRITE,
        MAP_STACK,
        None,
        0,
    )
    .map_err(|e| errno("map the guest's stack", e))?;
    memory::protect(base..base + PAGE, PROT_NONE)
        .map_err(|e| errno("protect the stack's guard page", e))?;
    let host = host_auxv();
    let platform = |key: u32| -> Option<&CStr> {
        let &(_, value) = host.iter().find(|&&(k, _)| k == key as u64)?;
        // SAFETY: the kernel's auxv entry for the host points at a string on
        // the host's own stack, which lives as long as the process.
        Some(unsafe { CStr::from_ptr(value as *const _) })
    };
    let platforms = [platform(AT_PLATFORM), platform(AT_BASE_PLATFORM)];

    // As the kernel, which refuses with E2BIG what would not leave three
    // quarters of the stack free.
    let strings = [start.execfn]
        .into_iter()
        .chain(start.envp.iter().map(|s| s.as_c_str()));
    let strings = strings
        .chain(start.argv.iter().map(|s| s.as_c_str()))
        .chain(platforms.into_iter().flatten());
    let text: usize = strings.map(|s| s.to_bytes_with_nul().len()).sum();
    let words = 1 + start.argv.len() + 1 + start.envp.len() + 1 + 2 * (host.len() + 1);
    if text + 8 + 16 + 16 + words * 8 + 16 > STACK_SIZE / 4 {
        return Err("argument list too long for the guest's 8 MiB stack".into());
    }

    let mut stack = Builder {
        top: base + PAGE + STACK_SIZE,
    };
    stack.push_bytes(&[0; 8]);
    let execfn = stack.push_bytes(start.execfn.to_bytes_with_nul());
    let envp = stack.push_strings(start.envp);
    let argv = stack.push_strings(start.argv);
    let platforms = platforms.map(|p| p.map_or(0, |p| stack.push_bytes(p.to_bytes_with_nul())));
    stack.top &= !15;
    let mut random = [0u8; 16];
    // SAFETY: getrandom fills the 16 bytes of our array.
    unsafe { sud::host::syscall3(__NR_getrandom, random.as_mut_ptr() as usize, 16, 0) }
        .map_err(|e| errno("get random bytes", e))?;
    let random = stack.push_bytes(&random);

    // The host's vector in the kernel's order, with what describes the
    // image replaced: everything else (AT_SYSINFO_EHDR, AT_HWCAP, AT_HWCAP2,
    // AT_MINSIGSTKSZ, AT_PAGESZ, AT_CLKTCK, the ids, AT_SECURE, AT_RSEQ_*)
    // is the same for the guest, which runs in this very process.
    let mut auxv: Vec<(u64, u64)> = Vec::new();
    for &(key, value) in &host {
        let value = match key as u32 {
            AT_PHDR => image.program_headers as u64,
            AT_PHENT => image.program_header_size as u64,
            AT_PHNUM => image.program_header_count as u64,
            AT_BASE => 0,
            AT_ENTRY => image.entry as u64,
            AT_RANDOM => random as u64,
            AT_EXECFN => execfn as u64,
            AT_PLATFORM => platforms[0] as u64,
            AT_BASE_PLATFORM => platforms[1] as u64,
            AT_EXECFD | AT_NULL => continue,
            _ => value,
        };
        auxv.push((key, value));
    }
    auxv.push((AT_NULL as u64, 0));

    let words = 1 + argv.len() + 1 + envp.len() + 1 + 2 * auxv.len();
    stack.top = (stack.top - words * 8) & !15;
    let mut table = Vec::with_capacity(words);
    table.push(argv.len() as u64);
    table.extend(argv.iter().map(|&p| p as u64));
    table.push(0);
    table.extend(envp.iter().map(|&p| p as u64));
    table.push(0);
    table.extend(auxv.iter().flat_map(|&(k, v)| [k, v]));
    // SAFETY: `words` words from the aligned top fit in the stack (checked
    // above, with the host's vector at least as long as the guest's).
    unsafe { std::ptr::copy_nonoverlapping(table.as_ptr(), stack.top as *mut u64, words) };
    Ok(stack.top)
}

/// Fills the stack downwards from its top.
struct Builder {
    top: usize,
}

impl Builder {
    /// Copies `bytes` right below what is there; returns their address.
    fn push_bytes(&mut self, bytes: &[u8]) -> usize {
        self.top -= bytes.len();
        // SAFETY: the room check in `build` keeps every push inside the
        // stack mapping, each below the one before.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.top as *mut u8, bytes.len()) };
        self.top
    }

    /// Copies `strings` below what is there, the last one highest (so
    /// that they lie in order, as the kernel copies them); returns their
    /// addresses, in order.
    fn push_strings(&mut self, strings: &[CString]) -> Vec<usize> {
        let mut addresses: Vec<usize> = strings
            .iter()
            .rev()
            .map(|s| self.push_bytes(s.as_bytes_with_nul()))
            .collect();
        addresses.reverse();
        addresses
    }
}

/// The host's auxiliary vector, as the kernel gave it.
fn host_auxv() -> Vec<(u64, u64)> {
    let bytes = std::fs::read("/proc/self/auxv").unwrap_or_default();
    bytes
        .chunks_exact(16)
        .map(|pair| {
            let word = |i: usize| u64::from_ne_bytes(pair[i..i + 8].try_into().expect("8 bytes"));
            (word(0), word(8))
        })
        .collect()
}
