//! Edges of guest threads found by an adversarial review, each a
//! reproducer that failed before its fix: hook threads (CLONE_SETTLS
//! without FSGSBASE, CLONE_PARENT_SETTID before the child runs, clone3
//! arguments the kernel refuses, which must fail as natively) and clone3
//! arguments the kernel refuses without a hook (nothing written below the
//! stack).  Each test runs in a process of its own.
#![allow(non_upper_case_globals)]

mod common;

use common::guest::GuestTls;
use common::{Ends, isolated};
use linux_raw_sys::general::{__NR_getppid, __NR_tgkill};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use sud::{Errno, Thread};

core::arch::global_asm!(
    include_str!("common/edges.s"),
    NR_GETPPID = const __NR_getppid,
    NR_TGKILL = const __NR_tgkill,
    ENTRY = sym sud_entry_sym,
    NR_CLONE = const linux_raw_sys::general::__NR_clone,
    NR_EXIT = const linux_raw_sys::general::__NR_exit,
);

unsafe extern "C" {
    #[link_name = "sud_entry"]
    fn sud_entry_sym();
}

thread_local! {
    static TLS_COUNT: Cell<u64> = const { Cell::new(0) };
}

use common::asm::{CloneTest, guest_clone};
use common::threads::THREAD_FLAGS;
use sud::GuestThread;

fn hook(start: GuestThread) -> Result<(), Errno> {
    std::thread::Builder::new()
        .spawn(move || {
            let thread = Thread::new().unwrap();
            let status = thread.run_guest(start).unwrap();
            HOOK_EXITS.fetch_add(1, Ordering::SeqCst);
            let _ = status;
        })
        .map(drop)
        .map_err(|_| Errno::EAGAIN)
}
static HOOK_EXITS: AtomicUsize = AtomicUsize::new(0);

/// clone3 with a thread's flags and arguments the kernel refuses: the
/// result natively, and under sud with the hook.
fn clone3_result(armed: Option<&Thread>, fields: &[(usize, u64)], stack: &mut Vec<u8>) -> i64 {
    let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
    let base = stack.as_mut_ptr() as u64;
    let parent_tid = Box::leak(Box::new(std::sync::atomic::AtomicU32::new(0)));
    // Not 0: CLONE_CHILD_CLEARTID's 0 is how the creator knows the child
    // is done with `t`, which lives in this frame.
    let child_tid = Box::leak(Box::new(std::sync::atomic::AtomicU32::new(u32::MAX)));
    let mut t = CloneTest {
        flags: THREAD_FLAGS,
        stack_top: top,
        clone3: 1,
        ..Default::default()
    };
    t.parent_tid = parent_tid.as_ptr() as u64;
    t.child_tid = child_tid.as_ptr() as u64;
    t.args[..8].copy_from_slice(&[
        THREAD_FLAGS,
        0,
        t.child_tid,
        t.parent_tid,
        0,
        base,
        top - base,
        0,
    ]);
    for &(i, v) in fields {
        t.args[i] = v;
    }
    let r = match armed {
        // SAFETY: the clone routine gives the child its own stack and state, and the child only exits.
        None => unsafe { guest_clone(&mut t) },
        Some(th) => common::guest::blocked(th, || unsafe { guest_clone(&mut t) }),
    };
    if r > 0 {
        common::wait_for_thread_exit(child_tid, r);
    }
    r
}

#[test]
fn spawn_hook_clone3_invalid_args() {
    isolated("spawn_hook_clone3_invalid_args", Ends::Passing, || {
        let cases: Vec<(&str, Vec<(usize, u64)>)> = vec![
            (
                "exit_signal with CLONE_THREAD",
                vec![(4, libc::SIGCHLD as u64)],
            ),
            ("stack without stack_size", vec![(6, 0)]),
            ("set_tid", vec![(8, 0), (9, 1)]),
        ];
        let mut native = vec![];
        for (name, f) in &cases {
            let mut stack = vec![0u8; 64 * 1024];
            let mut f = f.clone();
            let want_tid: i32 = 400_000;
            let tid_box = Box::leak(Box::new(want_tid));
            if *name == "set_tid" {
                f[0].1 = tid_box as *mut i32 as u64;
            }
            let r = clone3_result(None, &f, &mut stack);
            std::mem::forget(stack);
            native.push(r);
        }
        sud::install(common::guest::emulate_getppid).unwrap();
        sud::set_spawn_hook(Some(hook));
        let th = common::guest::armed_thread();
        let mut under = vec![];
        for (name, f) in &cases {
            let mut stack = vec![0u8; 64 * 1024];
            let mut f = f.clone();
            let tid_box = Box::leak(Box::new(400_001i32));
            if *name == "set_tid" {
                f[0].1 = tid_box as *mut i32 as u64;
            }
            let r = clone3_result(Some(&th), &f, &mut stack);
            std::mem::forget(stack);
            under.push(r);
        }
        for (i, (name, _)) in cases.iter().enumerate() {
            eprintln!("{name}: native {} under hook {}", native[i], under[i]);
        }
        let mut bad = false;
        for i in 0..cases.len() {
            if (native[i] > 0) != (under[i] > 0) || (native[i] < 0 && native[i] != under[i]) {
                bad = true;
            }
        }
        assert!(!bad);
    });
}

