//! The allowed region as the linker laid it out: found, page-aligned by
//! link.ld, executable, holding every entry point under its documented
//! name, the restorer's exact bytes, and every runtime syscall able to run
//! while the selector says BLOCK with no SIGSYS handler at all.

#![no_std]
#![no_main]

use linux_raw_sys::general::{
    __NR_close, __NR_getpid, __NR_getppid, __NR_gettid, __NR_openat, __NR_read, AT_FDCWD, O_RDONLY,
    SIGSYS,
};
use sud::{Errno, SELECTOR, host};
use sud_freestanding::{case, check, check_eq, run, say};

#[unsafe(no_mangle)]
fn test_main() -> i32 {
    let region = sud::allowed_region();
    say!("allowed region {:#x}..{:#x}", region.start, region.end);
    run(&[
        case!(region_found_and_page_aligned),
        case!(region_holds_every_entry_point),
        case!(region_goes_on_past_every_syscall),
        case!(restorer_bytes),
        case!(region_is_executable_mapping),
        case!(symbols_for_generated_code),
        case!(trampolines_run_while_blocked),
        case!(outside_syscall_traps_while_blocked, signal SIGSYS),
    ])
}

unsafe extern "C" {
    // The names generated code uses, resolved by the linker.
    static sud_selector: u8;
    fn sud_syscall0(nr: usize) -> usize;
    fn sud_syscall3(nr: usize, a1: usize, a2: usize, a3: usize) -> usize;
    fn sud_syscall6(
        nr: usize,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
        a6: usize,
    ) -> usize;
    fn sud_syscall();
    static sud_restorer: u8;
}

fn region_found_and_page_aligned() {
    let region = sud::allowed_region();
    check!(!region.is_empty(), "empty region {region:?}");
    // link.ld gives the region pages of its own.
    check_eq!(region.start % 4096, 0);
    check_eq!(region.end % 4096, 0);
}

fn region_holds_every_entry_point() {
    let region = sud::allowed_region();
    let s = sud::region_symbols();
    for (i, &f) in s.syscall_c.iter().enumerate() {
        check!(
            region.contains(&f),
            "sud_syscall{i} at {f:#x} outside {region:?}"
        );
    }
    for (name, f) in [
        ("sud_syscall", s.syscall),
        ("sud_reissue", s.reissue),
        ("sud_reissue_sigreturn", s.reissue_sigreturn),
        ("sud_restorer", s.restorer),
    ] {
        check!(region.contains(&f), "{name} at {f:#x} outside {region:?}");
    }
    check!(
        region.contains(&s.entry),
        "sud_entry at {:#x} outside {region:?}",
        s.entry
    );
}

/// The kernel tests the address *after* a `syscall`: every `0f 05` in the
/// region (every syscall instruction, and perhaps a few bytes that only look
/// like one) is followed by at least one more byte of the region.
fn region_goes_on_past_every_syscall() {
    let region = sud::allowed_region();
    // SAFETY: the region is mapped code, readable.
    let bytes = unsafe { core::slice::from_raw_parts(region.start as *const u8, region.len()) };
    let mut syscalls = 0;
    for (i, pair) in bytes.windows(2).enumerate() {
        if pair == [0x0f, 0x05] {
            syscalls += 1;
            check!(
                region.start + i + 2 < region.end,
                "a syscall ends the region at {:#x}",
                region.start + i
            );
        }
    }
    // The trampolines, stubs and restorer hold more than 20 of them.
    check!(
        syscalls > 20,
        "only {syscalls} syscall instructions in the region"
    );
}

fn restorer_bytes() {
    let restorer = sud::region_symbols().restorer as *const [u8; 9];
    // SAFETY: the restorer is at least nine bytes of code, readable.
    let bytes = unsafe { *restorer };
    check_eq!(
        bytes,
        [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05]
    );
    check_eq!(
        sud::region_symbols().restorer,
        (&raw const sud_restorer) as usize
    );
}

/// /proc/self/maps has the region inside one read-execute mapping.
fn region_is_executable_mapping() {
    let region = sud::allowed_region();
    let mut buf = [0u8; 16384];
    let len = read_file(b"/proc/self/maps\0", &mut buf);
    let maps = core::str::from_utf8(&buf[..len]).unwrap();
    let mut found = false;
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        let (lo, hi) = range.split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if lo <= region.start && region.end <= hi {
            check_eq!(perms, "r-xp");
            found = true;
        }
    }
    check!(found, "no mapping holds the region:\n{maps}");
}

