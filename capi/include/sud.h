/*
 * sud.h: sud, Syscall User Dispatch for JITs, emulators and compatibility
 * layers, from C and C++ (C11, C++17).  x86-64 Linux 5.11 and later.
 *
 * A thread armed with sud_arm() has its syscalls dispatched as SIGSYS
 * whenever its selector says BLOCK, except those made from sud's allowed
 * region, where the runtime keeps every instruction that must run
 * meanwhile.  sud's SIGSYS handler hands each trapped syscall to a C
 * callback, which emulates, reissues, denies or redirects it:
 *
 *     static int on_syscall(struct sud_syscall *call, void *user) {
 *         switch (sud_syscall_number(call)) {
 *         case SYS_getppid: return sud_emulate(call, 4242);
 *         case SYS_write:   return SUD_ACTION_REISSUE;
 *         default:          return sud_deny(call, ENOSYS);
 *         }
 *     }
 *
 *     sud_install(on_syscall, NULL);   // the SIGSYS handler, for the process
 *     sud_arm();                        // this thread, exclusive mode
 *     sud_block(&sud_selector);
 *     run_guest_code();                 // its syscalls reach on_syscall
 *     sud_allow(&sud_selector);
 *     sud_disarm();
 *
 * Building and linking: README.md, "From C and C++".  The library is
 * libsud_capi.a (or libsud_capi.so); it uses no libc, so it links into a
 * glibc, musl or freestanding program alike.  It needs memcpy and memset
 * (a debug build also memcmp and bcmp), which a libc supplies and a
 * freestanding program defines.  This header
 * needs only <stddef.h> and <stdint.h>, which freestanding compilers have.
 *
 * Conventions:
 * - Status: a function that can fail returns 0, a negative errno
 *   (-EINVAL, -EFAULT, -EPERM, ... as the kernel reports them), or one of
 *   the SUD_ERR_* codes, all below -4095 so that no errno can pass for one.
 * - A trapped syscall's callback runs in signal context, with every signal
 *   blocked and the thread's selector at ALLOW: it may make syscalls and
 *   call async-signal-safe functions.  If the guest is code of the same
 *   program and was trapped while holding a lock the callback needs (the
 *   allocator's, stdio's), the callback must not take it:
 *   SUD_ACTION_REDIRECT hands such work to ordinary code instead.
 * - Callbacks must not unwind (no C++ exception may leave one).
 * - Trapping is per thread; every other setting is for the process.
 *
 * Every struct here has the layout of its Rust counterpart in sud, and
 * every constant its value: capi/tests/c.rs checks both, with the compiler.
 */
#ifndef SUD_H
#define SUD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ status --- */

/* Status codes besides 0 and -errno (sud::Error's variants). */
enum sud_status {
    /* The kernel has no Syscall User Dispatch: older than 5.11, or built
     * without it.  Detected, never assumed. */
    SUD_ERR_NO_SYSCALL_USER_DISPATCH = -4096,
    /* The kernel has Syscall User Dispatch but not its inclusive mode
     * (Linux 6.17): fall back to sud_arm(). */
    SUD_ERR_NO_INCLUSIVE_MODE = -4097,
    /* A failure newer than this header. */
    SUD_ERR_UNKNOWN = -4098,
    /* Arming before sud_install(): the first trapped syscall would kill
     * the process.  The thread stays unarmed. */
    SUD_ERR_NOT_INSTALLED = -4099,
    /* The thread has a sud state already (a sud_thread, or sud_arm()): a
     * second one's selector would never be read. */
    SUD_ERR_ALREADY_MANAGED = -4100,
    /* sud has no memory for another thread's state: the kernel refused it
     * (ENOMEM from mmap or mprotect: out of memory, or the map count or
     * address-space limit reached), or sud's reserved address space for
     * thread states is used up.  A guest's clone that sud cannot give a
     * state fails with -ENOMEM, as a native clone does without memory. */
    SUD_ERR_OUT_OF_MEMORY = -4101,
    /* Rewriting trap sites needs FSGSBASE (Linux 5.9 and a CPU with it):
     * a rewritten site finds its thread through the GS base. */
    SUD_ERR_NO_FSGSBASE = -4102
};

