//! Islands: five bytes of dead code within a `jmp rel8` of a site, where a
//! `jmp thunk` fits when the bytes before the `syscall` are not a
//! `mov eax, imm32` to write over.  The `syscall` itself becomes the
//! `jmp rel8` (two bytes for two bytes: a branch to the `syscall` still
//! finds a whole instruction that does what the `syscall` did).
//!
//! Dead code is alignment padding: a run of no-ops right after a `ret` or
//! `jmp` (nothing falls into it) that ends on a 16-byte boundary (the
//! assembler's `.p2align`, before the label the padding exists for) and
//! does not start on one (a function entry).  It is found by decoding
//! forward from the instruction after the `syscall`, a known boundary.  No
//! direct branch nearby (`jcc`, `jmp`, `call`, `loop`, within the bytes
//! read around the site) may land in it: after the `syscall` the
//! instructions are decoded, and before it, where their boundaries are
//! unknown, the bytes are scanned as if every offset began one, which finds
//! every real branch and some that are not (those only cost an island).  An indirect branch into padding is
//! assumed not to exist: compilers and assemblers never target it.

use super::decode::decode;
use crate::sys::guest_memory;

/// The island's size: a `jmp rel32`.
pub(crate) const ISLAND_SIZE: usize = 5;
/// The farthest past the site's end a `jmp rel8` reaches.
const REL8_REACH: usize = 127;
/// The alignment padding ends at.
const ALIGN: usize = 16;
/// Bytes read before and after the site's end: room for the branches
/// scanned before it, and the island (and its last instruction) after.
const BEFORE: usize = 256;
const AFTER: usize = 256;

/// Code around a site, as read from the guest's memory.
struct Window {
    bytes: [u8; BEFORE + AFTER],
    /// The guest address of `bytes[0]`.
    base: usize,
    /// How many of `bytes` were read.
    len: usize,
}

impl Window {
    /// The code from `BEFORE` bytes before `resume` (or the start of its
    /// page, if the page before is not there) to `AFTER` bytes past it, as
    /// far as it is mapped.
    fn read(resume: usize) -> Option<Window> {
        let mut window = Window {
            bytes: [0; BEFORE + AFTER],
            base: resume.checked_sub(BEFORE)?,
            len: 0,
        };
        let page_start = (resume - 2) & !4095;
        for base in [window.base, page_start.max(window.base)] {
            let skip = base - window.base;
            let read = guest_memory::read_up_to(&mut window.bytes[skip..], base).unwrap_or(0);
            if read > 0 {
                // Bytes before `base` stay unread: zeros branch nowhere.
                window.len = skip + read;
                return (window.len > BEFORE).then_some(window);
            }
        }
        None
    }

    fn at(&self, addr: usize) -> &[u8] {
        let from = addr.saturating_sub(self.base).min(self.len);
        &self.bytes[from..self.len]
    }

    /// Whether a direct branch in the window may land in `start..end`.
    /// From `resume` on (a known instruction boundary) the instructions are
    /// decoded and only real branches count; before it, where boundaries
    /// are unknown, every offset is taken for the start of one.
    fn branched_into(&self, start: usize, end: usize, resume: usize) -> bool {
        let code = &self.bytes[..self.len];
        let lands = |target: i64| (start as i64..end as i64).contains(&target);
        let exact_from = resume - self.base;
        if (0..exact_from)
            .any(|i| branch_at(code, i).is_some_and(|(_, t)| lands(self.base as i64 + t)))
        {
            return true;
        }
        let mut i = exact_from;
        while i < code.len() {
            let Some(insn) = decode(&code[i..]) else {
                // Not decoded: the rest is scanned as before `resume`.
                return (i..code.len())
                    .any(|i| branch_at(code, i).is_some_and(|(_, t)| lands(self.base as i64 + t)));
            };
            let prefixes = code[i..i + insn.len]
                .iter()
                .take_while(|b| matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0x64..=0x67 | 0xf0 | 0xf2 | 0xf3 | 0x40..=0x4f))
                .count();
            let whole = |(len, _): &(usize, i64)| prefixes + len == insn.len;
            if branch_at(code, i + prefixes)
                .filter(whole)
                .is_some_and(|(_, target)| lands(self.base as i64 + target))
            {
                return true;
            }
            i += insn.len;
        }
        false
    }
}

/// If the bytes at `i` are a direct branch (`jcc`, `jmp`, `call`, `loop`,
/// `jrcxz`), its length from `i` and its target, as an offset into `code`.
fn branch_at(code: &[u8], i: usize) -> Option<(usize, i64)> {
    let (len, rel) = match *code.get(i)? {
        0x70..=0x7f | 0xe0..=0xe3 | 0xeb => (2, *code.get(i + 1)? as i8 as i64),
        0xe8 | 0xe9 => {
            let d = code.get(i + 1..i + 5)?;
            (5, i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64)
        }
        0x0f if matches!(code.get(i + 1), Some(0x80..=0x8f)) => {
            let d = code.get(i + 2..i + 6)?;
            (6, i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64)
        }
        _ => return None,
    };
    Some((len, (i + len) as i64 + rel))
}

