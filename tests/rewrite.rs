//! Rewritten trap sites: 8 threads running one site while it is rewritten,
//! every call reaching the callback exactly once; a guest that overwrites
//! or unmaps and remaps a rewritten site runs its new code; `forget_sites`
//! puts the original bytes back.  Each test runs in a process of its own.

#![allow(non_upper_case_globals)]

mod common;

use common::guest::{armed_thread, blocked};
use common::{Ends, isolated};
use linux_raw_sys::general::{
    __NR_fork, __NR_getpid, __NR_getppid, __NR_mmap, __NR_mprotect, MAP_ANONYMOUS, MAP_FIXED,
    MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use sud::{Action, Policy, SiteForm, Syscall, host};

static CALLS: AtomicUsize = AtomicUsize::new(0);

fn handler(call: &mut Syscall) -> Action {
    CALLS.fetch_add(1, Ordering::SeqCst);
    match call.number() {
        __NR_getppid => Action::Emulate(4242),
        __NR_getpid => Action::Emulate(77),
        _ => Action::Reissue,
    }
}

/// How a test site sets EAX before its `syscall`, which decides the form
/// of its rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `mov eax, number; syscall; ret`: [`SiteForm::Mov`].
    Mov,
    /// `mov eax, edi; syscall; ret`, then alignment padding up to the next
    /// 16 bytes (and a `ret` there): [`SiteForm::Island`].
    Island,
    /// As `Island`, with a `jmp` into the padding before the site: the
    /// padding is not dead, the site stays trapped.
    PaddingTargeted,
    /// As `Island` with no padding after the `ret`: no island in reach,
    /// the site stays trapped.
    NoPadding,
}

/// Where the site's code starts in its page.
const CODE: usize = 16;

impl Shape {
    /// The site's code, starting at `CODE`, making syscall `number`.
    fn bytes(self, number: u32) -> Vec<u8> {
        // A 9-byte and a 2-byte nop: 11 bytes of padding after 5 of code.
        const PADDING: [u8; 11] = [0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0, 0x66, 0x90];
        let mut bytes = Vec::new();
        match self {
            Shape::Mov => {
                bytes.push(0xb8);
                bytes.extend_from_slice(&number.to_le_bytes());
                bytes.extend_from_slice(&[0x0f, 0x05, 0xc3]);
            }
            Shape::Island | Shape::NoPadding => {
                bytes.extend_from_slice(&[0x89, 0xf8, 0x0f, 0x05, 0xc3]);
                if self == Shape::Island {
                    bytes.extend_from_slice(&PADDING);
                }
                bytes.push(0xc3);
            }
            Shape::PaddingTargeted => {
                // jmp +5 (over the site, to the padding's first byte), then
                // the site, the padding and a ret: the jmp is never taken
                // (the code starts at the site), but could be.
                bytes.extend_from_slice(&[0xeb, 0x05, 0x89, 0xf8, 0x0f, 0x05, 0xc3]);
                bytes.extend_from_slice(&PADDING[..9]);
                bytes.push(0xc3);
            }
        }
        bytes
    }

    /// Where the code is called.
    fn entry(self, page: usize) -> usize {
        page + CODE + if self == Shape::PaddingTargeted { 2 } else { 0 }
    }

    /// The address of the site's `syscall`.
    fn syscall(self, page: usize) -> usize {
        self.entry(page) + if self == Shape::Mov { 5 } else { 2 }
    }
}

/// A test site of `shape` making `number` in a fresh page (or replacing
/// the page at `at`), executable.
fn code(at: usize, shape: Shape, number: u32) -> usize {
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
    write_code(page, shape, number);
    page
}

/// The guest writes a site's code into its page, as a JIT would.
fn write_code(page: usize, shape: Shape, number: u32) {
    let bytes = shape.bytes(number);
    // SAFETY: our page, writable now.
    unsafe {
        host::syscall3(__NR_mprotect, page, 4096, (PROT_READ | PROT_WRITE) as usize).unwrap();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (page + CODE) as *mut u8, bytes.len());
        host::syscall3(__NR_mprotect, page, 4096, (PROT_READ | PROT_EXEC) as usize).unwrap();
    }
}

/// Calls the site's code in `page` (`number` in EDI, for the shapes that
/// take it from there).
fn run(page: usize, shape: Shape, number: u32) -> usize {
    let result: usize;
    // SAFETY: the page holds the shape's code, or its rewrite.
    unsafe {
        core::arch::asm!("call {f}", f = in(reg) shape.entry(page), in("edi") number,
            out("rax") result, out("rcx") _, out("r11") _)
    };
    result
}

