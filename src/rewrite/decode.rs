//! The length of an x86-64 instruction, and the little more that finding an
//! island (`island.rs`) needs: whether it ends a path (nothing falls
//! through it) and whether it is a no-op.  Decoding starts at a known
//! boundary (the instruction after a trapped `syscall`) and goes forward,
//! where x86 decoding is exact.  Anything this decoder does not know is
//! `None`, and its caller gives up: a wrong length would misplace
//! everything after it.

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    /// Its length in bytes.
    pub(crate) len: usize,
    /// Whether execution never continues after it: `ret` and `jmp`.  (Not
    /// `ud2` or `hlt`: a fault handler may step over them.)
    pub(crate) ends_path: bool,
    /// Whether it is an alignment no-op: `nop` (`90`, without REX.B) or
    /// `nop r/m` (`0f 1f`), with any prefixes, or `int3` padding.
    pub(crate) padding: bool,
}

/// Immediate sizes: a byte, the operand size ("z": 2 or 4 bytes), or none.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Imm {
    None,
    Byte,
    Z,
}

/// Decodes the instruction at the start of `code`; `None` if it is not one
/// this decoder knows, invalid in 64-bit mode, or longer than `code`.
pub(crate) fn decode(code: &[u8]) -> Option<Insn> {
    let mut at = 0;
    let (mut operand16, mut address32, mut rex) = (false, false, 0u8);
    // Legacy prefixes, then at most one REX right before the opcode.
    loop {
        match *code.get(at)? {
            0x66 => operand16 = true,
            0x67 => address32 = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0xf0 | 0xf2 | 0xf3 => {}
            _ => break,
        }
        at += 1;
    }
    if let 0x40..=0x4f = *code.get(at)? {
        rex = code[at];
        at += 1;
    }
    let rex_w = rex & 8 != 0;
    let z = if operand16 && !rex_w { 2 } else { 4 };
    let op = *code.get(at)?;
    at += 1;
    let (modrm, imm, ends_path, padding) = match op {
        0x0f => return decode_0f(code, at, z),
        0xc4 | 0xc5 | 0x62 if rex == 0 => return decode_vex(code, at, op),
        // ALU r/m forms, and their AL/eAX immediate forms.
        0x00..=0x3f => match op & 7 {
            0..=3 => (true, Imm::None, false, false),
            4 => (false, Imm::Byte, false, false),
            5 => (false, Imm::Z, false, false),
            _ => return None, // prefixes seen above, or invalid in 64-bit mode
        },
        0x50..=0x5f => (false, Imm::None, false, false),
        0x63 => (true, Imm::None, false, false),
        0x68 => (false, Imm::Z, false, false),
        0x69 => (true, Imm::Z, false, false),
        0x6a => (false, Imm::Byte, false, false),
        0x6b => (true, Imm::Byte, false, false),
        0x6c..=0x6f => (false, Imm::None, false, false),
        0x70..=0x7f => (false, Imm::Byte, false, false),
        0x80 | 0x83 => (true, Imm::Byte, false, false),
        0x81 => (true, Imm::Z, false, false),
        0x84..=0x8e => (true, Imm::None, false, false),
        // pop r/m; 8f with a nonzero reg field is AMD's XOP, not known.
        0x8f if (*code.get(at)? >> 3) & 7 == 0 => (true, Imm::None, false, false),
        0x90 => (false, Imm::None, false, rex & 1 == 0),
        0x91..=0x99 | 0x9b..=0x9f => (false, Imm::None, false, false),
        0xa0..=0xa3 => {
            // moffs: an address of the address size.
            let len = at + if address32 { 4 } else { 8 };
            return (len <= code.len()).then_some(plain(len));
        }
        0xa4..=0xa7 | 0xaa..=0xaf => (false, Imm::None, false, false),
        0xa8 | 0xb0..=0xb7 => (false, Imm::Byte, false, false),
        0xa9 => (false, Imm::Z, false, false),
        0xb8..=0xbf => {
            let len = at + if rex_w { 8 } else { z };
            return (len <= code.len()).then_some(plain(len));
        }
        0xc0 | 0xc1 | 0xc6 => (true, Imm::Byte, false, false),
        0xc7 => (true, Imm::Z, false, false),
        0xc2 => return fixed(code, at + 2, true),
        0xc3 => (false, Imm::None, true, false),
        0xc8 => return fixed(code, at + 3, false),
        0xc9 | 0xcb | 0xcf | 0xd7 => (false, Imm::None, false, false),
        0xca => return fixed(code, at + 2, true),
        0xcc => (false, Imm::None, false, true),
        0xcd | 0xe4..=0xe7 => (false, Imm::Byte, false, false),
        0xd0..=0xd3 | 0xd8..=0xdf => (true, Imm::None, false, false),
        0xe0..=0xe3 => (false, Imm::Byte, false, false),
        0xe8 if !operand16 => return fixed(code, at + 4, false),
        0xe9 if !operand16 => return fixed(code, at + 4, true),
        0xeb => (false, Imm::Byte, true, false),
        0xec..=0xef | 0xf1 | 0xf4 | 0xf5 | 0xf8..=0xfd => (false, Imm::None, false, false),
        0xf6 | 0xf7 => {
            // test r/m, imm is /0 and /1; the others take no immediate.
            let reg = (*code.get(at)? >> 3) & 7;
            let imm = match (reg, op) {
                (0 | 1, 0xf6) => Imm::Byte,
                (0 | 1, _) => Imm::Z,
                _ => Imm::None,
            };
            (true, imm, false, false)
        }
        0xfe => (true, Imm::None, false, false),
        0xff => {
            // jmp r/m (/4, /5) ends a path.
            let reg = (*code.get(at)? >> 3) & 7;
            (true, Imm::None, reg == 4 || reg == 5, false)
        }
        _ => return None,
    };
    if modrm {
        at = past_modrm(code, at)?;
    }
    at += match imm {
        Imm::None => 0,
        Imm::Byte => 1,
        Imm::Z => z,
    };
    (at <= code.len()).then_some(Insn {
        len: at,
        ends_path,
        padding,
    })
}