/* What a status code means, as a static string (for a negative errno it
 * says only that: strerror(-status) names it where there is a libc). */
const char *sud_strerror(int status);

/* ----------------------------------------------------- kernel structs --- */

/* The general registers and flags as the kernel saves them in a signal
 * frame (the head of struct sigcontext).  For a trapped syscall: rip is the
 * address after the `syscall` instruction, rax the syscall number, rcx and
 * r11 what `syscall` put there.  The guest resumes with whatever the
 * callback leaves here. */
struct sud_registers {
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp;
    uint64_t rip, rflags;
};

/* The kernel's struct sigcontext (64-bit): what rt_sigreturn reinstalls. */
struct sud_sigcontext {
    struct sud_registers regs;
    uint16_t cs, gs, fs, ss;
    uint64_t err, trapno, oldmask, cr2;
    void *fpstate; /* the frame's XSAVE area (x87, SSE, AVX, ...), or NULL */
    uint64_t reserved1[8];
};

/* The kernel's stack_t. */
struct sud_stack {
    void *ss_sp;
    int ss_flags;
    size_t ss_size;
};

/* The kernel's struct ucontext in an x86-64 rt signal frame (not glibc's
 * ucontext_t, whose signal mask is larger). */
struct sud_ucontext {
    uint64_t uc_flags;
    struct sud_ucontext *uc_link;
    struct sud_stack uc_stack;         /* the alternate stack rt_sigreturn reinstalls */
    struct sud_sigcontext uc_mcontext;
    uint64_t uc_sigmask;               /* the mask rt_sigreturn reinstalls */
};

/* The part of the kernel's siginfo_t a SIGSYS carries.  The last three
 * fields are si_call_addr, si_syscall and si_arch to the kernel and to
 * sud, names that <signal.h> defines as macros. */
struct sud_siginfo {
    int32_t si_signo;
    int32_t si_errno;
    int32_t si_code;    /* 2 (SYS_USER_DISPATCH) for dispatch, 1 for seccomp */
    int32_t _pad0;
    uint64_t call_addr; /* the address after the `syscall` instruction */
    int32_t syscall;    /* the syscall number */
    uint32_t arch;      /* AUDIT_ARCH_X86_64 */
    uint64_t _rest[12];
};

/* A kernel signal set holds signal s at bit s - 1. */
#define SUD_SIGBIT(signal) (UINT64_C(1) << ((signal) - 1))

/* ---------------------------------------------- support and arming --- */

/* Bits of sud_support()'s answer. */
#define SUD_SUPPORT_EXCLUSIVE 1u /* PR_SYS_DISPATCH_EXCLUSIVE_ON, Linux 5.11 */
#define SUD_SUPPORT_INCLUSIVE 2u /* PR_SYS_DISPATCH_INCLUSIVE_ON, Linux 6.17 */

/* Which dispatch modes the running kernel has, found by asking it without
 * arming or disarming anything. */
unsigned sud_support(void);

/* The values a selector byte may hold.  It must never hold anything else
 * (the kernel kills a thread whose selector does) and must stay mapped
 * while a thread is armed with it. */
#define SUD_SELECTOR_ALLOW 0 /* syscalls run */
#define SUD_SELECTOR_BLOCK 1 /* syscalls are dispatched */

/* The global selector, used by sud_arm() and sud_arm_inclusive(): every
 * thread armed with it sees every flip.  Generated code writes it as
 * `mov byte ptr [rip + sud_selector], 1` (block) or `..., 0` (allow). */
extern volatile uint8_t sud_selector;

/* &sud_selector, found at run time (for code that reaches sud through
 * dlsym, or generated code that needs the address). */
volatile uint8_t *sud_global_selector(void);

/* Dispatch syscalls: from now until sud_allow(), every syscall a thread
 * armed with `selector` makes outside the allowed region reaches the
 * callback.  Code that runs on such a thread meanwhile, normally guest
 * code, must be able to live with the callback's answers (C library code
 * whose mmap is answered ENOSYS is not). */