/// The form a site of `shape` in `page` is rewritten to.
fn form(page: usize, shape: Shape, number: u32) -> SiteForm {
    match shape {
        Shape::Mov => SiteForm::Mov { number },
        _ => SiteForm::Island {
            island: shape.syscall(page) + 3,
        },
    }
}

/// Whether the site in `page` is sud's jump now.
fn jumps(page: usize, shape: Shape) -> bool {
    let (at, opcode) = match shape {
        Shape::Mov => (shape.entry(page), 0xe9),
        _ => (shape.syscall(page), 0xeb),
    };
    // SAFETY: a mapped page of ours.
    unsafe { *(at as *const u8) == opcode }
}

fn rewritten() -> Vec<sud::Site> {
    let mut sites = Vec::new();
    sud::rewritten_sites(|site| sites.push(site));
    sites
}

/// 8 threads run one site while it is rewritten (at its 50th trap): every
/// call reaches the callback exactly once, with the right answer.
fn eight_threads_while_rewritten(shape: Shape) {
    const EACH: usize = 20_000;
    sud::install(handler).unwrap();
    let page = code(0, shape, __NR_getppid);
    sud::rewrite_sites(page..page + 4096, Policy::AfterTraps(50)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let thread = armed_thread();
                blocked(&thread, || {
                    (0..EACH).all(|_| run(page, shape, __NR_getppid) == 4242)
                })
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 8 * EACH);
    let sites = rewritten();
    assert_eq!(sites.len(), 1);
    let want = (shape.syscall(page), form(page, shape, __NR_getppid));
    assert_eq!((sites[0].syscall, sites[0].form), want);
    assert!(jumps(page, shape));
}

#[test]
fn eight_threads_while_a_mov_site_is_rewritten() {
    isolated(
        "eight_threads_while_a_mov_site_is_rewritten",
        Ends::Passing,
        || eight_threads_while_rewritten(Shape::Mov),
    );
}

#[test]
fn eight_threads_while_an_island_site_is_rewritten() {
    isolated(
        "eight_threads_while_an_island_site_is_rewritten",
        Ends::Passing,
        || eight_threads_while_rewritten(Shape::Island),
    );
}

/// A rewritten site the guest overwrites, then unmaps and maps again, runs
/// the new code (and is rewritten anew); `forget_sites` puts the original
/// bytes back.
fn overwritten_unmapped_and_forgotten(shape: Shape) {
    sud::install(handler).unwrap();
    let page = code(0, shape, __NR_getppid);
    sud::rewrite_sites(page..page + 4096, Policy::FirstTrap).unwrap();
    let thread = armed_thread();
    blocked(&thread, || {
        assert_eq!(run(page, shape, __NR_getppid), 4242);
        assert!(jumps(page, shape));
        assert_eq!(run(page, shape, __NR_getppid), 4242);
        // The guest writes new code over the site.
        write_code(page, shape, __NR_getpid);
        assert!(!jumps(page, shape));
        assert_eq!(run(page, shape, __NR_getpid), 77);
        assert_eq!(run(page, shape, __NR_getpid), 77); // rewritten anew
        assert!(jumps(page, shape));
        // ... and maps new code where it was.
        code(page, shape, __NR_getppid);
        assert_eq!(run(page, shape, __NR_getppid), 4242);
        assert_eq!(run(page, shape, __NR_getppid), 4242);
        assert!(jumps(page, shape));
    });
    assert_eq!(sud::forget_sites(page..page + 4096), 1);
    assert!(!jumps(page, shape));
    assert!(rewritten().is_empty());
    blocked(&thread, || assert_eq!(run(page, shape, __NR_getppid), 4242));
    assert_eq!(CALLS.load(Ordering::SeqCst), 7);
}

#[test]
fn mov_sites_overwritten_unmapped_and_forgotten() {
    isolated(
        "mov_sites_overwritten_unmapped_and_forgotten",
        Ends::Passing,
        || overwritten_unmapped_and_forgotten(Shape::Mov),
    );
}

#[test]
fn island_sites_overwritten_unmapped_and_forgotten() {
    isolated(
        "island_sites_overwritten_unmapped_and_forgotten",
        Ends::Passing,
        || overwritten_unmapped_and_forgotten(Shape::Island),
    );
}

