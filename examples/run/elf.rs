//! The guest's executable: its ELF header and program headers, checked, and
//! its PT_LOAD segments mapped as the kernel's ELF loader maps them: at
//! their own addresses for ET_EXEC, at a base of our choosing for a
//! static-pie (ET_DYN without PT_INTERP).  Anything that needs a dynamic
//! loader (PT_INTERP) is refused.

use crate::memory::{self, PAGE, page_down, page_up};
use linux_raw_sys::elf_uapi::{
    EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_DYN, ET_EXEC, Elf64_Ehdr, Elf64_Phdr,
    PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD, PT_PHDR,
};
use linux_raw_sys::general::{
    MAP_FIXED, MAP_FIXED_NOREPLACE, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE,
};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How much address space the guest's program break may grow into, at
/// most: reserved (inaccessible, uncommitted) right after its image.
const BREAK_RESERVE: usize = 1 << 32;

/// A checked static or static-pie executable, not yet mapped.
pub struct Executable {
    file: File,
    header: Elf64_Ehdr,
    headers: Vec<Elf64_Phdr>,
}

/// Where the guest's image landed: what its initial stack and auxiliary
/// vector tell it, and where its program break lives.
pub struct Image {
    pub entry: usize,
    /// AT_PHDR, AT_PHENT, AT_PHNUM.
    pub program_headers: usize,
    pub program_header_size: usize,
    pub program_header_count: usize,
    /// Reserved for the break, which starts (empty) at its start.
    pub break_area: Range<usize>,
}

