/*
 * sud's C interface from an ordinary C program: glibc, built PIE, -static,
 * and against the shared library (SUD_TEST_SHARED, which exports no asm
 * symbols), and musl, PIE and -static.  Every case arms, runs guest-style syscalls under BLOCK (inline
 * `syscall` instructions only: glibc's own code never runs blocked), then
 * allows and disarms; the callback records what it saw for the case to
 * check afterwards.
 */
#define _GNU_SOURCE
#include "sud.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* What the emulated getppid answers. */
#define EMULATED_PPID 4242
/* A read from this descriptor is redirected. */
#define REDIRECTED_FD 1000
/* A syscall number no kernel has. */
#define NR_MISSING 500

static long guest(long number) { return sud_guest_syscall(number, 0, 0, 0, 0, 0, 0); }

/* What the callback saw of the last trapped syscall. */
static struct {
    int calls;
    void *user;
    uint32_t number;
    uint64_t args[6];
    uintptr_t call_addr;
    uint64_t rip;
    int has_siginfo;
    struct {
        int code, number;
        uint64_t call_addr;
    } info; /* from the siginfo */
    int frame_holds_regs, has_ucontext;
    volatile uint8_t *selector;
    uint8_t selector_value;
    void *thread_data;
} seen;

static int token, other_token;

/* The policy every case runs under. */
static int policy(struct sud_syscall *call, void *user)
{
    struct sud_registers *regs = sud_syscall_regs(call);
    const struct sud_siginfo *info = sud_syscall_siginfo(call);
    struct sud_ucontext *context = sud_syscall_ucontext(call);
    seen.calls++;
    seen.user = user;
    seen.number = sud_syscall_number(call);
    sud_syscall_args(call, seen.args);
    seen.call_addr = sud_syscall_call_addr(call);
    seen.rip = regs->rip;
    seen.has_siginfo = info != NULL;
    if (info) {
        seen.info.code = info->si_code;
        seen.info.number = info->syscall;
        seen.info.call_addr = info->call_addr;
    }
    seen.has_ucontext = context != NULL;
    seen.frame_holds_regs = context && &context->uc_mcontext.regs == regs;
    seen.selector = sud_syscall_selector(call);
    seen.selector_value = *seen.selector;
    seen.thread_data = sud_syscall_thread_data(call);

    switch (seen.number) {
    case SYS_getppid:
        return sud_emulate(call, EMULATED_PPID);
    case SYS_getpid:
    case SYS_write:
    case SYS_tgkill:
    case SYS_rt_sigaction:
        return SUD_ACTION_REISSUE;
    case SYS_openat:
        return sud_deny(call, EACCES);
    case SYS_getuid:
        /* The registers are the callback's to change: reissued as getpid. */
        regs->rax = SYS_getpid;
        return SUD_ACTION_REISSUE;
    case SYS_getgid:
        /* Emulated, with another of the guest's registers changed. */
        regs->rdx = 0x5eed;
        return sud_emulate(call, 7);
    case SYS_geteuid:
        return sud_deny(call, 0); /* not an errno: ENOSYS */
    case SYS_getegid:
        return 99; /* not an action: ENOSYS */
    case SYS_sched_yield:
        sud_syscall_resume_allowed(call);
        return sud_emulate(call, 0);
    case SYS_read:
        return seen.args[0] == REDIRECTED_FD ? SUD_ACTION_REDIRECT : sud_deny(call, EBADF);
    default:
        return sud_deny(call, ENOSYS);
    }
}

static void arm_and_block(void)
{
    CHECK_EQ(sud_arm(), 0);
    sud_block(&sud_selector);
}

static void allow_and_disarm(void)
{
    sud_allow(&sud_selector);
    CHECK_EQ(sud_disarm(), 0);
}

static void support(void)
{
    CHECK(sud_support() & SUD_SUPPORT_EXCLUSIVE);
}

static void install_refuses_null(void)
{
    CHECK_EQ(sud_install(NULL, NULL), -EINVAL);
}

