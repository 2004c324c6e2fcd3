//! Rewritten trap sites: 8 threads running one site while it is rewritten,
//! every call reaching the callback exactly once; a guest that overwrites
//! or unmaps and remaps a rewritten site runs its new code; `forget_sites`
//! puts the original bytes back.  Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::guest::{armed_thread, blocked};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_getpid, __NR_getppid, __NR_mmap, __NR_mprotect, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE,
    PROT_EXEC, PROT_READ, PROT_WRITE,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use sud::{Action, Policy, Syscall, host};

static CALLS: AtomicUsize = AtomicUsize::new(0);

fn handler(call: &mut Syscall) -> Action {
    CALLS.fetch_add(1, Ordering::SeqCst);
    match call.number() {
        __NR_getppid => Action::Emulate(4242),
        __NR_getpid => Action::Emulate(77),
        _ => Action::Reissue,
    }
}

/// `mov eax, number; syscall; ret` at `at` (a fresh page if 0), executable.
fn code(at: usize, number: u32) -> usize {
    let fixed = if at == 0 { 0 } else { MAP_FIXED };
    // SAFETY: a fresh private mapping (or our own page, replaced).
    let page = unsafe {
        host::syscall6(
            __NR_mmap,
            at,
            4096,
            (PROT_READ | PROT_WRITE) as usize,
            (MAP_PRIVATE | MAP_ANONYMOUS | fixed) as usize,
            usize::MAX,
            0,
        )
    }
    .unwrap();
    write_code(page, number);
    page
}

fn write_code(page: usize, number: u32) {
    let mut bytes = vec![0xb8];
    bytes.extend_from_slice(&number.to_le_bytes());
    bytes.extend_from_slice(&[0x0f, 0x05, 0xc3]);
    // SAFETY: our page, writable now.
    unsafe {
        host::syscall3(__NR_mprotect, page, 4096, (PROT_READ | PROT_WRITE) as usize).unwrap();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (page + 16) as *mut u8, bytes.len());
        host::syscall3(__NR_mprotect, page, 4096, (PROT_READ | PROT_EXEC) as usize).unwrap();
    }
}

/// Calls the site's code in `page`.
fn run(page: usize) -> usize {
    let result: usize;
    // SAFETY: the page holds `mov eax, n; syscall; ret`, or its rewrite.
    unsafe {
        core::arch::asm!("call {f}", f = in(reg) page + 16, out("rax") result,
            out("rcx") _, out("r11") _)
    };
    result
}

#[test]
fn eight_threads_while_rewritten() {
    isolated("eight_threads_while_rewritten", Ends::Passing, || {
        const EACH: usize = 20_000;
        sud::install(handler).unwrap();
        let page = code(0, __NR_getppid);
        sud::rewrite_sites(page..page + 4096, Policy::AfterTraps(50)).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let thread = armed_thread();
                    blocked(&thread, || (0..EACH).all(|_| run(page) == 4242))
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 8 * EACH);
        let mut sites = Vec::new();
        sud::rewritten_sites(|site| sites.push(site));
        assert_eq!(sites.len(), 1);
        assert_eq!((sites[0].addr, sites[0].number), (page + 16, __NR_getppid));
    });
}

#[test]
fn overwritten_unmapped_and_forgotten_sites() {
    isolated(
        "overwritten_unmapped_and_forgotten_sites",
        Ends::Passing,
        || {
            sud::install(handler).unwrap();
            let page = code(0, __NR_getppid);
            sud::rewrite_sites(page..page + 4096, Policy::FirstTrap).unwrap();
            let thread = armed_thread();
            let jumps = |page: usize| unsafe { *((page + 16) as *const u8) } == 0xe9;
            blocked(&thread, || {
                assert_eq!(run(page), 4242);
                assert!(jumps(page));
                assert_eq!(run(page), 4242);
                // The guest writes new code over the site.
                write_code(page, __NR_getpid);
                assert_eq!(run(page), 77);
                assert_eq!(run(page), 77); // rewritten anew
                assert!(jumps(page));
                // ... and maps new code where it was.
                code(page, __NR_getppid);
                assert_eq!(run(page), 4242);
                assert_eq!(run(page), 4242);
                assert!(jumps(page));
            });
            assert_eq!(sud::forget_sites(page..page + 4096), 1);
            assert!(!jumps(page));
            blocked(&thread, || assert_eq!(run(page), 4242));
            assert_eq!(CALLS.load(Ordering::SeqCst), 7);
        },
    );
}