static inline void sud_block(volatile uint8_t *selector) { *selector = SUD_SELECTOR_BLOCK; }
/* Let syscalls run. */
static inline void sud_allow(volatile uint8_t *selector) { *selector = SUD_SELECTOR_ALLOW; }

/* Arms the calling thread in exclusive mode over the allowed region with
 * the global selector: while it says BLOCK, every syscall the thread makes
 * from anywhere else is dispatched.  Per thread, and not inherited by the
 * threads and processes the host creates (those the guest creates while
 * blocked are armed again by sud).  Install the callback first.
 * SUD_ERR_NO_SYSCALL_USER_DISPATCH on a kernel without the feature. */
int sud_arm(void);

/* Arms the calling thread in inclusive mode (Linux 6.17) with the global
 * selector: while it says BLOCK, only the syscalls made from inside
 * [start, end) (a JIT's code cache, a loaded guest image) are dispatched.
 * The kernel tests the address after the `syscall` instruction, so the
 * range must reach one byte past a `syscall` it should trap.  An empty
 * range, or one overlapping the allowed region: -EINVAL.  A kernel without
 * inclusive mode: SUD_ERR_NO_INCLUSIVE_MODE (fall back to sud_arm()). */
int sud_arm_inclusive(uintptr_t start, uintptr_t end);

/* Disarms the calling thread (always allowed, armed or not). */
int sud_disarm(void);

/* The `op` values of sud_set_syscall_user_dispatch(). */
#define SUD_DISPATCH_OFF 0u          /* PR_SYS_DISPATCH_OFF */
#define SUD_DISPATCH_EXCLUSIVE_ON 1u /* PR_SYS_DISPATCH_EXCLUSIVE_ON */
#define SUD_DISPATCH_INCLUSIVE_ON 2u /* PR_SYS_DISPATCH_INCLUSIVE_ON */

/* The kernel's interface as it is: prctl(PR_SET_SYSCALL_USER_DISPATCH, op,
 * offset, len, selector) for the calling thread, made from the allowed
 * region.  Whatever the arguments, sud's own syscalls must keep running: a
 * range that does not exempt the allowed region (or, inclusive, covers it),
 * or a NULL selector, dispatches them too.  The selector must stay mapped
 * and hold 0 or 1 while the thread is armed. */
int sud_set_syscall_user_dispatch(unsigned op, uintptr_t offset, uintptr_t len,
                                  const volatile uint8_t *selector);

/* ---------------------------------------------------------- callback --- */

/* A trapped syscall, lent to the callback (or redirect function) for the
 * length of its call: the pointer is not valid after it returns. */
struct sud_syscall;

/* What the callback returns. */
enum sud_action {
    /* The syscall does not run: the guest resumes after its `syscall` with
     * RAX = the value given to sud_emulate() (a negative errno included)
     * and every other register as the callback left it. */
    SUD_ACTION_EMULATE = 1,
    /* The syscall runs natively, with the registers as the callback left
     * them, outside signal context (after rt_sigreturn, from the allowed
     * region, under the guest's signal mask): it can block, fail with
     * EINTR or be restarted (SA_RESTART) as a native call.  The guest then
     * resumes with RAX = the result, RCX = its return address, R11 = its
     * RFLAGS, and nothing else changed. */
    SUD_ACTION_REISSUE = 2,
    /* The syscall does not run: the guest sees -errno, the errno given to
     * sud_deny(). */
    SUD_ACTION_DENY = 3,
    /* The redirect function (sud_install_redirect) carries the syscall out
     * as ordinary code after rt_sigreturn, with the thread's selector at
     * ALLOW: it may block, lock, allocate and be interrupted.  Its return
     * value is the result; every other register, RFLAGS and the x87, SSE,
     * AVX and AVX-512 state are kept.  Without a redirect function: ENOSYS. */
    SUD_ACTION_REDIRECT = 4
};
/* Any other return value denies the syscall with ENOSYS, what the kernel
 * answers for a syscall it does not have. */

