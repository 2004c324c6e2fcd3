//! Builds sud's C library and packs it for C users:
//!
//!     cargo run -p sud-capi-pack [-- --profile NAME --target-dir DIR --out DIR]
//!
//! writes `libsud_capi.a` and `libsud_capi.so` to `<target-dir>/sud-capi/`
//! (the header stays where it is: `capi/include/sud.h`).  The profile is
//! `capi` unless told otherwise (the workspace's size-minded release
//! profile: LTO, no debug info); the target directory is the one this
//! program was built into.
//!
//! Why a packer: every Rust staticlib carries the whole `compiler_builtins`
//! of the toolchain, some 300 objects with their debug info and LLVM
//! bitcode, 4 MB that sud never calls into.  The packed archive keeps the
//! members that define the library's symbols (`sud_*`) and the members
//! those need, as a linker would pull them, without the bitcode, which no
//! C linker reads, and without the debug info of the toolchain's own
//! objects.  A C program links the same code either way.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::{env, fs};

/// What the packer was asked for.
struct Options {
    profile: String,
    target_dir: PathBuf,
    out: PathBuf,
}

fn main() -> ExitCode {
    match options().and_then(|options| pack(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sud-capi-pack: {message}");
            ExitCode::FAILURE
        }
    }
}

fn options() -> Result<Options, String> {
    let mut profile = "capi".to_string();
    let mut target_dir = None;
    let mut out = None;
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} wants a value"));
        match arg.as_str() {
            "--profile" => profile = value()?,
            "--target-dir" => target_dir = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            _ => {
                return Err(format!(
                    "unknown argument {arg}; usage: \
                     sud-capi-pack [--profile NAME] [--target-dir DIR] [--out DIR]"
                ));
            }
        }
    }
    let target_dir = match target_dir {
        Some(dir) => dir,
        // <target-dir>/<profile>/sud-capi-pack
        None => env::current_exe()
            .map_err(|e| format!("own path: {e}"))?
            .ancestors()
            .nth(2)
            .ok_or("no target directory above this executable")?
            .to_path_buf(),
    };
    let out = out.unwrap_or_else(|| target_dir.join("sud-capi"));
    Ok(Options {
        profile,
        target_dir,
        out,
    })
}

fn pack(options: &Options) -> Result<(), String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args(["build", "-p", "sud-capi", "--lib", "--profile"])
        .arg(&options.profile)
        .arg("--target-dir")
        .arg(&options.target_dir);
    run(&mut build)?;
    // Cargo's directory for the profile: `dev` builds into `debug`.
    let built = options.target_dir.join(match options.profile.as_str() {
        "dev" => "debug",
        profile => profile,
    });
    fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let archive = built.join("libsud_capi.a");
    let packed = options.out.join("libsud_capi.a");
    let (kept, members) = pack_archive(&archive, &packed)?;
    let shared = options.out.join("libsud_capi.so");
    fs::copy(built.join("libsud_capi.so"), &shared).map_err(|e| format!("copy the .so: {e}"))?;
    println!(
        "{}: {} bytes ({kept} of cargo's {members} members, which take {} bytes)",
        packed.display(),
        size(&packed)?,
        size(&archive)?
    );
    println!("{}: {} bytes", shared.display(), size(&shared)?);
    println!(
        "header: {}",
        workspace
            .join("capi/include/sud.h")
            .canonicalize()
            .map_err(|e| e.to_string())?
            .display()
    );
    Ok(())
}

