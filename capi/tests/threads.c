/*
 * Guest threads from C: pthreads, each with a sud_thread of its own (its
 * selector, its data, its redirect stack), trapping at the same time, while
 * the main thread keeps swapping the callback and its user pointer: every
 * trap must see its own thread's state and a callback with its own user
 * pointer, never one with the other's.
 */
#define _GNU_SOURCE
#include "sud.h"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREADS 4
#define CALLS 3000
/* A read from this descriptor is redirected. */
#define REDIRECTED_FD 1000

struct worker {
    int index;
    volatile uint8_t *selector;
    long wrong_answers;
    long wrong_views;      /* traps that saw another thread's selector or data */
    long off_stack;        /* redirects that did not run on the thread's stack */
    _Alignas(16) uint8_t redirect_stack[64 * 1024];
};

static struct worker workers[THREADS];
/* Two callbacks, each installed with its own token as user pointer. */
static int token_a, token_b;
static atomic_long mismatched_pairs;
static atomic_int running;

/* The answer for `call`'s thread: getppid is its index plus 1000. */
static int answer(struct sud_syscall *call)
{
    struct worker *worker = sud_syscall_thread_data(call);
    uint64_t args[6];
    if (worker == NULL || sud_syscall_selector(call) != worker->selector) {
        if (worker)
            worker->wrong_views++;
        return sud_deny(call, EFAULT);
    }
    switch (sud_syscall_number(call)) {
    case SYS_getppid:
        return sud_emulate(call, 1000 + (uint64_t)worker->index);
    case SYS_read:
        sud_syscall_args(call, args);
        return args[0] == REDIRECTED_FD ? SUD_ACTION_REDIRECT : sud_deny(call, EBADF);
    default:
        return sud_deny(call, ENOSYS);
    }
}

static int policy_a(struct sud_syscall *call, void *user)
{
    if (user != &token_a)
        atomic_fetch_add(&mismatched_pairs, 1);
    return answer(call);
}

static int policy_b(struct sud_syscall *call, void *user)
{
    if (user != &token_b)
        atomic_fetch_add(&mismatched_pairs, 1);
    return answer(call);
}

/* A redirected read: runs on the thread's redirect stack. */
static uint64_t redirected_read(struct sud_syscall *call, void *user)
{
    struct worker *worker = sud_syscall_thread_data(call);
    uint8_t here;
    (void)user;
    uintptr_t at = (uintptr_t)&here, low = (uintptr_t)worker->redirect_stack;
    if (at < low || at >= low + sizeof worker->redirect_stack)
        worker->off_stack++;
    return 5;
}

static void *work(void *argument)
{
    struct worker *worker = argument;
    struct sud_thread *thread;
    if (sud_thread_new(&thread) != 0) {
        worker->wrong_answers = -1;
        return NULL;
    }
    worker->selector = sud_thread_selector(thread);
    sud_thread_set_data(thread, worker);
    sud_thread_set_redirect_stack(thread, worker->redirect_stack, sizeof worker->redirect_stack);
    if (sud_thread_arm(thread) != 0)
        worker->wrong_answers = -1;
    for (int i = 0; i < CALLS; i++) {
        char buffer[8];
        sud_block(worker->selector);
        long ppid = sud_guest_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0);
        long got = i % 16 ? 5
                          : sud_guest_syscall(SYS_read, REDIRECTED_FD, (long)buffer,
                                              sizeof buffer, 0, 0, 0);
        sud_allow(worker->selector);
        worker->wrong_answers += ppid != 1000 + worker->index || got != 5;
    }
    sud_thread_free(thread);
    atomic_fetch_sub(&running, 1);
    return NULL;
}

static void threads_each_with_a_sud_thread(void)
{
    pthread_t threads[THREADS];
    CHECK_EQ(sud_install(policy_a, &token_a), 0);
    sud_install_redirect(redirected_read, NULL);
    atomic_store(&running, THREADS);
    for (int i = 0; i < THREADS; i++) {
        workers[i].index = i;
        CHECK_EQ(pthread_create(&threads[i], NULL, work, &workers[i]), 0);
    }
    /* The main thread is not armed: it swaps the pair while they trap. */
    long swaps = 0;
    while (atomic_load(&running) > 0) {
        CHECK_EQ(swaps % 2 ? sud_install(policy_a, &token_a) : sud_install(policy_b, &token_b), 0);
        swaps++;
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK_EQ(pthread_join(threads[i], NULL), 0);
        CHECK_EQ(workers[i].wrong_answers, 0);
        CHECK_EQ(workers[i].wrong_views, 0);
        CHECK_EQ(workers[i].off_stack, 0);
    }
    CHECK_EQ(atomic_load(&mismatched_pairs), 0);
    CHECK(swaps > 1);
}

int main(void)
{
    RUN(threads_each_with_a_sud_thread);
    return failures != 0;
}
