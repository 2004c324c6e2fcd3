//! Host threads for guest threads: with a spawn hook, each thread guest
//! code creates (raw clone or clone3) runs on a host thread the host made,
//! with native clone semantics for the guest (registers, flags, stack,
//! signal mask, tid words, its own selector, CLONE_CHILD_CLEARTID's wake at
//! its exit) and the host thread's own thread-locals for the callback.
//! Each test runs in a process of its own.

mod common;

use common::guest::{armed_thread, emulate_getppid};
use common::threads::run_guest_thread;
use common::{Ends, isolated};
use std::sync::Mutex;
use sud::{Action, Errno, GuestThread, Syscall, Thread};

/// The exit statuses of the guest threads the hook ran, and the names of
/// the host threads their callbacks ran on.
static EXITS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static CALLBACK_THREADS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The host's hook: a named std thread for each guest thread.
fn std_spawn_hook(start: GuestThread) -> Result<(), Errno> {
    std::thread::Builder::new()
        .name("guest thread".into())
        .spawn(move || {
            let thread = Thread::new().unwrap();
            let status = thread.run_guest(start).unwrap();
            EXITS.lock().unwrap().push(status);
        })
        .map(drop)
        .map_err(|_| Errno::EAGAIN)
}

/// The tests' policy, remembering (with std: a thread-local name, a lock,
/// an allocation) which host thread each callback ran on.
fn naming_callback(call: &mut Syscall) -> Action {
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    CALLBACK_THREADS.lock().unwrap().push(name);
    emulate_getppid(call)
}

/// Waits (up to 10 s) for `count` guest threads to have come back to their
/// host threads.
fn wait_for_exits(count: usize) -> Vec<i32> {
    for _ in 0..10_000 {
        let exits = EXITS.lock().unwrap().clone();
        if exits.len() >= count {
            return exits;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the guest threads never came back");
}

#[test]
fn guest_threads_run_on_host_threads_with_native_clone_semantics() {
    isolated(
        "guest_threads_run_on_host_threads_with_native_clone_semantics",
        Ends::Passing,
        || {
            sud::install(naming_callback).unwrap();
            sud::set_spawn_hook(Some(std_spawn_hook));
            let thread = armed_thread();
            run_guest_thread(&thread, false);
            run_guest_thread(&thread, true);
            // Each exited with status 0, back on its host thread.
            assert_eq!(wait_for_exits(2), [0, 0]);
            // Each child's trapped getppid ran its callback on the host
            // thread the hook made, with that thread's own thread data.
            let names = CALLBACK_THREADS.lock().unwrap().clone();
            let on_guest_threads = names.iter().filter(|n| *n == "guest thread").count();
            assert!(on_guest_threads >= 2, "callbacks ran on {names:?}");
        },
    );
}

/// Many guest threads, one after another, each on a host thread of its own
/// that goes on (and ends) as ordinary host code.
#[test]
fn many_guest_threads_come_back_to_their_host_threads() {
    isolated(
        "many_guest_threads_come_back_to_their_host_threads",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            sud::set_spawn_hook(Some(std_spawn_hook));
            let thread = armed_thread();
            for _ in 0..200 {
                run_guest_thread(&thread, false);
            }
            assert_eq!(wait_for_exits(200).len(), 200);
        },
    );
}

/// A hook that cannot make a thread: the guest's clone fails with its errno.
#[test]
fn a_failing_hook_fails_the_guests_clone() {
    isolated(
        "a_failing_hook_fails_the_guests_clone",
        Ends::Passing,
        || {
            sud::install(emulate_getppid).unwrap();
            sud::set_spawn_hook(Some(|_| Err(Errno::EPERM)));
            let thread = armed_thread();
            let mut stack = vec![0u8; 64 * 1024];
            let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
            let mut test = common::asm::CloneTest {
                flags: common::threads::THREAD_FLAGS,
                stack_top: top,
                ..Default::default()
            };
            let parent_tid = std::sync::atomic::AtomicU32::new(0);
            let child_tid = std::sync::atomic::AtomicU32::new(0);
            test.parent_tid = parent_tid.as_ptr() as u64;
            test.child_tid = child_tid.as_ptr() as u64;
            // SAFETY: the clone fails; nothing runs on `stack`.
            let result =
                common::guest::blocked(&thread, || unsafe { common::asm::guest_clone(&mut test) });
            assert_eq!(result, -(libc::EPERM as i64));
        },
    );
}