/* The callback: decides what a trapped syscall does (a sud_action). */
typedef int (*sud_handler_fn)(struct sud_syscall *call, void *user);

/* A redirect function: carries a trapped syscall out and returns its
 * result (a negative errno for a failure). */
typedef uint64_t (*sud_redirect_fn)(struct sud_syscall *call, void *user);

/* Installs `handler` as the callback for every trapped syscall of the
 * process, called with `user`, and sud's SIGSYS handler (every signal
 * blocked while it runs, on the thread's alternate stack, restorer in the
 * allowed region).  The disposition it replaces keeps the SIGSYS that are
 * not dispatch (seccomp's SECCOMP_RET_TRAP, a kill).  Installing again swaps
 * callback and user pointer together, even while other threads trap (from
 * any thread, the callback included, but not from an asynchronous signal
 * handler that may have interrupted another sud_install).
 * NULL handler: -EINVAL. */
int sud_install(sud_handler_fn handler, void *user);

/* Puts back the SIGSYS disposition sud_install() replaced.  Disarm first:
 * a trapped syscall without sud's handler kills the process. */
int sud_uninstall(void);

/* Installs the function that carries out the syscalls the callback answers
 * with SUD_ACTION_REDIRECT, called with `user` (NULL: none). */
void sud_install_redirect(sud_redirect_fn function, void *user);

/* Sets the result of an emulated syscall; returns SUD_ACTION_EMULATE:
 *     return sud_emulate(call, 4242); */
int sud_emulate(struct sud_syscall *call, uint64_t value);

/* Sets the errno of a denied syscall (1 to 4095; anything else is ENOSYS);
 * returns SUD_ACTION_DENY:
 *     return sud_deny(call, EACCES); */
int sud_deny(struct sud_syscall *call, int errnum);

/* The syscall number: the low 32 bits of RAX, all the kernel looks at. */
uint32_t sud_syscall_number(const struct sud_syscall *call);

/* The six arguments: RDI, RSI, RDX, R10, R8, R9. */
void sud_syscall_args(const struct sud_syscall *call, uint64_t args[6]);

/* The address after the guest's `syscall` (or its `call sud_entry`),
 * where it resumes. */
uintptr_t sud_syscall_call_addr(const struct sud_syscall *call);

/* The guest's saved registers, to read and to change: the guest resumes
 * (or the reissued syscall runs) with whatever is here when the callback
 * returns. */
struct sud_registers *sud_syscall_regs(struct sud_syscall *call);

/* The SIGSYS siginfo (si_code 2, call_addr, syscall, arch); NULL
 * for a syscall made through sud_entry or in a redirect function. */
const struct sud_siginfo *sud_syscall_siginfo(const struct sud_syscall *call);

/* The whole signal frame's context: registers, the thread's real signal
 * mask, its extended state (uc_mcontext.fpstate); NULL outside signal
 * context. */
struct sud_ucontext *sud_syscall_ucontext(struct sud_syscall *call);

/* The trapped thread's selector: its own (a sud_thread's, or that of a
 * thread its guest created), or the global one. */
volatile uint8_t *sud_syscall_selector(const struct sud_syscall *call);

/* The pointer given to sud_thread_set_data() for the trapped thread
 * (inherited by the threads its guest creates); NULL if none. */
void *sud_syscall_thread_data(const struct sud_syscall *call);

/* Resume with the selector at ALLOW rather than BLOCK: for a guest whose
 * syscall hands control back to the host.  Not with SUD_ACTION_REISSUE. */
void sud_syscall_resume_allowed(struct sud_syscall *call);

/* ----------------------------------------------------------- threads --- */

/* A thread's own dispatch state: its own selector (so that its flips, and
 * its time in the callback, never let another thread's guest syscalls
 * through), an alternate signal stack of 120 KiB on which sud's handlers
 * run however small the guest's stack is, and the virtual signal state sud
 * keeps for its guest.  Give every guest thread one.  Threads the guest
 * creates (clone, clone3) get one automatically, freed when they exit. */
struct sud_thread;

/* Sets up the calling thread and stores its handle in *thread.  The
 * handle belongs to this thread: arm, disarm and free it here. */