static void emulate(void)
{
    int calls = seen.calls;
    arm_and_block();
    long ppid = guest(SYS_getppid);
    allow_and_disarm();
    CHECK_EQ(ppid, EMULATED_PPID);
    CHECK_EQ(seen.calls, calls + 1);
    CHECK(seen.user == &token);
    CHECK_EQ(seen.number, SYS_getppid);
    CHECK(seen.has_siginfo);
    CHECK_EQ(seen.info.code, 2); /* SYS_USER_DISPATCH */
    CHECK_EQ(seen.info.number, SYS_getppid);
    CHECK_EQ(seen.info.call_addr, seen.call_addr);
    CHECK_EQ(seen.rip, seen.call_addr);
    CHECK(seen.has_ucontext && seen.frame_holds_regs);
    CHECK(seen.selector == &sud_selector);
    CHECK_EQ(seen.selector_value, SUD_SELECTOR_ALLOW);
    CHECK(seen.thread_data == NULL);
}

static void arguments(void)
{
    arm_and_block();
    long ppid = sud_guest_syscall(SYS_getppid, 1, 2, 3, 4, 5, 6);
    allow_and_disarm();
    CHECK_EQ(ppid, EMULATED_PPID);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(seen.args[i], i + 1);
}

static void reissue(void)
{
    static const char message[] = "  glibc: a reissued write\n";
    arm_and_block();
    long pid = guest(SYS_getpid);
    long written = sud_guest_syscall(SYS_write, 1, (long)message, sizeof message - 1, 0, 0, 0);
    allow_and_disarm();
    CHECK_EQ(pid, getpid());
    CHECK_EQ(written, sizeof message - 1);
}

static void deny(void)
{
    arm_and_block();
    long opened = sud_guest_syscall(SYS_openat, AT_FDCWD, (long)"/", 0, 0, 0, 0);
    long not_an_errno = guest(SYS_geteuid);
    long not_an_action = guest(SYS_getegid);
    long missing = guest(NR_MISSING);
    allow_and_disarm();
    CHECK_EQ(opened, -EACCES);
    CHECK_EQ(not_an_errno, -ENOSYS);
    CHECK_EQ(not_an_action, -ENOSYS);
    CHECK_EQ(missing, -ENOSYS);
}

/* getgid as guest code that keeps RDX: the callback changes it. */
static long getgid_keeping_rdx(uint64_t *rdx)
{
    long result = SYS_getgid;
    __asm__ volatile("syscall" : "+a"(result), "+d"(*rdx) : : "rcx", "r11", "memory");
    return result;
}

static void registers(void)
{
    uint64_t rdx = 1;
    arm_and_block();
    long pid = guest(SYS_getuid);
    long gid = getgid_keeping_rdx(&rdx);
    allow_and_disarm();
    CHECK_EQ(pid, getpid());
    CHECK_EQ(gid, 7);
    CHECK_EQ(rdx, 0x5eed);
}

/* What the redirect function saw. */
static struct {
    void *user;
    uint32_t number;
    int has_siginfo, has_ucontext;
    uint8_t selector_value;
} redirected;

static uint64_t read_from_nowhere(struct sud_syscall *call, void *user)
{
    uint64_t args[6];
    sud_syscall_args(call, args);
    redirected.user = user;
    redirected.number = sud_syscall_number(call);
    redirected.has_siginfo = sud_syscall_siginfo(call) != NULL;
    redirected.has_ucontext = sud_syscall_ucontext(call) != NULL;
    redirected.selector_value = *sud_syscall_selector(call);
    /* Ordinary code: it may call the C library. */
    memcpy((void *)(uintptr_t)args[1], "hello", 5);
    return 5;
}

static void redirect(void)
{
    char buffer[8] = {0};
    sud_install_redirect(read_from_nowhere, &other_token);
    arm_and_block();
    long got = sud_guest_syscall(SYS_read, REDIRECTED_FD, (long)buffer, sizeof buffer, 0, 0, 0);
    long after = guest(SYS_getppid);
    allow_and_disarm();
    CHECK_EQ(got, 5);
    CHECK(memcmp(buffer, "hello", 5) == 0);
    CHECK_EQ(after, EMULATED_PPID);
    CHECK(redirected.user == &other_token);
    CHECK_EQ(redirected.number, SYS_read);
    CHECK(!redirected.has_siginfo && !redirected.has_ucontext);
    CHECK_EQ(redirected.selector_value, SUD_SELECTOR_ALLOW);

    sud_install_redirect(NULL, NULL);
    arm_and_block();
    got = sud_guest_syscall(SYS_read, REDIRECTED_FD, (long)buffer, sizeof buffer, 0, 0, 0);
    allow_and_disarm();
    CHECK_EQ(got, -ENOSYS);
}