/// Spawn hook, CLONE_SETTLS to a thread area of the guest's: the callback
/// on the hook's host thread must find the host thread's thread-locals.
#[test]
fn spawn_hook_settls_callback_tls() {
    isolated("spawn_hook_settls_callback_tls", Ends::Passing, || {
        sud::install(|call| {
            TLS_COUNT.with(|c| c.set(c.get() + 1));
            let _name = std::thread::current().name().map(str::to_owned);
            common::guest::emulate_getppid(call)
        })
        .unwrap();
        sud::set_spawn_hook(Some(hook));
        let th = common::guest::armed_thread();
        let tls = GuestTls::new();
        let mut stack = vec![0u8; 64 * 1024];
        let r = clone3_result(
            Some(&th),
            &[
                (
                    0,
                    THREAD_FLAGS | linux_raw_sys::general::CLONE_SETTLS as u64,
                ),
                (7, tls.fs()),
            ],
            &mut stack,
        );
        assert!(r > 0, "{r}");
        for _ in 0..1000 {
            if HOOK_EXITS.load(Ordering::SeqCst) == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(HOOK_EXITS.load(Ordering::SeqCst), 1);
        assert!(tls.untouched());
    });
}

/// clone3 with a stack but stack_size 0 (the kernel refuses: EINVAL), no
/// hook: nothing may be written outside the guest's memory.
#[test]
fn clone3_zero_stack_size_writes_below_stack() {
    isolated(
        "clone3_zero_stack_size_writes_below_stack",
        Ends::Passing,
        || {
            sud::install(common::guest::emulate_getppid).unwrap();
            let th = common::guest::armed_thread();
            let mut mem = vec![0x77u8; 64 * 1024];
            let base = mem.as_mut_ptr() as u64 + 4096; // the "stack" starts here
            let mut t = CloneTest {
                flags: THREAD_FLAGS,
                clone3: 1,
                ..Default::default()
            };
            t.args[..8].copy_from_slice(&[THREAD_FLAGS, 0, 0, 0, 0, base, 0, 0]);
            // SAFETY: as in clone_result.
            let r = common::guest::blocked(&th, || unsafe { guest_clone(&mut t) });
            let changed: Vec<usize> = (0..4096).filter(|&i| mem[i] != 0x77).collect();
            eprintln!(
                "clone3 -> {r}; bytes changed below the stack: {:?}",
                changed.iter().map(|i| *i as i64 - 4096).collect::<Vec<_>>()
            );
            assert_eq!(r, -(libc::EINVAL as i64));
            assert!(changed.is_empty());
        },
    );
}

unsafe extern "C" {
    fn rv_clone_ptid(flags: u64, top: u64, ptid: *mut u32, ctid: *mut u32, out: *mut u64) -> i64;
}

fn ptid_mismatches(armed: Option<&Thread>, rounds: usize) -> usize {
    let mut bad = 0;
    for _ in 0..rounds {
        let mut stack = vec![0u8; 64 * 1024];
        let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
        let ptid = std::sync::atomic::AtomicU32::new(0);
        let ctid = std::sync::atomic::AtomicU32::new(u32::MAX);
        let mut out = 0u64;
        let mut f =
            // SAFETY: the child runs on `top`, writes the tid words and exits.
            || unsafe { rv_clone_ptid(THREAD_FLAGS, top, ptid.as_ptr(), ctid.as_ptr(), &mut out) };
        let tid = match armed {
            None => f(),
            Some(t) => common::guest::blocked(t, f),
        };
        assert!(tid > 0);
        common::wait_for_thread_exit(&ctid, tid);
        if out != tid as u64 {
            bad += 1;
        }
        drop(stack);
    }
    bad
}

/// CLONE_PARENT_SETTID: natively written before the child runs (glibc's
/// pd->tid); the child reads it first thing.
#[test]
fn spawn_hook_parent_settid_before_child_runs() {
    isolated(
        "spawn_hook_parent_settid_before_child_runs",
        Ends::Passing,
        || {
            let native = ptid_mismatches(None, 200);
            sud::install(common::guest::emulate_getppid).unwrap();
            let th = common::guest::armed_thread();
            let raw = ptid_mismatches(Some(&th), 200);
            sud::set_spawn_hook(Some(hook));
            let hooked = ptid_mismatches(Some(&th), 200);
            eprintln!(
                "child read parent_tid != its tid: native {native}/200, sud raw clone {raw}/200, spawn hook {hooked}/200"
            );
            assert_eq!(hooked, 0);
        },
    );
}