impl Executable {
    /// Opens `path` and checks that it is an x86-64 executable the kernel
    /// could start without a dynamic loader.  The error is one line.
    pub fn open(path: &Path) -> Result<Executable, String> {
        let file = File::open(path).map_err(|e| format!("cannot open: {}", os_error(&e)))?;
        let mut bytes = [0u8; size_of::<Elf64_Ehdr>()];
        read_at(&file, &mut bytes, 0)?;
        // SAFETY: Elf64_Ehdr is plain integers, any bytes are a value.
        let header: Elf64_Ehdr = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        if header.e_ident[..4] != *b"\x7fELF" {
            return Err("not an ELF file".into());
        }
        if header.e_ident[EI_CLASS as usize] as u32 != ELFCLASS64
            || header.e_ident[EI_DATA as usize] as u32 != ELFDATA2LSB
            || header.e_machine as u32 != EM_X86_64
        {
            return Err("not an x86-64 ELF file".into());
        }
        let kind = header.e_type as u32;
        if kind != ET_EXEC && kind != ET_DYN {
            return Err(format!("not an executable (ELF type {kind})"));
        }
        if header.e_phentsize as usize != size_of::<Elf64_Phdr>() || header.e_phnum == 0 {
            return Err("no usable program headers".into());
        }
        let mut table = vec![0u8; header.e_phnum as usize * size_of::<Elf64_Phdr>()];
        read_at(&file, &mut table, header.e_phoff)?;
        let headers: Vec<Elf64_Phdr> = table
            .chunks_exact(size_of::<Elf64_Phdr>())
            // SAFETY: Elf64_Phdr is plain integers, any bytes are a value.
            .map(|chunk| unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) })
            .collect();
        if let Some(interp) = headers.iter().find(|h| h.p_type == PT_INTERP) {
            let mut name = vec![0u8; interp.p_filesz.min(PAGE as u64) as usize];
            read_at(&file, &mut name, interp.p_offset)?;
            let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[]));
            return Err(format!(
                "dynamically linked (PT_INTERP {name}): only static and static-pie executables run as guests"
            ));
        }
        if kind == ET_DYN && header.e_entry == 0 {
            return Err("a shared library, not an executable (no entry point)".into());
        }
        let size = file
            .metadata()
            .map_err(|e| format!("cannot read: {}", os_error(&e)))?
            .len();
        let executable = Executable {
            file,
            header,
            headers,
        };
        for (i, h) in executable.loads().enumerate() {
            let problem = if h.p_vaddr % PAGE as u64 != h.p_offset % PAGE as u64 {
                "its address and file offset differ modulo the page size"
            } else if h.p_filesz > h.p_memsz {
                "more bytes in the file than in memory"
            } else if h
                .p_offset
                .checked_add(h.p_filesz)
                .is_none_or(|end| end > size)
            {
                "it reaches past the end of the file"
            } else if h
                .p_vaddr
                .checked_add(h.p_memsz)
                .and_then(|end| page_up(end as usize))
                .is_none()
            {
                "it reaches past the end of the address space"
            } else {
                continue;
            };
            return Err(format!("PT_LOAD segment {i}: {problem}"));
        }
        if executable.loads().next().is_none() {
            return Err("no PT_LOAD segment".into());
        }
        Ok(executable)
    }

    fn loads(&self) -> impl Iterator<Item = &Elf64_Phdr> {
        self.headers.iter().filter(|h| h.p_type == PT_LOAD)
    }

    /// The pages the segments cover, relative to the load bias.
    fn span(&self) -> Range<usize> {
        let start = self.loads().map(|h| page_down(h.p_vaddr as usize)).min();
        let end = self
            .loads()
            .filter_map(|h| page_up((h.p_vaddr + h.p_memsz) as usize))
            .max();
        start.unwrap_or(0)..end.unwrap_or(0)
    }

    /// Maps the segments and reserves the program break's area after them;
    /// the file is closed when this returns.  An ET_EXEC image must not
    /// overlap anything the host has mapped: the error names the mapping.
    pub fn load(self) -> Result<Image, String> {
        let span = self.span();
        let (bias, break_area) = if self.header.e_type as u32 == ET_EXEC {
            self.reserve_fixed(span.clone())?
        } else {
            self.reserve_anywhere(span.clone())?
        };
        for h in self.loads() {
            self.map_segment(h, bias).map_err(|e| {
                format!(
                    "cannot map a segment at {:#x}: {}",
                    h.p_vaddr as usize + bias,
                    errno_text(e)
                )
            })?;
        }
        let program_headers = self.program_headers().ok_or(
            "the program headers are not in a PT_LOAD segment (the guest could not find them)",
        )?;
        Ok(Image {
            entry: self.header.e_entry as usize + bias,
            program_headers: program_headers + bias,
            program_header_size: size_of::<Elf64_Phdr>(),
            program_header_count: self.headers.len(),
            break_area,
        })
    }

    /// ET_EXEC: the image goes exactly where it says, if that is free; the
    /// break gets whatever free space follows, up to BREAK_RESERVE.
    fn reserve_fixed(&self, span: Range<usize>) -> Result<(usize, Range<usize>), String> {
        let host =
            memory::host_mappings().map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
        if let Some(m) = host
            .iter()
            .find(|m| m.range.start < span.end && span.start < m.range.end)
        {
            return Err(format!(
                "its segments at {:#x}-{:#x} overlap the host's mapping {:#x}-{:#x} ({})",
                span.start, span.end, m.range.start, m.range.end, m.name
            ));
        }
        reserve_at(span.clone()).map_err(|e| {
            format!(
                "cannot map {:#x}-{:#x}: {}",
                span.start,
                span.end,
                errno_text(e)
            )
        })?;
        let next = host
            .iter()
            .map(|m| m.range.start)
            .filter(|&s| s >= span.end)
            .min();
        let room = next
            .unwrap_or(usize::MAX)
            .saturating_sub(span.end)
            .min(BREAK_RESERVE);
        let break_area = match reserve_at(span.end..span.end + room) {
            Ok(()) => span.end..span.end + room,
            Err(_) => span.end..span.end,
        };
        Ok((0, break_area))
    }

    /// Static-pie: the kernel picks a base aligned as the segments ask,
    /// with the break's area right after the image.
    fn reserve_anywhere(&self, span: Range<usize>) -> Result<(usize, Range<usize>), String> {
        let align = self
            .loads()
            .map(|h| h.p_align as usize)
            .filter(|a| a.is_power_of_two())
            .max();
        let align = align.unwrap_or(PAGE).max(PAGE);
        let len = span.len() + align + BREAK_RESERVE;
        let area = memory::map(0, len, PROT_NONE, 0, None, 0)
            .map_err(|e| format!("cannot reserve {len:#x} bytes: {}", errno_text(e)))?;
        let base = (area + align - 1) & !(align - 1);
        let bias = base - span.start;
        Ok((bias, base + span.len()..area + len))
    }

    /// Maps one PT_LOAD segment as the kernel does: the file's pages
    /// privately, the rest of the last file page zeroed, anonymous zero
    /// pages for the remainder of its memory size.
    fn map_segment(&self, h: &Elf64_Phdr, bias: usize) -> Result<(), sud::Errno> {
        let prot = [(PF_R, PROT_READ), (PF_W, PROT_WRITE), (PF_X, PROT_EXEC)]
            .iter()
            .filter(|(flag, _)| h.p_flags & flag != 0)
            .fold(0, |prot, (_, p)| prot | p);
        let start = h.p_vaddr as usize + bias;
        let file_end = start + h.p_filesz as usize;
        let mem_end = page_up(start + h.p_memsz as usize).expect("checked in open");
        let file_pages = page_down(start)..page_up(file_end).expect("checked in open");
        let zero_tail = h.p_memsz > h.p_filesz && h.p_filesz > 0 && file_end < file_pages.end;
        if h.p_filesz > 0 {
            let first_prot = if zero_tail { prot | PROT_WRITE } else { prot };
            let offset = page_down(h.p_offset as usize);
            memory::map(
                file_pages.start,
                file_pages.len(),
                first_prot,
                MAP_FIXED,
                Some(self.file.as_raw_fd()),
                offset,
            )?;
        }
        if zero_tail {
            // SAFETY: the bytes after the file's part of the last page are
            // this segment's zero-filled memory, just mapped writable.
            unsafe { std::ptr::write_bytes(file_end as *mut u8, 0, file_pages.end - file_end) };
            if prot & PROT_WRITE == 0 {
                memory::protect(file_pages.clone(), prot)?;
            }
        }
        let anonymous = if h.p_filesz > 0 {
            file_pages.end
        } else {
            page_down(start)
        };
        if mem_end > anonymous {
            memory::map(anonymous, mem_end - anonymous, prot, MAP_FIXED, None, 0)?;
        }
        Ok(())
    }

    /// AT_PHDR before the bias: PT_PHDR's address, or where a PT_LOAD maps
    /// the file offset of the program header table.
    fn program_headers(&self) -> Option<usize> {
        if let Some(h) = self.headers.iter().find(|h| h.p_type == PT_PHDR) {
            return Some(h.p_vaddr as usize);
        }
        let offset = self.header.e_phoff;
        let h = self
            .loads()
            .find(|h| h.p_offset <= offset && offset < h.p_offset + h.p_filesz)?;
        Some((h.p_vaddr + (offset - h.p_offset)) as usize)
    }
}

/// Reserves `range` (inaccessible) exactly there, or fails if anything is
/// mapped in it: MAP_FIXED_NOREPLACE, checked, since kernels before 4.17
/// take it as a hint.
fn reserve_at(range: Range<usize>) -> Result<(), sud::Errno> {
    if range.is_empty() {
        return Ok(());
    }
    let got = memory::map(
        range.start,
        range.len(),
        PROT_NONE,
        MAP_FIXED_NOREPLACE,
        None,
        0,
    )?;
    if got != range.start {
        // SAFETY: the kernel just gave us this mapping elsewhere; nobody uses it.
        let _ =
            unsafe { sud::host::syscall2(linux_raw_sys::general::__NR_munmap, got, range.len()) };
        return Err(sud::Errno::EEXIST);
    }
    Ok(())
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), String> {
    file.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => "not an ELF file (too short)".to_string(),
        _ => format!("cannot read: {}", os_error(&e)),
    })
}

/// An I/O error as the C library words it, without Rust's "(os error N)".
pub fn os_error(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

pub fn errno_text(e: sud::Errno) -> String {
    os_error(&io::Error::from_raw_os_error(e.raw()))
}