int sud_thread_new(struct sud_thread **thread);

/* Arms the thread in exclusive mode over the allowed region with its own
 * selector (as sud_arm() does with the global one). */
int sud_thread_arm(struct sud_thread *thread);

/* Arms the thread in inclusive mode over [start, end) with its own
 * selector; see sud_arm_inclusive(). */
int sud_thread_arm_inclusive(struct sud_thread *thread, uintptr_t start, uintptr_t end);

/* Disarms the thread and sets its selector to ALLOW. */
int sud_thread_disarm(struct sud_thread *thread);

/* The thread's selector, for sud_block()/sud_allow() and for generated
 * code: store it where the thread's code finds its context, or bake it into
 * code emitted for this thread. */
volatile uint8_t *sud_thread_selector(const struct sud_thread *thread);

/* A pointer the callback gets back from sud_syscall_thread_data() for
 * this thread's trapped syscalls. */
void sud_thread_set_data(struct sud_thread *thread, void *data);

/* Gives redirect functions a stack of their own on this thread instead of
 * the guest's (below its red zone).  [base, base + len) must be writable,
 * used by nothing else, and stay so while the thread can redirect. */
void sud_thread_set_redirect_stack(struct sud_thread *thread, void *base, size_t len);

/* Disarms the thread, puts its previous alternate signal stack back and
 * frees its state and the handle.  NULL does nothing. */
void sud_thread_free(struct sud_thread *thread);

/* ------------------------------------------------------ guest threads --- */

/* Without a hook, a thread the guest creates is made by its own clone: it
 * has a sud state but nothing of the host's (no TLS of its C library), so
 * a callback on it must not use the host's runtime.  With a spawn hook,
 * each new guest thread (a clone
 * or clone3 that makes a thread like a pthread: CLONE_VM, CLONE_FS,
 * CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD, CLONE_SYSVSEM, on a stack of
 * its own, with nothing added but CLONE_SETTLS, CLONE_PARENT_SETTID,
 * CLONE_CHILD_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED) is handed to
 * the host, which runs it on a host thread it makes (a pthread, with the
 * host's own TLS for the callback).  The guest sees a native clone: the
 * tid, the tid words, its CLONE_SETTLS thread pointer, its creator's
 * signal mask and data, and CLONE_CHILD_CLEARTID's clear and wake. */
struct sud_guest_thread;

/* Called in signal context on the creating thread (selector ALLOW, the
 * host's thread pointer): make a host thread that calls sud_thread_new()
 * and sud_thread_run_guest(thread), and return 0 (the hook took `thread`),
 * or a negative errno, the guest's clone's (sud frees `thread`).  The
 * creator's clone returns once the new thread has started. */
typedef int (*sud_spawn_hook)(struct sud_guest_thread *thread, void *user);

/* Sets the hook and its user pointer, as one pair (NULL: none, the
 * default).  A clone made while the hook is being removed may fail with
 * EAGAIN. */
void sud_set_spawn_hook(sud_spawn_hook hook, void *user);

/* Runs `guest` on the calling thread, whose sud_thread is `thread` (from
 * sud_thread_new() here, unarmed), until the guest thread exits; stores
 * its exit status in *exit_status (NULL: not wanted) and returns 0, the
 * thread disarmed and back to host code.  Frees `guest` whatever happens;
 * on an error its creator's clone fails. */
int sud_thread_run_guest(struct sud_thread *thread, struct sud_guest_thread *guest,
                         int *exit_status);

/* Frees a guest thread the hook took and will not run: its creator's
 * clone fails with EAGAIN.  NULL does nothing. */
void sud_guest_thread_free(struct sud_guest_thread *guest);

/* The creator's sud_thread_set_data() pointer, which the new thread
 * inherits: for the hook to find its host's context. */
void *sud_guest_thread_data(const struct sud_guest_thread *guest);

/* ----------------------------------------------------------- signals --- */

/* A host signal handler: (signal, siginfo, context). */
typedef void (*sud_host_handler_fn)(int signal, struct sud_siginfo *info,
                                    struct sud_ucontext *context);

