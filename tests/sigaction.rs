//! A guest's rt_sigaction reads back what the kernel would: one sequence of
//! raw rt_sigaction calls and signals, made natively (unarmed) and then as
//! guest code (trapped and answered by sud), must see the same results and
//! the same old actions, field by field.  It covers every single `sa_flags`
//! bit, unknown ones included (the kernel drops them, which is how
//! `SA_UNSUPPORTED` detects a kernel's flag support), SIG_IGN and SIG_DFL
//! with flags, masks with SIGKILL, SIGSTOP and SIGSYS, SA_RESETHAND
//! deliveries (which reset only the handler), SIGSYS (virtual under sud),
//! a signal with a host handler (recorded, not installed), and the
//! signals no action can be set for.  Each test runs in a process of its own.

mod common;

use common::guest::{armed_thread, blocked, emulate_getppid};
use common::signals::{KernelSigaction, guest_rt_sigaction, raise_as_guest};
use common::{Ends, bit, isolated};
use linux_raw_sys::general::{
    SA_EXPOSE_TAGBITS, SA_NOCLDSTOP, SA_NODEFER, SA_ONSTACK, SA_RESETHAND, SA_RESTART, SA_RESTORER,
    SA_SIGINFO, SA_UNSUPPORTED, SIGKILL, SIGSTOP, SIGSYS, SIGUSR1, SIGUSR2,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use sud::Errno;

/// Signals the sequence sets actions for: plain ones, SIGSYS, and SIGUSR2,
/// which has a host handler under sud.
const SIGNALS: [u32; 4] = [SIGUSR1, SIGUSR2, SIGSYS, 40];
/// Signals the sequence raises with SA_RESETHAND (not SIGUSR2: under sud
/// its host handler would take it).
const RAISED: [u32; 3] = [SIGUSR1, SIGSYS, 40];

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// # Safety
/// Only the kernel calls it, as a signal handler with its frame.
unsafe extern "C" fn host_handler(_: i32, _: *mut sud::SigInfo, _: *mut sud::UContext) {}

/// One rt_sigaction's result and the old action it read.
type Outcome = (Result<usize, Errno>, KernelSigaction);
/// One call's outcome, with what it was.
type Step = (String, Result<usize, Errno>, KernelSigaction);

/// libc's restorer, which native deliveries return through.
fn libc_restorer() -> usize {
    extern "C" fn nothing(_: i32) {}
    common::libc_handler(libc::SIGWINCH, nothing, 0);
    let (r, action) = guest_rt_sigaction(libc::SIGWINCH as u32, None);
    assert_eq!(r, Ok(0));
    reset_natively(&[libc::SIGWINCH as u32]);
    assert_ne!(action.restorer, 0);
    action.restorer
}

/// Every signal in `signals` back to SIG_DFL, no flags, no restorer, an
/// empty mask, natively (unarmed: untrapped, unrecorded).
fn reset_natively(signals: &[u32]) {
    for &signal in signals {
        let (r, _) = guest_rt_sigaction(signal, Some(&KernelSigaction::default()));
        assert_eq!(r, Ok(0));
    }
}

/// The sequence: `call` makes one rt_sigaction, `raise` sends the calling
/// thread a signal and returns once it was handled.
fn sequence(
    restorer: usize,
    call: &dyn Fn(u32, Option<&KernelSigaction>) -> Outcome,
    raise: &dyn Fn(u32),
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut step = |label: String, signal: u32, new: Option<KernelSigaction>| {
        let (result, old) = call(signal, new.as_ref());
        steps.push((label, result, old));
    };
    let with_handler = |flags: u64, mask: u64| KernelSigaction {
        handler: handler as *const () as usize,
        flags,
        restorer,
        mask,
    };
    let special_bits = bit(libc::SIGKILL) | bit(libc::SIGSTOP) | bit(libc::SIGSYS);
    for signal in SIGNALS {
        for flag in 0..64 {
            let action = with_handler(1 << flag, 0x5555_0000_0000_5555 | special_bits);
            step(format!("{signal}: flag bit {flag}"), signal, Some(action));
        }
        step(format!("{signal}: read"), signal, None);
        step(
            format!("{signal}: every flag"),
            signal,
            Some(with_handler(!0, !0)),
        );
        let probe = (SA_UNSUPPORTED | SA_EXPOSE_TAGBITS | SA_SIGINFO) as u64;
        step(
            format!("{signal}: SA_UNSUPPORTED probe"),
            signal,
            Some(with_handler(probe, 0)),
        );
        let ignore = KernelSigaction {
            handler: 1,
            flags: !0,
            restorer,
            mask: !0,
        };
        step(
            format!("{signal}: SIG_IGN, every flag"),
            signal,
            Some(ignore),
        );
        let default = KernelSigaction {
            handler: 0,
            flags: (SA_RESTART | SA_NOCLDSTOP | SA_UNSUPPORTED) as u64 | 1 << 40,
            restorer,
            mask: special_bits,
        };
        step(
            format!("{signal}: SIG_DFL with flags"),
            signal,
            Some(default),
        );
        step(format!("{signal}: read back"), signal, None);
    }
    for signal in [SIGKILL, SIGSTOP, 0, 65] {
        step(format!("{signal}: read"), signal, None);
        step(format!("{signal}: set"), signal, Some(with_handler(0, 0)));
    }
    let resethand_flags = [
        (SA_RESETHAND | SA_RESTORER) as u64,
        (SA_RESETHAND | SA_RESTORER | SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER) as u64,
        (SA_RESETHAND | SA_RESTORER | SA_SIGINFO | SA_UNSUPPORTED | SA_EXPOSE_TAGBITS) as u64
            | 1 << 33,
    ];
    for signal in RAISED {
        for flags in resethand_flags {
            let action = with_handler(flags, !0);
            step(format!("{signal}: set {flags:#x}"), signal, Some(action));
            let before = HANDLED.load(Ordering::SeqCst);
            raise(signal);
            let handled = HANDLED.load(Ordering::SeqCst) - before;
            step(
                format!("{signal}: handled {handled} time(s), then read"),
                signal,
                None,
            );
        }
    }
    // Every action the sequence set, read back and reset.
    for signal in SIGNALS {
        step(
            format!("{signal}: reset"),
            signal,
            Some(KernelSigaction::default()),
        );
    }
    steps
}

#[test]
fn guest_rt_sigaction_reads_back_what_the_kernel_would() {
    isolated(
        "guest_rt_sigaction_reads_back_what_the_kernel_would",
        Ends::Passing,
        || {
            let restorer = libc_restorer();
            reset_natively(&SIGNALS);
            let pid = std::process::id() as i32;
            let tid = common::gettid();
            let native = sequence(
                restorer,
                &|signal, new| guest_rt_sigaction(signal, new),
                &|signal| {
                    // SAFETY: a signal to this thread, whose handler is set.
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
                },
            );
            reset_natively(&SIGNALS);

            sud::install(emulate_getppid).unwrap();
            sud::install_host_handler(SIGUSR2, host_handler, 0, 0).unwrap();
            let thread = armed_thread();
            let under_sud = sequence(
                restorer,
                &|signal, new| blocked(&thread, || guest_rt_sigaction(signal, new)),
                &|signal| assert_eq!(raise_as_guest(&thread, signal), Ok(0)),
            );

            assert_eq!(native.len(), under_sud.len());
            let differences: Vec<String> = native
                .iter()
                .zip(&under_sud)
                .filter(|(n, s)| n != s)
                .map(|((label, r, old), (sud_label, sr, sold))| {
                    format!(
                        "{label}:\n  native    {r:?} {old:x?}\n  {sud_label}, under sud: {sr:?} {sold:x?}"
                    )
                })
                .collect();
            assert!(
                differences.is_empty(),
                "{} of {} steps differ; the first:\n{}",
                differences.len(),
                native.len(),
                differences[..differences.len().min(12)].join("\n")
            );
        },
    );
}