fn plain(len: usize) -> Insn {
    Insn {
        len,
        ends_path: false,
        padding: false,
    }
}

/// An instruction of `len` bytes with no ModRM.
fn fixed(code: &[u8], len: usize, ends_path: bool) -> Option<Insn> {
    (len <= code.len()).then_some(Insn {
        len,
        ends_path,
        padding: false,
    })
}

/// The two-byte (`0f`) and three-byte (`0f 38`, `0f 3a`) maps; `at` is
/// just past the `0f`.
fn decode_0f(code: &[u8], mut at: usize, z: usize) -> Option<Insn> {
    let op = *code.get(at)?;
    at += 1;
    let (modrm, imm8, ends_path, padding) = match op {
        0x38 => {
            at += 1; // the third opcode byte
            (true, false, false, false)
        }
        0x3a => {
            at += 1;
            (true, true, false, false)
        }
        0x05 | 0x06 | 0x0b | 0x07 | 0x08 | 0x09 | 0x0e | 0x30..=0x37 | 0x77 | 0xa0..=0xa2 => {
            (false, false, false, false)
        }
        0xa8 | 0xa9 | 0xaa | 0xc8..=0xcf => (false, false, false, false),
        // jcc rel32; with 66, AMD reads a rel16: not known.
        0x80..=0x8f if z == 4 => return fixed(code, at + 4, false),
        0x1f => (true, false, false, true),
        0x70..=0x73 | 0xa4 | 0xac | 0xba | 0xc2 | 0xc4..=0xc6 => (true, true, false, false),
        0x00..=0x03 | 0x0d | 0x10..=0x1e | 0x20..=0x23 | 0x28..=0x2f => (true, false, false, false),
        0x40..=0x6f | 0x74..=0x76 | 0x78..=0x7f | 0x90..=0x9f => (true, false, false, false),
        0xa3 | 0xa5 | 0xab | 0xad..=0xb9 | 0xbb..=0xc1 | 0xc3 | 0xc7 => (true, false, false, false),
        0xd0..=0xff => (true, false, false, false),
        _ => return None,
    };
    if modrm {
        at = past_modrm(code, at)?;
    }
    at += imm8 as usize;
    (at <= code.len()).then_some(Insn {
        len: at,
        ends_path,
        padding,
    })
}

/// VEX (`c4`, `c5`) and EVEX (`62`) instructions; `at` is just past the
/// first byte.  All take a ModRM but `vzeroupper`/`vzeroall`; the `0f 3a`
/// map and a few `0f` opcodes take an immediate byte.
fn decode_vex(code: &[u8], mut at: usize, first: u8) -> Option<Insn> {
    let map = match first {
        0xc5 => {
            at += 1;
            1
        }
        0xc4 => {
            let map = *code.get(at)? & 0x1f;
            at += 2;
            map
        }
        _ => {
            let map = *code.get(at)? & 0x7;
            at += 3;
            map
        }
    };
    let op = *code.get(at)?;
    at += 1;
    let imm8 = match map {
        1 if op == 0x77 && first != 0x62 => return fixed(code, at, false),
        1 => matches!(op, 0x70..=0x73 | 0xc2 | 0xc4..=0xc6),
        2 => false,
        3 => true,
        _ => return None,
    };
    at = past_modrm(code, at)? + imm8 as usize;
    (at <= code.len()).then_some(plain(at))
}

