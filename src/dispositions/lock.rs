//! The lock every change to a signal's dispositions is made under, and the
//! wait it and the action cells share.

use crate::error::Errno;
use crate::sys;
use core::sync::atomic::{AtomicU32, Ordering};

/// Waiting for another thread's few instructions: spinning, then yielding
/// the CPU.  After a while the wait is `long`, and it is worth asking
/// whether the other thread is there at all.
pub(crate) struct Wait {
    rounds: u32,
}

impl Wait {
    const SPINS: u32 = 1 << 10;
    const YIELDS: u32 = 1 << 14;

    pub fn new() -> Wait {
        Wait { rounds: 0 }
    }

    /// Waits a little; true once the wait has been long (and from then on).
    pub fn long(&mut self) -> bool {
        self.rounds = self.rounds.saturating_add(1);
        if self.rounds < Self::SPINS {
            core::hint::spin_loop();
        } else {
            sys::sched_yield();
        }
        self.rounds >= Self::SPINS + Self::YIELDS
    }
}

/// A lock that names its holder (a tid), taken with every signal blocked
/// (a handler on the holder's thread could want it too).  A process forked
/// while a thread of its parent held it has a copy of it held by no one
/// here: after a long wait a waiter asks the kernel whether the holder
/// shares its memory (kcmp KCMP_VM) and takes the lock over only if it does
/// not, or no longer exists.  A holder that is merely slow (preempted,
/// stopped by a debugger) is waited for, however long.
pub(crate) struct HolderLock {
    holder: AtomicU32,
}

impl HolderLock {
    pub const fn new() -> HolderLock {
        HolderLock {
            holder: AtomicU32::new(0),
        }
    }

    /// Runs `f` holding the lock, with every signal blocked.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved = sys::block_all_signals();
        let me = sys::gettid() as u32;
        let mut wait = Wait::new();
        loop {
            let holder = self.holder.load(Ordering::Relaxed);
            let takeable = holder == 0 || (wait.long() && holder_is_gone(holder));
            if takeable
                && self
                    .holder
                    .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
        }
        let out = f();
        self.holder.store(0, Ordering::Release);
        sys::set_thread_mask(saved);
        out
    }

    /// Whether the lock is held by a thread that is not in this memory.
    pub fn holder_is_gone(&self) -> bool {
        let holder = self.holder.load(Ordering::Relaxed);
        holder != 0 && holder_is_gone(holder)
    }
}

/// Whether thread `holder` does not share this process's memory (or does
/// not exist).  When the kernel cannot tell (no kcmp), it is assumed to.
fn holder_is_gone(holder: u32) -> bool {
    match sys::kcmp(sys::getpid(), holder as i32, sys::KCMP_VM) {
        Ok(same) => same != 0,
        Err(errno) => errno == Errno::ESRCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// A lock left held by a thread of another memory (as in a process
    /// forked while a thread of its parent held it) is taken over.
    #[test]
    fn lock_of_a_holder_in_another_memory_is_taken_over() {
        // A task that is not in this memory: a child process (kcmp says
        // another VM), then, reaped, no task at all (ESRCH).
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let lock = HolderLock::new();
        lock.holder.store(child.id(), Ordering::Relaxed);
        assert!(lock.holder_is_gone(), "a live holder in another memory");
        assert_eq!(lock.with(|| 7), 7);
        assert_eq!(lock.holder.load(Ordering::Relaxed), 0);
        child.kill().unwrap();
        child.wait().unwrap();
        lock.holder.store(child.id(), Ordering::Relaxed);
        assert!(lock.holder_is_gone(), "a holder that no longer exists");
        assert_eq!(lock.with(|| 8), 8);
    }

    /// A lock held by a thread of this process is waited for, however long.
    #[test]
    fn lock_of_a_live_holder_is_waited_for() {
        let lock = Arc::new(HolderLock::new());
        let me = sys::gettid() as u32;
        lock.holder.store(me, Ordering::Relaxed);
        assert!(!lock.holder_is_gone());
        let entered = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (lock, entered) = (lock.clone(), entered.clone());
            std::thread::spawn(move || lock.with(|| entered.store(true, Ordering::SeqCst)))
        };
        // Far longer than a Wait takes to become long.
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !entered.load(Ordering::SeqCst),
            "the lock was taken from a live holder"
        );
        lock.holder.store(0, Ordering::Release);
        waiter.join().unwrap();
        assert!(entered.load(Ordering::SeqCst));
    }
}