fn size(path: &Path) -> Result<u64, String> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `command`, failing unless it succeeds; returns its stdout.
fn run(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} ended {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A binutils tool, or the one the environment names (`AR`, `NM`, `OBJCOPY`).
fn tool(name: &str) -> Command {
    Command::new(env::var_os(name.to_uppercase()).unwrap_or_else(|| name.into()))
}

/// Writes to `packed` the members of `archive` that a C program can reach,
/// bitcode and the toolchain's debug info left out; returns how many
/// members it kept, of how many.
fn pack_archive(archive: &Path, packed: &Path) -> Result<(usize, usize), String> {
    let bytes = fs::read(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let members = ar_members(&bytes).map_err(|e| format!("{}: {e}", archive.display()))?;
    // Each member in a directory of its own, so that its file keeps the
    // member's name, even where two members share one.
    let work = packed.with_extension("work");
    let _ = fs::remove_dir_all(&work);
    let mut files = Vec::new();
    for (i, (name, data)) in members.iter().enumerate() {
        let dir = work.join(format!("{i:04}"));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = dir.join(name);
        fs::write(&file, data).map_err(|e| e.to_string())?;
        files.push(file);
    }
    let symbols: Vec<Symbols> = members.iter().map(|(_, data)| elf_symbols(data)).collect();
    let kept = reachable(&symbols);
    for &i in &kept {
        let mut objcopy = tool("objcopy");
        objcopy.args(["--remove-section=.llvmbc", "--remove-section=.llvmcmd"]);
        if !symbols[i].api {
            objcopy.arg("--strip-debug");
        }
        run(objcopy.arg(&files[i]))?;
    }
    let _ = fs::remove_file(packed);
    let mut ar = tool("ar");
    ar.arg("rcs").arg(packed);
    ar.args(kept.iter().map(|&i| files[i].as_os_str()));
    run(&mut ar)?;
    fs::remove_dir_all(&work).map_err(|e| e.to_string())?;
    Ok((kept.len(), members.len()))
}

/// What one member defines and needs.
struct Symbols {
    /// Defines a symbol of the library's interface (`sud_*`).
    api: bool,
    defined: Vec<String>,
    undefined: Vec<String>,
}

/// The global symbols an ELF object defines and the ones it needs (weak
/// references do not make a linker pull a member, so they are not needs).
/// Read from its symbol table directly: binutils' `nm` hands an object that
/// carries LLVM bitcode to its LLVM plugin, which may be too old to read
/// it, and then lists no symbols at all.  Anything but a 64-bit
/// little-endian ELF object has no symbols here.
fn elf_symbols(object: &[u8]) -> Symbols {
    let mut symbols = Symbols {
        api: false,
        defined: Vec::new(),
        undefined: Vec::new(),
    };
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = object.get(at..at + len)?;
        Some(bytes.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b)))
    };
    if !object.starts_with(b"\x7fELF\x02\x01") {
        return symbols;
    }
    // Section headers: 64 bytes each from e_shoff; a count too large for
    // e_shnum is in the first header's sh_size.
    let section = |i: u64| -> Option<(u64, u64, u64, u64)> {
        let at = (read(0x28, 8)? + i * 64) as usize;
        // sh_type, sh_offset, sh_size, sh_link
        Some((
            read(at + 4, 4)?,
            read(at + 0x18, 8)?,
            read(at + 0x20, 8)?,
            read(at + 0x28, 4)?,
        ))
    };
    let count = match read(0x3c, 2) {
        Some(0) => section(0).map_or(0, |s| s.2),
        other => other.unwrap_or(0),
    };
    const SHT_SYMTAB: u64 = 2;
    let Some((_, offset, size, link)) = (0..count).filter_map(section).find(|s| s.0 == SHT_SYMTAB)
    else {
        return symbols;
    };
    let Some((_, names, _, _)) = section(link) else {
        return symbols;
    };
    // Symbols: 24 bytes each: st_name (4), st_info (1), st_other (1),
    // st_shndx (2), st_value (8), st_size (8).
    for at in (offset..offset + size).step_by(24).map(|at| at as usize) {
        let (Some(name), Some(info), Some(index)) = (read(at, 4), read(at + 4, 1), read(at + 6, 2))
        else {
            break;
        };
        let name_at = (names + name) as usize;
        let Some(name) = object.get(name_at..).and_then(|tail| {
            let end = tail.iter().position(|&b| b == 0)?;
            std::str::from_utf8(&tail[..end]).ok()
        }) else {
            continue;
        };
        const GLOBAL: u64 = 1;
        const WEAK: u64 = 2;
        const GNU_UNIQUE: u64 = 10;
        const UNDEFINED: u64 = 0;
        match (info >> 4, index) {
            (GLOBAL, UNDEFINED) => symbols.undefined.push(name.to_string()),
            (GLOBAL | WEAK | GNU_UNIQUE, index) if index != UNDEFINED => {
                symbols.api |= name.starts_with("sud_");
                symbols.defined.push(name.to_string());
            }
            _ => {}
        }
    }
    symbols
}

/// The members a link that names the interface pulls in: those defining a
/// `sud_*` symbol, and, as long as one of those needs a symbol another
/// member defines, that member (the first to define it, as a linker picks).
fn reachable(members: &[Symbols]) -> BTreeSet<usize> {
    let mut definer = HashMap::new();
    for (i, member) in members.iter().enumerate() {
        for name in &member.defined {
            definer.entry(name.as_str()).or_insert(i);
        }
    }
    let mut kept: BTreeSet<usize> = (0..members.len()).filter(|&i| members[i].api).collect();
    let mut todo: Vec<usize> = kept.iter().copied().collect();
    while let Some(i) = todo.pop() {
        for name in &members[i].undefined {
            if let Some(&j) = definer.get(name.as_str())
                && kept.insert(j)
            {
                todo.push(j);
            }
        }
    }
    kept
}

/// The members of a System V / GNU `ar` archive, in order: (name, data).
/// The symbol index (`/`, `/SYM64/`) and the long-name table (`//`) are
/// not members; `ar` writes a fresh index for the packed archive.
fn ar_members(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    const MAGIC: &[u8] = b"!<arch>\n";
    const HEADER: usize = 60;
    let mut rest = bytes.strip_prefix(MAGIC).ok_or("not an ar archive")?;
    let mut long_names: &[u8] = &[];
    let mut members = Vec::new();
    while !rest.is_empty() {
        if rest.len() < HEADER {
            return Err("truncated member header".into());
        }
        let (header, body) = rest.split_at(HEADER);
        let field = |range: std::ops::Range<usize>| {
            String::from_utf8_lossy(&header[range])
                .trim_end()
                .to_string()
        };
        let size: usize = field(48..58)
            .parse()
            .map_err(|_| "bad member size".to_string())?;
        let data = body.get(..size).ok_or("truncated member")?;
        rest = body.get(size + size % 2..).unwrap_or(&[]);
        let name = field(0..16);
        match name.as_str() {
            "/" | "/SYM64/" => {}
            "//" => long_names = data,
            _ => {
                let name = match name.strip_prefix('/') {
                    Some(offset) => {
                        let offset: usize = offset.parse().map_err(|_| "bad long name")?;
                        let tail = long_names.get(offset..).ok_or("bad long name offset")?;
                        let end = tail.iter().position(|&b| b == b'\n').unwrap_or(tail.len());
                        String::from_utf8_lossy(&tail[..end])
                            .trim_end_matches('/')
                            .to_string()
                    }
                    None => name.trim_end_matches('/').to_string(),
                };
                members.push((name, data));
            }
        }
    }
    Ok(members)
}
