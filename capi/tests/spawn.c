/*
 * Guest threads on host threads, from C: with a spawn hook, a raw clone
 * the guest makes (as pthread_create does: the thread flags, a stack of
 * its own, CLONE_SETTLS and the tid words) runs on a pthread the hook
 * makes, with native clone semantics for the guest and the host thread's
 * own TLS for the callback.  A hook that refuses, or frees the thread,
 * makes the guest's clone fail as it said.
 */
#define _GNU_SOURCE
#include "sud.h"
#include "check.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREAD_FLAGS                                                                        \
    (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |    \
     CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)
#define EXIT_STATUS 42
#define STACK_SIZE (64 * 1024)

/* Which host thread a callback runs on: set by each host thread the hook
 * makes, read by the callback through the host's TLS. */
static __thread int host_thread_number;
static atomic_int host_threads_made;

/* What the guest child saw, and what the callback saw while it ran. */
static uint64_t child_thread_pointer;
static long child_ppid;
static atomic_int callback_host_thread;
static void *callback_data;
static int data_token;

/* The host side of the guest thread: its run's result and exit status. */
static atomic_int run_result = 1;
static atomic_int exit_status = -1;
static atomic_int hook_calls;

/* A TLS block for the guest child: its first word points at itself, as
 * the x86-64 TLS ABI has it. */
static uint64_t guest_tls[8];
static _Alignas(16) uint8_t child_stack[STACK_SIZE];

static int policy(struct sud_syscall *call, void *user)
{
    (void)user;
    switch (sud_syscall_number(call)) {
    case SYS_getppid:
        atomic_store(&callback_host_thread, host_thread_number);
        callback_data = sud_syscall_thread_data(call);
        return sud_emulate(call, 7777);
    default:
        return SUD_ACTION_REISSUE;
    }
}

/* The guest child: what it sees of its thread pointer and of a trapped
 * syscall.  Runs on a guest thread pointer, so no TLS and no stack
 * protector (built with -fno-stack-protector). */
static int guest_child(void)
{
    uint64_t fs;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(fs));
    child_thread_pointer = fs;
    child_ppid = sud_guest_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0);
    return EXIT_STATUS;
}

/* clone(flags, stack, parent_tid, child_tid, tls) as guest code: the
 * child calls `child` on `stack` and exits with its result. */
static long guest_clone(unsigned long flags, uint8_t *stack_top, int *parent_tid, int *child_tid,
                        uint64_t tls, int (*child)(void))
{
    register long r10 __asm__("r10") = (long)child_tid;
    register long r8 __asm__("r8") = (long)tls;
    long result;
    stack_top -= 16;
    *(int (**)(void))stack_top = child;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "pop %%rax\n\t"
                     "add $8, %%rsp\n\t"
                     "call *%%rax\n\t"
                     "mov %%eax, %%edi\n\t"
                     "mov %[exit], %%eax\n\t"
                     "syscall\n\t"
                     "ud2\n"
                     "1:"
                     : "=a"(result)
                     : "0"((long)SYS_clone), "D"(flags), "S"(stack_top), "d"(parent_tid),
                       "r"(r10), "r"(r8), [exit] "i"(SYS_exit)
                     : "rcx", "r11", "memory");
    return result;
}

static void *host_thread(void *argument)
{
    struct sud_guest_thread *guest = argument;
    struct sud_thread *thread;
    int status = -1;
    host_thread_number = atomic_fetch_add(&host_threads_made, 1) + 1;
    if (sud_thread_new(&thread) != 0) {
        sud_guest_thread_free(guest);
        return NULL;
    }
    atomic_store(&run_result, sud_thread_run_guest(thread, guest, &status));
    atomic_store(&exit_status, status);
    sud_thread_free(thread);
    return NULL;
}

/* The host's hook: a detached pthread for each guest thread. */
static int pthread_hook(struct sud_guest_thread *guest, void *user)
{
    pthread_t id;
    pthread_attr_t attributes;
    atomic_fetch_add(&hook_calls, 1);
    if (user != &data_token || sud_guest_thread_data(guest) != &data_token)
        return -EFAULT;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int error = pthread_create(&id, &attributes, host_thread, guest);
    pthread_attr_destroy(&attributes);
    return -error;
}