/// Forgetting only the island's bytes puts its site back too.
#[test]
fn forgetting_an_island_forgets_its_site() {
    isolated(
        "forgetting_an_island_forgets_its_site",
        Ends::Passing,
        || {
            sud::install(handler).unwrap();
            let page = code(0, Shape::Island, __NR_getppid);
            sud::rewrite_sites(page..page + 4096, Policy::FirstTrap).unwrap();
            let thread = armed_thread();
            blocked(&thread, || run(page, Shape::Island, __NR_getppid));
            assert!(jumps(page, Shape::Island));
            let island = Shape::Island.syscall(page) + 3;
            assert_eq!(sud::forget_sites(island + 4..island + 5), 1);
            assert!(!jumps(page, Shape::Island));
        },
    );
}

/// Sites with no usable island stay trapped, and keep working.
fn stays_trapped(name: &str, shape: Shape) {
    isolated(name, Ends::Passing, || {
        sud::install(handler).unwrap();
        let page = code(0, shape, __NR_getppid);
        sud::rewrite_sites(page..page + 4096, Policy::FirstTrap).unwrap();
        let thread = armed_thread();
        blocked(&thread, || {
            for _ in 0..3 {
                assert_eq!(run(page, shape, __NR_getppid), 4242);
            }
        });
        assert!(!jumps(page, shape));
        assert!(rewritten().is_empty());
        assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn padding_a_branch_targets_is_no_island() {
    stays_trapped(
        "padding_a_branch_targets_is_no_island",
        Shape::PaddingTargeted,
    );
}

#[test]
fn no_padding_in_reach_no_island() {
    stays_trapped("no_padding_in_reach_no_island", Shape::NoPadding);
}

/// Threads that run a site with every signal but SIGSYS blocked (as glibc
/// does while it starts a thread) while the site is rewritten, put back and
/// rewritten again, 200 times: none may meet anything it cannot run (an
/// `int3` with SIGTRAP blocked is death by the kernel's hand), and every
/// call reaches the callback once.
fn rewritten_under_blocked_signals(shape: Shape) {
    use std::sync::atomic::AtomicBool;
    static STOP: AtomicBool = AtomicBool::new(false);
    sud::install(handler).unwrap();
    let page = code(0, shape, __NR_getppid);
    let range = page..page + 4096;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let thread = armed_thread();
                // SAFETY: a full set but SIGSYS, the calling thread's own mask.
                unsafe {
                    let mut all: libc::sigset_t = std::mem::zeroed();
                    libc::sigfillset(&mut all);
                    libc::sigdelset(&mut all, libc::SIGSYS);
                    libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                }
                let mut calls = 0usize;
                let ok = blocked(&thread, || {
                    let mut ok = true;
                    while !STOP.load(Ordering::Relaxed) {
                        ok &= run(page, shape, __NR_getppid) == 4242;
                        calls += 1;
                    }
                    ok
                });
                (ok, calls)
            })
        })
        .collect();
    let mut rewrites = 0;
    for _ in 0..200 {
        sud::rewrite_sites(range.clone(), Policy::FirstTrap).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !jumps(page, shape) {
            assert!(
                std::time::Instant::now() < deadline,
                "the site is not rewritten"
            );
            std::thread::yield_now();
        }
        rewrites += sud::forget_sites(range.clone());
    }
    STOP.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for t in threads {
        let (ok, n) = t.join().unwrap();
        assert!(ok);
        calls += n;
    }
    assert_eq!(rewrites, 200);
    assert_eq!(CALLS.load(Ordering::SeqCst), calls);
}

#[test]
fn a_mov_site_rewritten_under_blocked_signals() {
    isolated(
        "a_mov_site_rewritten_under_blocked_signals",
        Ends::Passing,
        || rewritten_under_blocked_signals(Shape::Mov),
    );
}

#[test]
fn an_island_site_rewritten_under_blocked_signals() {
    isolated(
        "an_island_site_rewritten_under_blocked_signals",
        Ends::Passing,
        || rewritten_under_blocked_signals(Shape::Island),
    );
}

/// Host code called from a rewritten site runs with the host's GS base,
/// not the mark sud keeps there for the guest, and a thread it makes
/// starts with the host's too (a thread inheriting another's mark would
/// be taken for it at its first rewritten site).
#[test]
fn host_code_and_its_threads_see_the_hosts_gs() {
    isolated(
        "host_code_and_its_threads_see_the_hosts_gs",
        Ends::Passing,
        || {
            static SEEN: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
            fn gs_base() -> u64 {
                let gs: u64;
                // SAFETY: FSGSBASE is enabled (rewrite_sites succeeded).
                unsafe { core::arch::asm!("rdgsbase {}", out(reg) gs) };
                gs
            }
            fn spawning(call: &mut Syscall) -> Action {
                let child = std::thread::spawn(gs_base).join().unwrap();
                SEEN.lock().unwrap().push((gs_base(), child));
                handler(call)
            }
            sud::install(spawning).unwrap();
            let page = code(0, Shape::Mov, __NR_getppid);
            sud::rewrite_sites(page..page + 4096, Policy::FirstTrap).unwrap();
            let host = gs_base();
            let thread = armed_thread();
            blocked(&thread, || {
                for _ in 0..3 {
                    assert_eq!(run(page, Shape::Mov, __NR_getppid), 4242);
                }
            });
            assert!(jumps(page, Shape::Mov));
            let seen = SEEN.lock().unwrap();
            assert_eq!(seen.len(), 3);
            for &(callback, child) in seen.iter() {
                assert_eq!((callback, child), (host, host));
            }
        },
    );
}