/// Just past a ModRM at `at`, its SIB and its displacement.
fn past_modrm(code: &[u8], at: usize) -> Option<usize> {
    let modrm = *code.get(at)?;
    let (mode, rm) = (modrm >> 6, modrm & 7);
    let mut at = at + 1;
    if mode == 3 {
        return Some(at);
    }
    let mut base = rm;
    if rm == 4 {
        base = *code.get(at)? & 7;
        at += 1;
    }
    at += match mode {
        0 if rm == 5 || base == 5 => 4, // RIP-relative, or no base
        0 => 0,
        1 => 1,
        _ => 4,
    };
    Some(at)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::decode;
    use std::process::Command;
    use std::string::String;
    use std::vec::Vec;

    /// Every instruction of a large real binary's code, as GNU objdump
    /// decodes it, against this decoder: a length it gives must be
    /// objdump's.  (Lengths it does not know are allowed: its callers give
    /// up there.)  objdump reports `(bad)` for bytes that are no
    /// instruction; those, and what follows them up to the next symbol,
    /// are skipped.
    #[test]
    fn lengths_match_objdump_on_busybox() {
        let binary = "/bin/busybox";
        let Ok(out) = Command::new("objdump")
            .args(["-d", "-w", "--no-show-raw-insn", "-j", ".text", binary])
            .output()
        else {
            panic!("objdump is needed (binutils)");
        };
        assert!(out.status.success(), "objdump -d {binary}");
        let text = String::from_utf8_lossy(&out.stdout);
        let code = std::fs::read(binary).unwrap();
        // Instruction addresses in order, and where each section's file
        // offset puts them.
        let mut addrs: Vec<(usize, bool)> = Vec::new();
        for line in text.lines() {
            let Some((addr, rest)) = line.trim_start().split_once(":\t") else {
                continue;
            };
            if let Ok(addr) = usize::from_str_radix(addr, 16) {
                addrs.push((addr, rest.contains("(bad)")));
            }
        }
        let offset = text_file_offset(binary);
        let (mut known, mut unknown) = (0, 0);
        for pair in addrs.windows(2) {
            let ((at, bad), (next, _)) = (pair[0], pair[1]);
            if bad || next <= at || next - at > 15 {
                continue;
            }
            let bytes = &code[at - offset..(at - offset + 15).min(code.len())];
            match decode(bytes) {
                Some(insn) => {
                    assert_eq!(
                        insn.len,
                        next - at,
                        "length at {at:#x}: {:02x?}",
                        &bytes[..next - at]
                    );
                    known += 1;
                }
                None => unknown += 1,
            }
        }
        // The decoder knows nearly everything a compiler emits.
        assert!(known > 100_000, "{known} known");
        assert!(unknown * 1000 < known, "{unknown} unknown of {known}");
    }

    /// The difference between `.text`'s address and its file offset.
    fn text_file_offset(binary: &str) -> usize {
        let out = Command::new("objdump")
            .args(["-h", binary])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(".text"))
            .unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let vma = usize::from_str_radix(fields[3], 16).unwrap();
        let file = usize::from_str_radix(fields[5], 16).unwrap();
        vma - file
    }

    #[test]
    fn paths_end_and_padding() {
        let ret = decode(&[0xc3]).unwrap();
        assert!(ret.ends_path && !ret.padding);
        assert!(decode(&[0xe9, 0, 0, 0, 0]).unwrap().ends_path);
        assert!(decode(&[0xff, 0xe0]).unwrap().ends_path); // jmp rax
        assert!(!decode(&[0xff, 0xd0]).unwrap().ends_path); // call rax
        assert!(!decode(&[0x0f, 0x0b]).unwrap().ends_path); // ud2
        assert!(decode(&[0x90]).unwrap().padding);
        assert!(!decode(&[0x41, 0x90]).unwrap().padding); // xchg eax, r8d
        let nop9 = [0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0];
        assert_eq!(decode(&nop9).unwrap().len, 9);
        assert!(decode(&nop9).unwrap().padding);
        assert!(decode(&[0xcc]).unwrap().padding);
        assert_eq!(decode(&[0xe9, 0, 0]), None); // cut short
    }
}