/* `call sud_entry` with RAX = number and R11 = selector, keeping the red
 * zone and aligning the stack as the entry wants. */
static long through_entry(uintptr_t entry, long number, volatile uint8_t *selector)
{
    long result = number;
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "sub $128, %%rsp\n\t"
                     "and $-16, %%rsp\n\t"
                     "mov %[selector], %%r11\n\t"
                     "call *%[entry]\n\t"
                     "mov %%rbx, %%rsp"
                     : "+a"(result)
                     : [entry] "r"(entry), [selector] "r"(selector)
                     : "rbx", "rcx", "r11", "memory", "cc");
    return result;
}

static void entry(void)
{
    uintptr_t address = sud_region_symbols().entry;
#ifndef SUD_TEST_SHARED
    CHECK_EQ(address, (uintptr_t)&sud_entry);
#endif
    arm_and_block();
    long ppid = through_entry(address, SYS_getppid, NULL);
    allow_and_disarm();
    CHECK_EQ(ppid, EMULATED_PPID);
    CHECK_EQ(seen.number, SYS_getppid);
    CHECK(!seen.has_siginfo && !seen.has_ucontext);
    /* Unarmed, selector at ALLOW: the callback still decides. */
    CHECK_EQ(through_entry(address, SYS_openat, NULL), -EACCES);
}

static void host_syscalls(void)
{
    int calls = seen.calls;
    arm_and_block();
    long ppid = sud_host_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0);
#ifndef SUD_TEST_SHARED
    long ppid0 = sud_syscall0(SYS_getppid);
    long pid2 = sud_syscall2(SYS_getpid, 1, 2);
#endif
    allow_and_disarm();
    CHECK_EQ(ppid, getppid());
#ifndef SUD_TEST_SHARED
    CHECK_EQ(ppid0, getppid());
    CHECK_EQ(pid2, getpid());
#endif
    CHECK_EQ(seen.calls, calls);
    CHECK_EQ(sud_host_syscall(NR_MISSING, 0, 0, 0, 0, 0, 0), -ENOSYS);
}

static void region(void)
{
    struct sud_range region = sud_allowed_region();
    struct sud_symbols symbols = sud_region_symbols();
    uintptr_t inside[] = {symbols.syscall,  symbols.reissue, symbols.reissue_sigreturn,
                          symbols.restorer, symbols.entry,   symbols.fork};
    CHECK(region.start < region.end);
    for (size_t i = 0; i < 7; i++)
        CHECK(region.start <= symbols.syscall_c[i] && symbols.syscall_c[i] < region.end);
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++)
        CHECK(region.start <= inside[i] && inside[i] < region.end);
#ifndef SUD_TEST_SHARED
    CHECK_EQ(symbols.syscall_c[0], (uintptr_t)&sud_syscall0);
    CHECK_EQ(symbols.syscall_c[6], (uintptr_t)&sud_syscall6);
#endif
}

static void global_selector(void)
{
    /* One byte, whether the program reaches it by symbol (a copy relocation
     * for the shared library) or through the library. */
    CHECK(sud_global_selector() == &sud_selector);
    sud_block(sud_global_selector());
    CHECK_EQ(sud_selector, SUD_SELECTOR_BLOCK);
    sud_allow(&sud_selector);
    CHECK_EQ(*sud_global_selector(), SUD_SELECTOR_ALLOW);
}

/* A page of guest code: getppid; ret. */
static long (*guest_page(void))(void)
{
    static const uint8_t code[] = {0xb8, SYS_getppid, 0, 0, 0, 0x0f, 0x05, 0xc3};
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    memcpy(page, code, sizeof code);
    CHECK_EQ(mprotect(page, 4096, PROT_READ | PROT_EXEC), 0);
    return (long (*)(void))(uintptr_t)page;
}