/// A guest thread forks over and over while other threads run a site that
/// is rewritten and put back 300 times: no child may copy a site in the
/// middle of a write (its `jmp $` would hold the child's call forever):
/// every child runs the site, gets the callback's answer and exits within
/// seconds.
fn forks_while_rewritten(shape: Shape) {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};
    static STOP: AtomicBool = AtomicBool::new(false);
    sud::install(handler).unwrap();
    let page = code(0, shape, __NR_getppid);
    let range = page..page + 4096;
    let callers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let thread = armed_thread();
                blocked(&thread, || {
                    while !STOP.load(Ordering::Relaxed) {
                        assert_eq!(run(page, shape, __NR_getppid), 4242);
                    }
                })
            })
        })
        .collect();
    let forker = std::thread::spawn(move || {
        let thread = armed_thread();
        let mut children = 0;
        while !STOP.load(Ordering::Relaxed) {
            // SAFETY: the child only runs the site and exits.
            let pid = blocked(&thread, || unsafe { sud::guest::syscall0(__NR_fork) }).unwrap();
            if pid == 0 {
                let answer = blocked(&thread, || run(page, shape, __NR_getppid));
                // SAFETY: the child ends here.
                unsafe { libc::_exit(if answer == 4242 { 0 } else { 1 }) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut status = 0;
            // SAFETY: our child.
            while unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } == 0 {
                if Instant::now() > deadline {
                    // SAFETY: our child, stuck.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    panic!("fork child {children} did not end");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{status:#x}"
            );
            children += 1;
        }
        children
    });
    for _ in 0..300 {
        sud::rewrite_sites(range.clone(), Policy::FirstTrap).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !jumps(page, shape) {
            assert!(Instant::now() < deadline, "the site is not rewritten");
            std::thread::yield_now();
        }
        while sud::forget_sites(range.clone()) == 0 {
            assert!(Instant::now() < deadline, "the site is not put back");
            std::thread::yield_now();
        }
    }
    STOP.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().unwrap();
    }
    assert!(forker.join().unwrap() > 0);
}

#[test]
fn forks_while_a_mov_site_is_rewritten() {
    isolated("forks_while_a_mov_site_is_rewritten", Ends::Passing, || {
        forks_while_rewritten(Shape::Mov)
    });
}

#[test]
fn forks_while_an_island_site_is_rewritten() {
    isolated(
        "forks_while_an_island_site_is_rewritten",
        Ends::Passing,
        || forks_while_rewritten(Shape::Island),
    );
}

/// Forgetting part of a range puts back and stops rewriting the sites in
/// that part only: the rest of the range is still rewritten.
#[test]
fn forgetting_part_of_a_range_keeps_the_rest() {
    isolated(
        "forgetting_part_of_a_range_keeps_the_rest",
        Ends::Passing,
        || {
            sud::install(handler).unwrap();
            let first = code(0, Shape::Mov, __NR_getppid);
            let range = first..first + 4096;
            // A second page right after the first, if the kernel gives it.
            let second = code(first + 4096, Shape::Mov, __NR_getppid);
            sud::rewrite_sites(first..second + 4096, Policy::FirstTrap).unwrap();
            assert_eq!(
                sud::rewrite_sites(first..first, Policy::FirstTrap).unwrap_err(),
                sud::Error::Os(sud::Errno::EINVAL)
            );
            let thread = armed_thread();
            let both = || {
                blocked(&thread, || {
                    for page in [first, second] {
                        assert_eq!(run(page, Shape::Mov, __NR_getppid), 4242);
                    }
                })
            };
            both();
            assert!(jumps(first, Shape::Mov) && jumps(second, Shape::Mov));
            assert_eq!(sud::forget_sites(range), 1);
            for _ in 0..3 {
                both();
            }
            assert!(
                !jumps(first, Shape::Mov),
                "the forgotten part was rewritten again"
            );
            assert!(jumps(second, Shape::Mov));
            assert_eq!(rewritten().len(), 1);
        },
    );
}