/// The documented symbols are what the API returns, and callable by name.
fn symbols_for_generated_code() {
    check_eq!(
        (&raw const sud_selector) as usize,
        SELECTOR.as_ptr() as usize
    );
    check_eq!(
        sud_syscall as *const () as usize,
        sud::region_symbols().syscall
    );
    // SAFETY: plain syscalls through the trampolines, by their symbol names.
    unsafe {
        check_eq!(
            sud_syscall0(__NR_getpid as usize),
            host::syscall0(__NR_getpid).unwrap()
        );
        let mut buf = [0u8; 8];
        let bad_fd = sud_syscall3(__NR_read as usize, usize::MAX, buf.as_mut_ptr() as usize, 8);
        check_eq!(Errno::result(bad_fd), Err(Errno::EBADF));
        check_eq!(
            sud_syscall6(__NR_gettid as usize, 1, 2, 3, 4, 5, 6),
            host::syscall0(__NR_gettid).unwrap()
        );
    }
}

/// The raw-register trampoline, as generated code calls it.
fn raw_trampoline_getppid() -> usize {
    let result: usize;
    // SAFETY: `call sud_syscall` with the syscall registers: it clobbers rcx
    // and r11 only; the stack is aligned for the call.
    unsafe {
        core::arch::asm!(
            "call {f}",
            f = sym sud_syscall,
            inlateout("rax") __NR_getppid as usize => result,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    result
}

/// With the thread armed over the region, the selector at BLOCK and no SIGSYS
/// handler (a dispatched syscall would kill the process), every kind of
/// runtime syscall still runs: the C trampolines of each arity, the raw one,
/// and prctl itself to disarm.
fn trampolines_run_while_blocked() {
    let ppid = host_getppid();
    check_eq!(arm_without_handler(), Ok(()));
    // SAFETY: only trampoline syscalls run until allow().
    unsafe { SELECTOR.block() };
    let results = [
        host_getppid(),
        raw_trampoline_getppid(),
        // SAFETY: getppid ignores arguments.
        unsafe { host::syscall1(__NR_getppid, 1) }.unwrap(),
        unsafe { host::syscall2(__NR_getppid, 1, 2) }.unwrap(),
        unsafe { host::syscall3(__NR_getppid, 1, 2, 3) }.unwrap(),
        unsafe { host::syscall4(__NR_getppid, 1, 2, 3, 4) }.unwrap(),
        unsafe { host::syscall5(__NR_getppid, 1, 2, 3, 4, 5) }.unwrap(),
        unsafe { host::syscall6(__NR_getppid, 1, 2, 3, 4, 5, 6) }.unwrap(),
    ];
    let disarmed = sud::disarm();
    SELECTOR.allow();
    check_eq!(disarmed, Ok(()));
    check_eq!(results, [ppid; 8]);
}

/// The control for the case above: the same setup with one syscall from
/// outside the region is dispatched, and with no handler the process dies of
/// SIGSYS.  Without it, a runtime that never armed would pass as well.
fn outside_syscall_traps_while_blocked() {
    check_eq!(arm_without_handler(), Ok(()));
    // SAFETY: the inline syscall below is meant to be dispatched.
    unsafe {
        SELECTOR.block();
        let _ = sud::guest::syscall0(__NR_getppid);
    }
    SELECTOR.allow();
    say!("  unreachable: the outside syscall was not dispatched");
}

/// Arms the thread over the region with the global selector and no SIGSYS
/// handler: the raw interface, since `sud::arm` refuses to arm before
/// `sud::install` (a trapped syscall would kill the process, which is what
/// these cases want).
fn arm_without_handler() -> Result<(), sud::Error> {
    let region = sud::allowed_region();
    // SAFETY: the range exempts the region, so sud's own syscalls run; the
    // selector is the static global one.
    unsafe {
        sud::set_syscall_user_dispatch(
            linux_raw_sys::prctl::PR_SYS_DISPATCH_EXCLUSIVE_ON,
            region.start,
            region.len(),
            SELECTOR.as_ptr(),
        )
    }
}

fn host_getppid() -> usize {
    // SAFETY: getppid has no arguments and no effect.
    unsafe { host::syscall0(__NR_getppid) }.unwrap()
}

fn read_file(path: &[u8], buf: &mut [u8]) -> usize {
    // SAFETY: a NUL-terminated path; reads into a live buffer.
    unsafe {
        let fd = host::syscall4(
            __NR_openat,
            AT_FDCWD as usize,
            path.as_ptr() as usize,
            O_RDONLY as usize,
            0,
        )
        .unwrap();
        let mut len = 0;
        loop {
            match host::syscall3(
                __NR_read,
                fd,
                buf.as_mut_ptr().add(len) as usize,
                buf.len() - len,
            ) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) => panic!("read: {e}"),
            }
        }
        let _ = host::syscall1(__NR_close, fd);
        len
    }
}