static void inclusive(void)
{
    struct sud_range region = sud_allowed_region();
    CHECK_EQ(sud_arm_inclusive(0x10000, 0x10000), -EINVAL);
    CHECK_EQ(sud_arm_inclusive(region.start, region.end), -EINVAL);
    long (*code)(void) = guest_page();
    uintptr_t start = (uintptr_t)code;
    int armed = sud_arm_inclusive(start, start + 4096);
    if (!(sud_support() & SUD_SUPPORT_INCLUSIVE)) {
        CHECK_EQ(armed, SUD_ERR_NO_INCLUSIVE_MODE);
        return;
    }
    CHECK_EQ(armed, 0);
    sud_block(&sud_selector);
    long from_outside = guest(SYS_getppid);
    long from_inside = code();
    allow_and_disarm();
    CHECK_EQ(from_outside, getppid());
    CHECK_EQ(from_inside, EMULATED_PPID);
    munmap((void *)start, 4096);
}

static void set_syscall_user_dispatch(void)
{
    struct sud_range region = sud_allowed_region();
    CHECK_EQ(sud_set_syscall_user_dispatch(SUD_DISPATCH_EXCLUSIVE_ON, region.start,
                                           region.end - region.start, &sud_selector),
             0);
    sud_block(&sud_selector);
    long ppid = guest(SYS_getppid);
    sud_allow(&sud_selector);
    CHECK_EQ(sud_set_syscall_user_dispatch(SUD_DISPATCH_OFF, 0, 0, NULL), 0);
    CHECK_EQ(ppid, EMULATED_PPID);
    CHECK_EQ(sud_set_syscall_user_dispatch(99, 0, 0, NULL), -EINVAL);
}

static void resume_allowed(void)
{
    arm_and_block();
    long yielded = guest(SYS_sched_yield);
    uint8_t after = sud_selector;
    allow_and_disarm();
    CHECK_EQ(yielded, 0);
    CHECK_EQ(after, SUD_SELECTOR_ALLOW);
}

/* What the host handlers saw. */
static volatile int host_runs, adopted_runs;
static volatile uint8_t host_selector, adopted_selector;
static volatile long host_ppid;

static void on_usr1(int signal, struct sud_siginfo *info, struct sud_ucontext *context)
{
    (void)info;
    (void)context;
    host_runs += signal == SIGUSR1;
    host_selector = sud_selector;
    host_ppid = guest(SYS_getppid); /* a host handler's syscalls run */
}

static void on_usr2(int signal)
{
    adopted_runs += signal == SIGUSR2;
    adopted_selector = sud_selector;
}

/* This process and thread, asked before any blocking. */
static pid_t pid, tid;

/* Sends `signal` to this thread from guest code. */
static long guest_raise(int signal)
{
    return sud_guest_syscall(SYS_tgkill, pid, tid, signal, 0, 0, 0);
}

static void host_handler(void)
{
    CHECK_EQ(sud_install_host_handler(SIGSYS, on_usr1, 0, 0), -EINVAL);
    CHECK_EQ(sud_install_host_handler(SIGUSR1, NULL, 0, 0), -EINVAL);
    CHECK_EQ(sud_install_host_handler(-1, on_usr1, 0, 0), -EINVAL);
    CHECK_EQ(sud_install_host_handler(SIGUSR1, on_usr1, SUD_SIGBIT(SIGUSR2), 0), 0);
    arm_and_block();
    long raised = guest_raise(SIGUSR1);
    long after = guest(SYS_getppid);
    allow_and_disarm();
    CHECK_EQ(raised, 0);
    CHECK_EQ(host_runs, 1);
    CHECK_EQ(host_selector, SUD_SELECTOR_ALLOW);
    CHECK_EQ(host_ppid, getppid());
    CHECK_EQ(after, EMULATED_PPID);
}

static void adopt(void)
{
    CHECK(signal(SIGUSR2, on_usr2) != SIG_ERR);
    CHECK_EQ(sud_adopt_signal(SIGUSR2), 0);
    CHECK_EQ(sud_adopt_signal(SIGSYS), -EINVAL);
    arm_and_block();
    long raised = guest_raise(SIGUSR2);
    allow_and_disarm();
    CHECK_EQ(raised, 0);
    CHECK_EQ(adopted_runs, 1);
    CHECK_EQ(adopted_selector, SUD_SELECTOR_ALLOW);
}

