//! What `sud::freestanding::entry!` gives a program: its arguments,
//! environment and auxiliary vector in `Startup`, and a panic handler that
//! reports and exits through the allowed region, so that it works while the
//! selector says BLOCK and the callback denies every syscall.  Run as
//! `startup one two` with `SUD_STARTUP=here` in the environment, or as
//! `startup panic`.

#![no_std]
#![no_main]

use linux_raw_sys::auxvec::{AT_NULL, AT_PAGESZ, AT_RANDOM};
use sud::{Action, SELECTOR};
use sud_freestanding::{case, check, check_eq, run, startup};

#[unsafe(no_mangle)]
fn test_main() -> i32 {
    if startup().args().nth(1) == Some(c"panic") {
        panic_while_blocked();
    }
    run(&[
        case!(arguments),
        case!(environment),
        case!(auxiliary_vector),
    ])
}

fn arguments() {
    let startup = startup();
    check_eq!(startup.argc(), 3);
    let mut args = startup.args();
    check!(
        args.next()
            .is_some_and(|arg0| arg0.to_bytes().ends_with(b"startup"))
    );
    check_eq!(args.next(), Some(c"one"));
    check_eq!(args.next(), Some(c"two"));
    check_eq!(args.next(), None);
    // SAFETY: argv has argc entries and a null pointer.
    check!(unsafe { startup.argv().add(3).read().is_null() });
}

fn environment() {
    let startup = startup();
    check!(startup.env().any(|var| var == c"SUD_STARTUP=here"));
    // envp follows argv's null pointer.
    // SAFETY: argv has argc entries and a null pointer, then envp starts.
    check_eq!(startup.envp(), unsafe { startup.argv().add(4) });
}

fn auxiliary_vector() {
    let startup = startup();
    check_eq!(startup.aux(AT_PAGESZ), Some(4096));
    check!(startup.aux(AT_RANDOM).is_some_and(|random| random != 0));
    check!(startup.auxv().all(|(key, _)| key != AT_NULL));
    check_eq!(startup.aux(AT_NULL), None);
}

/// Every syscall that is not from the allowed region is denied: the panic
/// handler's message and exit must still go out.
fn panic_while_blocked() -> ! {
    check!(sud::install(|_| Action::default()).is_ok());
    check!(sud::arm().is_ok());
    // SAFETY: nothing but the panic runs under BLOCK.
    unsafe { SELECTOR.block() };
    panic!("panic under BLOCK");
}
