//! One thread's state: what the task stubs read and write ([`TaskAbi`], and
//! the slot's lifecycle, [`Claim`]), the selector, the guest's virtual
//! signal state and the host's settings for the thread.

use crate::arm::Arming;
use crate::kernel::sigaction::AtomicSigaction;
use crate::kernel::stack::AtomicStack;
use crate::selector::{SELECTOR, Selector};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// A field that can go back to its initial value in place, with atomic
/// stores (other threads may still look at the state).
trait Reset {
    fn reset_to(&self, fresh: Self);
}

macro_rules! reset_atomics {
    ($($atomic:ty),*) => {$(
        impl Reset for $atomic {
            fn reset_to(&self, fresh: Self) {
                self.store(fresh.into_inner(), Ordering::Relaxed);
            }
        }
    )*};
}
reset_atomics!(AtomicU64, AtomicI32, AtomicBool, AtomicUsize);

impl<T> Reset for AtomicPtr<T> {
    fn reset_to(&self, fresh: Self) {
        self.store(fresh.into_inner(), Ordering::Relaxed);
    }
}

impl Reset for AtomicStack {
    fn reset_to(&self, fresh: Self) {
        self.store(&fresh.load());
    }
}

impl Reset for AtomicSigaction {
    fn reset_to(&self, fresh: Self) {
        self.store(&fresh.load());
    }
}

impl Reset for Arming {
    fn reset_to(&self, fresh: Self) {
        let (op, range) = fresh.mode();
        self.set(op, range, fresh.selector.into_inner() as *const u8);
    }
}

/// A struct whose fields are each given once, with the value a fresh one
/// starts with: `new` builds it, `reset` puts every field back.
macro_rules! fresh_struct {
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $type:ty = $init:expr,)*
        }
    ) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
        }

        impl $name {
            pub const fn new() -> $name {
                $name { $($field: $init,)* }
            }

            /// Every field back to its initial value.
            pub fn reset(&self) {
                $(Reset::reset_to(&self.$field, $init);)*
            }
        }
    };
}

fresh_struct! {
    /// What the task stubs (`asm/x86_64/tasks.s`) read and write, at offsets
    /// Rust gives them: how to set up a task the guest creates.  Only the
    /// thread that owns the state, and the stub creating its thread, use it.
    #[repr(C)]
    pub(crate) struct TaskAbi {
        /// How the thread was armed, to arm a child the same way.
        pub arming: Arming = Arming::new(),
        /// Where a new thread resumes the guest: the address after its clone.
        pub resume: AtomicU64 = AtomicU64::new(0),
        /// The alternate signal stack a new thread installs: its slot's.
        pub altstack: AtomicStack = AtomicStack::new(),
        /// The signal mask the guest made the creating clone under, which the
        /// new thread takes once it is set up (a sigset).
        pub clone_mask: AtomicU64 = AtomicU64::new(0),
        /// sud's SIGSYS action for a child whose clone cleared every handler
        /// (CLONE_CLEAR_SIGHAND); all zero (SIG_DFL) otherwise.
        pub sigsys_action: AtomicSigaction = AtomicSigaction::new(),
        /// For a host thread running a guest thread (`Thread::run_guest`):
        /// the HostContext its guest's exit goes back to; 0 otherwise.
        pub leave_to: AtomicU64 = AtomicU64::new(0),
    }
}

/// The slot's lifecycle, which threads looking for a free slot read while
/// others use it: never reset as a whole, each field moved on by the claim
/// protocol (`arena`).  The task stubs write `status` (DEAD, its low byte
/// alone), `clone_result` and `tid`.
#[repr(C)]
pub(crate) struct Claim {
    /// The slot's status (LIVE, DEAD once the thread has exited, CLAIMED
    /// while a new thread takes it) in the low byte, and above it a
    /// generation counting the claims: a claim is a compare-and-swap of the
    /// whole word, so one that looked at an older use of the slot fails.
    pub status: AtomicU64,
    /// What the creating clone returned in the parent (tid or -errno); 0
    /// until the parent is back.
    pub clone_result: AtomicU64,
    /// The thread's id, once known (set by the thread itself).
    pub tid: AtomicI32,
    /// Of no use to this process once the creating clone returned: a vfork
    /// child (it exec'd or exited by then) or one with a memory of its own.
    pub parent_releases: AtomicBool,
}

/// Values of the status byte of [`Claim::status`].
pub(crate) const LIVE: u64 = 1;
pub(crate) const DEAD: u64 = 2;
/// Being taken for a new thread.
pub(crate) const CLAIMED: u64 = 3;
pub(crate) const STATUS: u64 = 0xff;
pub(crate) const GENERATION: u64 = STATUS + 1;

fresh_struct! {
    /// What the guest believes of its signal state, where it differs from the
    /// real one (so that SIGSYS stays deliverable and sud's stack in place).
    pub(crate) struct GuestSignals {
        /// The guest believes it blocked SIGSYS (it never really is).
        pub blocks_sigsys: AtomicBool = AtomicBool::new(false),
        /// The guest's own alternate signal stack as it set it, virtual
        /// (`reissue::altstack`); size 0 when it has none.
        pub altstack: AtomicStack = AtomicStack::new(),
        /// The guest alternate stack a guest handler sud entered on it runs
        /// on (the outermost such handler); size 0 when none does.
        pub running_on: AtomicStack = AtomicStack::new(),
    }
}