/* Installs `handler` for `signal` (not SIGSYS, SIGKILL or SIGSTOP: -EINVAL),
 * to run with the interrupted thread's selector at ALLOW whatever it was,
 * on the thread's alternate stack, and return through the allowed restorer
 * with the selector put back: for a JIT's SIGSEGV on guard pages, SIGALRM,
 * SIGCHLD...  `mask` (SUD_SIGBIT bits) are the signals blocked while it
 * runs, never SIGSYS; `flags` may add SA_RESTART, SA_NODEFER or
 * SA_RESETHAND.  A guest's later rt_sigaction for `signal` is recorded
 * (sud_guest_action), not installed. */
int sud_install_host_handler(int signal, sud_host_handler_fn handler, uint64_t mask,
                             uint64_t flags);

/* Takes the handler someone else installed for `signal` (a library, the C
 * runtime) and runs it as a host handler from now on, with its own mask
 * and flags.  Nothing changes for SIG_DFL, SIG_IGN or a handler of sud's. */
int sud_adopt_signal(int signal);

/* A disposition the guest set with a trapped rt_sigaction. */
struct sud_sigaction {
    uintptr_t handler; /* the handler's address, or SIG_DFL (0) / SIG_IGN (1) */
    uint64_t flags;    /* its sa_flags */
    uint64_t mask;     /* its sa_mask (SUD_SIGBIT bits) */
};

/* The disposition the guest last set for `signal` (one with a host handler,
 * or SIGSYS), so that a host handler can pass the signal on: 1 and *action
 * filled in, or 0 if the guest never set one. */
int sud_guest_action(int signal, struct sud_sigaction *action);

/* ---------------------------------------------------- allowed region --- */

/* The half-open address range [start, end). */
struct sud_range {
    uintptr_t start;
    uintptr_t end;
};

/* The allowed region in this process: syscalls made from it are never
 * dispatched (section sud_allowed, between __start_sud_allowed and
 * __stop_sud_allowed, which every ELF linker defines). */
struct sud_range sud_allowed_region(void);

/* The addresses of the allowed region's entry points. */
struct sud_symbols {
    uintptr_t syscall_c[7];      /* sud_syscall0 .. sud_syscall6 */
    uintptr_t syscall;           /* sud_syscall: the `syscall` instruction's registers */
    uintptr_t reissue;           /* sud_reissue */
    uintptr_t reissue_sigreturn; /* sud_reissue_sigreturn */
    uintptr_t restorer;          /* sud_restorer, the rt_sigreturn restorer */
    uintptr_t entry;             /* sud_entry, the signal-free entry */
    uintptr_t fork;              /* sud_reissue_fork */
};

/* Where each entry point of the allowed region lies in this process. */
struct sud_symbols sud_region_symbols(void);

/* ---------------------------------------------------------- syscalls --- */

/* A syscall that is never dispatched, whatever the selector says: it runs
 * from the allowed region.  Host code that may run while its thread's
 * selector says BLOCK (a signal handler, code called from a JIT, the
 * callback of a thread armed with a range that does not exempt the region)
 * makes its syscalls this way.  Returns the raw result: -4095 to -1 is
 * -errno.  Unused arguments are ignored. */
long sud_host_syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

/* The allowed region's trampolines themselves, C calling convention, raw
 * result: `syscall(number, a1, ...)` that is never dispatched.  Symbols of
 * the static library (the shared library exports only the functions of
 * this header and sud_selector: use sud_host_syscall() or the addresses in
 * sud_region_symbols() there). */
long sud_syscall0(long number);
long sud_syscall1(long number, long a1);
long sud_syscall2(long number, long a1, long a2);
long sud_syscall3(long number, long a1, long a2, long a3);
long sud_syscall4(long number, long a1, long a2, long a3, long a4);
long sud_syscall5(long number, long a1, long a2, long a3, long a4, long a5);
long sud_syscall6(long number, long a1, long a2, long a3, long a4, long a5, long a6);