static void guest_action(void)
{
    /* The kernel's struct sigaction: handler, flags, restorer, mask. */
    uint64_t action[4] = {0x1234, SA_SIGINFO, 0, SUD_SIGBIT(SIGUSR2)};
    struct sud_sigaction recorded = {0, 0, 0};
    CHECK_EQ(sud_guest_action(SIGUSR1, &recorded), 0);
    arm_and_block();
    long set = sud_guest_syscall(SYS_rt_sigaction, SIGUSR1, (long)action, 0, 8, 0, 0);
    allow_and_disarm();
    CHECK_EQ(set, 0);
    CHECK_EQ(sud_guest_action(SIGUSR1, &recorded), 1);
    CHECK_EQ(recorded.handler, 0x1234);
    CHECK(recorded.flags & SA_SIGINFO);
    CHECK_EQ(recorded.mask, SUD_SIGBIT(SIGUSR2));
    CHECK_EQ(sud_guest_action(-1, &recorded), 0);
    /* The host handler is still the one installed. */
    CHECK_EQ(raise(SIGUSR1), 0);
    CHECK_EQ(host_runs, 2);
}

static void thread_handle(void)
{
    struct sud_thread *thread = NULL;
    int data;
    CHECK_EQ(sud_thread_new(NULL), -EINVAL);
    sud_thread_free(NULL);
    CHECK_EQ(sud_thread_new(&thread), 0);
    volatile uint8_t *selector = sud_thread_selector(thread);
    CHECK(selector != &sud_selector);
    sud_thread_set_data(thread, &data);
    CHECK_EQ(sud_thread_arm(thread), 0);
    sud_block(selector);
    long ppid = guest(SYS_getppid);
    sud_allow(selector);
    CHECK_EQ(sud_thread_disarm(thread), 0);
    CHECK_EQ(ppid, EMULATED_PPID);
    CHECK(seen.selector == selector);
    CHECK(seen.thread_data == &data);
    sud_thread_free(thread);
}

static void strerror_names_codes(void)
{
    CHECK(strstr(sud_strerror(0), "success") != NULL);
    CHECK(strstr(sud_strerror(SUD_ERR_NO_SYSCALL_USER_DISPATCH), "5.11") != NULL);
    CHECK(strstr(sud_strerror(SUD_ERR_NO_INCLUSIVE_MODE), "6.17") != NULL);
    CHECK(strstr(sud_strerror(-EINVAL), "errno") != NULL);
    CHECK(sud_strerror(SUD_ERR_UNKNOWN) != NULL && sud_strerror(1) != NULL);
}

static void reinstall(void)
{
    /* Installing again swaps the pair; uninstalling puts back glibc's. */
    CHECK_EQ(sud_install(policy, &other_token), 0);
    arm_and_block();
    long ppid = guest(SYS_getppid);
    allow_and_disarm();
    CHECK_EQ(ppid, EMULATED_PPID);
    CHECK(seen.user == &other_token);
    CHECK_EQ(sud_uninstall(), 0);
    struct sigaction current;
    CHECK_EQ(sigaction(SIGSYS, NULL, &current), 0);
    CHECK(current.sa_handler == SIG_DFL);
}

int main(void)
{
    pid = getpid();
    tid = gettid();
    RUN(support);
    RUN(install_refuses_null);
    CHECK_EQ(sud_install(policy, &token), 0);
    RUN(emulate);
    RUN(arguments);
    RUN(reissue);
    RUN(deny);
    RUN(registers);
    RUN(redirect);
    RUN(entry);
    RUN(host_syscalls);
    RUN(region);
    RUN(global_selector);
    RUN(inclusive);
    RUN(set_syscall_user_dispatch);
    RUN(resume_allowed);
    RUN(host_handler);
    RUN(adopt);
    RUN(guest_action);
    RUN(thread_handle);
    RUN(strerror_names_codes);
    RUN(reinstall);
    return failures != 0;
}