fresh_struct! {
    /// The thread pointers host code runs with: those the thread had when it
    /// was set up (a `Thread` made, `sud::arm`), while the guest may point
    /// FS and GS elsewhere.
    pub(crate) struct Pointers {
        /// Whether the host's are known: not for a thread the guest created.
        pub recorded: AtomicBool = AtomicBool::new(false),
        pub host_fs: AtomicU64 = AtomicU64::new(0),
        pub host_gs: AtomicU64 = AtomicU64::new(0),
        /// The guest may have moved FS or GS (it made an arch_prctl): where
        /// reading them costs a syscall, they are read only once this is set.
        pub guest_moved: AtomicBool = AtomicBool::new(false),
        /// The guest's own, as host code found them when it was entered from
        /// guest code (`guest_known`): what a guest handler that starts while
        /// host code runs gets, and what the guest resumes with.
        pub guest_known: AtomicBool = AtomicBool::new(false),
        pub guest_fs: AtomicU64 = AtomicU64::new(0),
        pub guest_gs: AtomicU64 = AtomicU64::new(0),
    }
}

fresh_struct! {
    /// What the host set for the thread.
    pub(crate) struct HostSettings {
        /// The user's per-thread pointer.
        pub data: AtomicPtr<()> = AtomicPtr::new(null_mut()),
        /// The stack redirect functions run on (low, high); 0, 0 for the guest's.
        pub redirect_low: AtomicU64 = AtomicU64::new(0),
        pub redirect_high: AtomicU64 = AtomicU64::new(0),
        /// The alternate stack the thread had before sud's, put back when
        /// the thread gives its state up.
        pub previous_altstack: AtomicStack = AtomicStack::new(),
    }
}

/// One thread's state.
#[repr(C, align(64))]
pub(crate) struct ThreadState {
    pub task: TaskAbi,
    pub claim: Claim,
    /// The selector the kernel reads for this thread.
    pub selector: AtomicPtr<Selector>,
    pub own_selector: Selector,
    pub guest: GuestSignals,
    pub pointers: Pointers,
    pub host: HostSettings,
}

impl ThreadState {
    /// What sud keeps in the GS base of this state's thread while its
    /// guest leaves GS at 0, for rewritten sites to find the state by
    /// (`site.rs`): the state's address.
    pub(crate) fn gs_mark(&self) -> u64 {
        self as *const ThreadState as u64
    }

    const fn new(selector: *mut Selector) -> ThreadState {
        ThreadState {
            task: TaskAbi::new(),
            claim: Claim {
                status: AtomicU64::new(LIVE),
                clone_result: AtomicU64::new(0),
                tid: AtomicI32::new(0),
                parent_releases: AtomicBool::new(false),
            },
            selector: AtomicPtr::new(selector),
            own_selector: Selector::new(),
            guest: GuestSignals::new(),
            pointers: Pointers::new(),
            host: HostSettings::new(),
        }
    }

    /// The selector the kernel reads for this thread.
    #[inline(always)]
    pub fn selector(&self) -> &Selector {
        // SAFETY: it points at `own_selector` of a live state, or at SELECTOR.
        unsafe { &*self.selector.load(Ordering::Relaxed) }
    }

    /// Whether the thread's selector is the global one, `sud_selector`.
    pub fn on_global_selector(&self) -> bool {
        core::ptr::eq(self.selector(), &SELECTOR)
    }

    /// Whether this is the process-wide state of unmanaged threads.
    pub fn is_global(&self) -> bool {
        core::ptr::eq(self, &GLOBAL)
    }

    /// Uses the state's own selector, at ALLOW.
    pub fn use_own_selector(&self) {
        self.own_selector.allow();
        self.selector.store(
            &self.own_selector as *const Selector as *mut Selector,
            Ordering::Relaxed,
        );
    }

    /// Uses the global selector, `sud_selector`.
    pub fn use_global_selector(&self) {
        self.selector.store(
            &SELECTOR as *const Selector as *mut Selector,
            Ordering::Relaxed,
        );
    }

    /// The redirect stack (low, high), if the host gave the thread one.
    pub fn redirect_stack(&self) -> Option<(u64, u64)> {
        let high = self.host.redirect_high.load(Ordering::Relaxed);
        (high != 0).then(|| (self.host.redirect_low.load(Ordering::Relaxed), high))
    }

    /// Where the guest is when its code was interrupted at `rsp`: while a
    /// redirect function runs for it on the thread's redirect stack, the
    /// RSP the guest left (it is still inside its syscall, as natively),
    /// else `rsp` itself.
    pub(crate) fn guest_rsp(&self, rsp: u64) -> u64 {
        match self.redirect_stack() {
            Some((low, high)) if (low..high).contains(&rsp) => {
                // SAFETY: the thread's redirect stack, whose top slot holds
                // the guest's RSP while a redirect runs on it.
                unsafe { (redirect_stack_slot(high) as *const u64).read() }
            }
            _ => rsp,
        }
    }
}

/// Where `sud_redirect_on_stack` finds the guest's RSP on a redirect stack
/// whose end is `high`: its highest 16-byte aligned word, which is also the
/// stub's RSP on entry.
pub(crate) fn redirect_stack_slot(high: u64) -> u64 {
    (high - 8) & !15
}

/// The state of every thread that has no slot: `sud::arm` and friends.
pub(crate) static GLOBAL: ThreadState =
    ThreadState::new(&SELECTOR as *const Selector as *mut Selector);

// The exit stub's byte store of DEAD is the status byte (the lowest, on
// little-endian x86-64); `clone_mask` is a kernel sigset.
static_assertions::const_assert!(DEAD <= STATUS && LIVE <= STATUS && CLAIMED <= STATUS);
static_assertions::const_assert_eq!(
    core::mem::size_of::<AtomicU64>(),
    crate::kernel::sigaction::SIGSET_SIZE
);
