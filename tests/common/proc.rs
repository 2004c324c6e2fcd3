//! Ways to look at a thread or a child from outside: what /proc says about
//! it (the syscall it is blocked in, its signal mask), and waiting for it to
//! end.

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments.
    unsafe { libc::gettid() }
}

/// What `/proc/self/task/TID/syscall` says: the syscall number and the
/// instruction pointer (after the `syscall`) of a thread blocked in the
/// kernel, or None while it runs.
pub fn blocked_in(tid: i32) -> Option<(i64, usize)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 9 {
        return None;
    }
    let nr: i64 = fields[0].parse().ok()?;
    let pc = usize::from_str_radix(fields[8].trim_start_matches("0x"), 16).ok()?;
    Some((nr, pc))
}

/// Waits (up to 10 s) until thread `tid` is blocked in syscall `nr`, and
/// returns the instruction pointer it is blocked at.
pub fn wait_blocked_in(tid: i32, nr: i64) -> usize {
    for _ in 0..10_000 {
        if let Some((n, pc)) = blocked_in(tid)
            && n == nr
        {
            // Sleeping, not just passing through.
            let state = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            let after_name = &state[state.rfind(')').unwrap() + 2..];
            if after_name.starts_with('S') {
                return pc;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("thread {tid} never blocked in syscall {nr}");
}

/// The blocked-signal mask of thread `tid`, from /proc.
pub fn sigblk(tid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
    u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).unwrap()
}

/// The bit of `signal` in a signal mask.
pub fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// Waits until thread `tid`, created with CLONE_CHILD_CLEARTID pointing at
/// `child_tid`, has exited: the kernel zeroes the word and wakes its futex.
/// The word must not start at 0 (u32::MAX, say): without CLONE_CHILD_SETTID
/// nothing writes the tid there first.
pub fn wait_for_thread_exit(child_tid: &std::sync::atomic::AtomicU32, _tid: i64) {
    loop {
        let seen = child_tid.load(std::sync::atomic::Ordering::SeqCst);
        if seen == 0 {
            return;
        }
        // SAFETY: a futex wait on a live u32, for as long as it holds `seen`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                child_tid.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                0,
            )
        };
    }
}

/// Waits for child process `pid` to end and returns its wait status.
pub fn wait_status(pid: i64) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(
        unsafe { libc::waitpid(pid as i32, &mut status, 0) },
        pid as i32
    );
    status
}