/// An island for the `syscall` that ends at `resume`: the address of
/// five bytes of padding a `jmp rel8` there reaches, for which `usable`
/// says yes (inside the ranges the host named), and the end of the no-op
/// its fifth byte lies in (the island's `jmp` is followed by `int3`s up to
/// there, so the padding still decodes whole).  `rewritten` says whether
/// an address holds a jump sud wrote at another site: such a jump does not
/// end a path (the site's code continues after it).
pub(crate) fn find(
    resume: usize,
    usable: impl Fn(usize, usize) -> bool,
    rewritten: impl Fn(usize) -> bool,
) -> Option<(usize, usize)> {
    let window = Window::read(resume)?;
    let mut at = resume;
    let mut after_path_end = false;
    while at <= resume + REL8_REACH {
        let insn = decode(window.at(at))?;
        if after_path_end && insn.padding {
            let run_end = padding_end(&window, at, usize::MAX)?;
            let fits = at % ALIGN != 0 && run_end % ALIGN == 0 && run_end - at >= ISLAND_SIZE;
            if fits
                && usable(at, at + ISLAND_SIZE)
                && !window.branched_into(at, at + ISLAND_SIZE, resume)
            {
                let end = padding_end(&window, at, at + ISLAND_SIZE)?;
                return Some((at, end));
            }
            at = run_end;
            after_path_end = false;
            continue;
        }
        after_path_end = insn.ends_path && !rewritten(at);
        at += insn.len;
    }
    None
}

/// Where the run of padding instructions starting at `at` ends, or, if
/// `until` lies inside the run, the first boundary between them at or
/// after `until`.
fn padding_end(window: &Window, mut at: usize, until: usize) -> Option<usize> {
    loop {
        if at >= until {
            return Some(at);
        }
        let insn = decode(window.at(at))?;
        if !insn.padding {
            return Some(at);
        }
        at += insn.len;
    }
}

#[cfg(test)]
mod tests {
    use crate::rewrite::island::find;

    /// Code in a buffer of its own, 64-byte aligned, with room around it
    /// for the window read before and after a site.
    #[repr(C, align(64))]
    struct Code([u8; 1024]);

    /// A site whose padding holds two islands: the second is found after
    /// the first is written (its `jmp`, then `int3` to the end of the
    /// 6-byte no-op it ends in), where a byte of that no-op left behind
    /// would have the search decode from the middle of an instruction.
    #[test]
    fn a_second_island_after_the_first() {
        let mut code = Code([0; 1024]);
        let at = 512;
        let site = [
            0x0f, 0x05, // syscall
            0xc3, // ret
            0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, // 6-byte nop
            0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00, // 7-byte nop, to 16
            0xc3,
        ];
        code.0[at..at + site.len()].copy_from_slice(&site);
        // The search reads the bytes through the kernel, which the compiler
        // does not see: they must be in memory.
        let base = core::hint::black_box(&mut code).0.as_ptr() as usize + at;
        let resume = base + 2;
        let first = find(resume, |_, _| true, |_| false);
        assert_eq!(first, Some((base + 3, base + 9)));
        // What write_island leaves: jmp rel32 (to a thunk far away), then
        // int3.
        code.0[at + 3..at + 9].copy_from_slice(&[0xe9, 0, 0, 0, 0x10, 0xcc]);
        core::hint::black_box(&mut code);
        let second = find(resume, |_, _| true, |_| false);
        assert_eq!(second, Some((base + 8, base + 16)));
    }

    /// After the `syscall` only real branches count: a `7f` byte inside a
    /// `mov`'s displacement that would be a `jg` into the padding if an
    /// instruction began there does not cost the island, a real `jmp` into
    /// it does.
    #[test]
    fn branches_after_the_site_are_decoded() {
        let mut code = Code([0; 1024]);
        let at = 512;
        let site = [
            0x0f, 0x05, // syscall
            0xc3, // ret
            0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, // 6-byte nop
            0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00, // 7-byte nop, to 16
            0x48, 0x8b, 0x05, 0x7f, 0xee, 0xff,
            0xff, // mov rax, [rip - 0x1181]: `7f ee` is a jg to 3
            0xc3,
        ];
        code.0[at..at + site.len()].copy_from_slice(&site);
        let base = core::hint::black_box(&mut code).0.as_ptr() as usize + at;
        assert_eq!(
            find(base + 2, |_, _| true, |_| false),
            Some((base + 3, base + 9))
        );
        // jmp rel8 from 16 to 3.
        code.0[at + 16..at + 18].copy_from_slice(&[0xeb, 0xf1]);
        core::hint::black_box(&mut code);
        assert_eq!(find(base + 2, |_, _| true, |_| false), None);
    }
}