static int refusing_hook(struct sud_guest_thread *guest, void *user)
{
    (void)guest;
    (void)user;
    atomic_fetch_add(&hook_calls, 1);
    return -EPERM;
}

static int freeing_hook(struct sud_guest_thread *guest, void *user)
{
    (void)user;
    atomic_fetch_add(&hook_calls, 1);
    sud_guest_thread_free(guest);
    return 0;
}

/* An armed thread of our own whose guest code makes one clone. */
static long clone_from_guest(int *parent_tid, int *child_tid)
{
    struct sud_thread *thread;
    long result;
    CHECK_EQ(sud_thread_new(&thread), 0);
    sud_thread_set_data(thread, &data_token);
    CHECK_EQ(sud_thread_arm(thread), 0);
    sud_block(sud_thread_selector(thread));
    result = guest_clone(THREAD_FLAGS, child_stack + STACK_SIZE, parent_tid, child_tid,
                         (uint64_t)guest_tls, guest_child);
    sud_allow(sud_thread_selector(thread));
    sud_thread_free(thread);
    return result;
}

static void guest_thread_runs_on_a_host_thread(void)
{
    static int parent_tid, child_tid;
    guest_tls[0] = (uint64_t)guest_tls;
    CHECK_EQ(sud_install(policy, NULL), 0);
    sud_set_spawn_hook(pthread_hook, &data_token);
    child_tid = -1;
    long tid = clone_from_guest(&parent_tid, &child_tid);
    CHECK(tid > 0);
    CHECK_EQ(parent_tid, tid);
    /* CLONE_CHILD_CLEARTID: cleared and woken when the guest thread exits
     * (10 s at most). */
    struct timespec second = {1, 0};
    for (int i = 0; i < 10; i++) {
        int seen = __atomic_load_n(&child_tid, __ATOMIC_ACQUIRE);
        if (seen == 0)
            break;
        syscall(SYS_futex, &child_tid, FUTEX_WAIT, seen, &second, NULL, 0);
    }
    CHECK_EQ(__atomic_load_n(&child_tid, __ATOMIC_ACQUIRE), 0);
    /* Its host thread stores the exit status just after (10 s at most). */
    for (int i = 0; i < 10000 && atomic_load(&exit_status) == -1; i++)
        usleep(1000);
    CHECK_EQ(atomic_load(&run_result), 0);
    CHECK_EQ(atomic_load(&exit_status), EXIT_STATUS);
    CHECK_EQ(hook_calls, 1);
    /* The guest saw its own thread pointer and the callback's answer. */
    CHECK_EQ(child_thread_pointer, (uint64_t)guest_tls);
    CHECK_EQ(child_ppid, 7777);
    /* The callback ran on the hook's pthread, with that thread's TLS, and
     * with the data the child inherited. */
    CHECK_EQ(atomic_load(&callback_host_thread), 1);
    CHECK(callback_data == &data_token);
    sud_set_spawn_hook(NULL, NULL);
}

static void refused_and_freed_guest_threads_fail_their_clone(void)
{
    static int parent_tid, child_tid;
    CHECK_EQ(sud_install(policy, NULL), 0);
    atomic_store(&hook_calls, 0);
    sud_set_spawn_hook(refusing_hook, NULL);
    CHECK_EQ(clone_from_guest(&parent_tid, &child_tid), -EPERM);
    sud_set_spawn_hook(freeing_hook, NULL);
    CHECK_EQ(clone_from_guest(&parent_tid, &child_tid), -EAGAIN);
    CHECK_EQ(atomic_load(&hook_calls), 2);
    /* Nothing ran: no tid was written. */
    CHECK_EQ(parent_tid, 0);
    CHECK_EQ(sud_thread_run_guest(NULL, NULL, NULL), -EINVAL);
    sud_set_spawn_hook(NULL, NULL);
}

int main(void)
{
    RUN(guest_thread_runs_on_a_host_thread);
    RUN(refused_and_freed_guest_threads_fail_their_clone);
    return failures != 0;
}