/* A syscall made like guest code: an inline `syscall` instruction, trapped
 * when the thread is armed and its selector says BLOCK.  Returns the raw
 * result (-errno for a failure). */
static inline long sud_guest_syscall(long number, long a1, long a2, long a3, long a4, long a5,
                                     long a6)
{
    long result;
    __asm__ volatile("mov %[a4], %%r10\n\t"
                     "mov %[a5], %%r8\n\t"
                     "mov %[a6], %%r9\n\t"
                     "syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a1), "S"(a2), "d"(a3), [a4] "r"(a4), [a5] "r"(a5),
                       [a6] "r"(a6)
                     : "rcx", "r8", "r9", "r10", "r11", "memory");
    return result;
}

/* ---------------------------------------------------- generated code --- */

/* The signal-free entry: generated code calls it in place of a `syscall`
 * instruction, and the callback decides as for a trapped syscall (emulate,
 * reissue, redirect, deny), without a signal.  Not callable from C: an
 * address to emit calls to.  A symbol of the static library; with the
 * shared library, sud_region_symbols().entry.
 *
 *     mov eax, 39                       # getpid; arguments in rdi, rsi, rdx, r10, r8, r9
 *     mov r11, [rip + thread_selector]  # this thread's selector, or 0 for sud_selector
 *     call sud_entry                    # instead of: syscall
 *
 * - reads RAX (the number), RDI, RSI, RDX, R10, R8, R9 (the arguments) and
 *   R11: the address of the selector the thread is armed with (0: the
 *   global sud_selector), which tells sud whose state this is;
 * - returns RAX = the result, RCX = the return address and R11 = RFLAGS, as
 *   `syscall` leaves them; every other general register, RFLAGS, and the
 *   x87, SSE, AVX and AVX-512 state are kept;
 * - RSP must be 16-byte aligned before the call; the return address and
 *   the entry's frame lie below the caller's RSP, so the caller's red zone
 *   is not kept (code that keeps data there moves RSP down 128 bytes);
 * - works armed or not, selector at BLOCK or ALLOW (the callback runs under
 *   ALLOW and the selector is put back). */
void sud_entry(void);

/* -------------------------------------- rewriting trap sites (experimental) --- */

/* From now on, rewrites each `syscall` that traps in guest code in
 * [start, end) at its `traps`th trap (1: the first) to jump to a thunk of
 * its own, which reaches the callback as sud_entry does (same outcomes,
 * same registers) with no signal.  Call it after sud_install().  A site
 * that cannot be rewritten safely stays trapped.  0, -EINVAL (0 traps, an
 * empty range), -ENOSPC (16 ranges already), SUD_ERR_NO_FSGSBASE, or the
 * error of membarrier or /proc/self/mem. */
int sud_rewrite_sites(uintptr_t start, uintptr_t end, uint32_t traps);

/* How a site was rewritten. */
enum sud_site_form {
    /* The `mov eax, number` before the `syscall` became `jmp thunk`. */
    SUD_SITE_MOV = 0,
    /* The `syscall` became `jmp island`, and the island (alignment padding
     * within 127 bytes after it) `jmp thunk`. */
    SUD_SITE_ISLAND = 1
};

/* A rewritten site. */
struct sud_site {
    uintptr_t syscall; /* the address of its `syscall` */
    uintptr_t thunk;   /* its thunk */
    uintptr_t island;  /* SUD_SITE_ISLAND: the island; else 0 */
    uint32_t form;     /* enum sud_site_form */
    uint32_t number;   /* SUD_SITE_MOV: the syscall number; else 0 */
};

/* Stores the first `capacity` sites rewritten now in `sites` (NULL with 0:
 * only counts them) and returns how many there are. */
size_t sud_rewritten_sites(struct sud_site *sites, size_t capacity);

/* Puts back the original bytes of every site any of whose rewritten bytes
 * lie in [start, end), and stops rewriting ranges inside it: before the
 * guest unmaps or rewrites code there.  Returns the sites put back. */
size_t sud_forget_sites(uintptr_t start, uintptr_t end);

#ifdef __cplusplus
}
#endif

#endif /* SUD_H */
