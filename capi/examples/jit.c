/*
 * A tiny C "JIT" under sud (the C twin of examples/demo.rs): it writes
 * guest machine code into an mmap'd page at run time, runs it with the
 * selector at BLOCK, and prints each syscall the guest made as sud's
 * callback saw it, emulated, reissued or denied.
 *
 *     cargo run -p sud-capi-pack
 *     cc -O2 -Icapi/include capi/examples/jit.c target/sud-capi/libsud_capi.a -o jit && ./jit
 */
#define _GNU_SOURCE
#include "sud.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A syscall number no kernel has. */
#define NR_MISSING 500
/* What the emulated getppid answers. */
#define FAKE_PPID 4242

/* One trapped call as the callback saw it: kept in signal context, printed
 * afterwards (no stdio in the callback: the guest may hold its lock). */
struct trap {
    uint32_t number;
    uint64_t args[6];
    uintptr_t call_addr;
    int action;
    uint64_t value; /* emulated value, or errno denied */
};

static struct {
    int len;
    int counting; /* timing runs: no log */
    struct trap traps[16];
} log_;

/* The policy: emulate getppid, let write and getpid run, refuse file
 * opens, and deny (ENOSYS) anything else. */
static int on_syscall(struct sud_syscall *call, void *user)
{
    (void)user;
    struct trap trap = {.number = sud_syscall_number(call), .call_addr = sud_syscall_call_addr(call)};
    sud_syscall_args(call, trap.args);
    switch (trap.number) {
    case SYS_getppid:
        trap.value = FAKE_PPID;
        trap.action = sud_emulate(call, FAKE_PPID);
        break;
    case SYS_write:
    case SYS_getpid:
        trap.action = SUD_ACTION_REISSUE;
        break;
    case SYS_openat:
        trap.value = EACCES;
        trap.action = sud_deny(call, EACCES);
        break;
    default:
        trap.value = ENOSYS;
        trap.action = sud_deny(call, ENOSYS);
        break;
    }
    if (!log_.counting && log_.len < 16)
        log_.traps[log_.len++] = trap;
    return trap.action;
}

/* A few x86-64 instructions, encoded by hand. */
struct code {
    uint8_t bytes[512];
    size_t len;
};

static void emit(struct code *code, const void *bytes, size_t len)
{
    memcpy(code->bytes + code->len, bytes, len);
    code->len += len;
}

/* mov r32, imm32 (eax 0, edx 2, esi 6, edi 7) */
static void mov_imm32(struct code *code, uint8_t reg, uint32_t imm)
{
    uint8_t op = 0xb8 + reg;
    emit(code, &op, 1);
    emit(code, &imm, 4);
}

/* mov r64, imm64 (rdx 2, rsi 6, rdi 7) */
static void mov_imm64(struct code *code, uint8_t reg, uint64_t imm)
{
    uint8_t op[2] = {0x48, 0xb8 + reg};
    emit(code, op, 2);
    emit(code, &imm, 8);
}

static void syscall_(struct code *code) { emit(code, "\x0f\x05", 2); }

/* mov [rbx + 8 * slot], rax: keep a result in the caller's array. */
static void store_rax(struct code *code, uint8_t slot)
{
    uint8_t op[4] = {0x48, 0x89, 0x43, (uint8_t)(slot * 8)};
    emit(code, op, 4);
}

static void prologue(struct code *code) { emit(code, "\x53\x48\x89\xfb", 4); } /* push rbx; mov rbx, rdi */
static void epilogue(struct code *code) { emit(code, "\x5b\xc3", 2); }         /* pop rbx; ret */

typedef void guest_fn(uint64_t *results);

/* An executable page holding `code`. */
static guest_fn *load(const struct code *code)
{
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return NULL;
    memcpy(page, code->bytes, code->len);
    if (mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0)
        return NULL;
    return (guest_fn *)(uintptr_t)page;
}

/* Runs guest code with the selector at BLOCK: every syscall it makes is
 * trapped and answered by on_syscall. */
static void run_blocked(guest_fn *guest, uint64_t *results)
{
    sud_block(&sud_selector);
    guest(results);
    sud_allow(&sud_selector);
}

static const char *name(uint32_t number)
{
    switch (number) {
    case SYS_getppid: return "getppid";
    case SYS_getpid: return "getpid";
    case SYS_write: return "write";
    case SYS_openat: return "openat";
    case NR_MISSING: return "syscall 500";
    default: return "?";
    }
}

/* One guest syscall, `number`, with its result in results[0]. */
static guest_fn *one_syscall(uint32_t number)
{
    struct code code = {.len = 0};
    prologue(&code);
    mov_imm32(&code, 0, number);
    syscall_(&code);
    store_rax(&code, 0);
    epilogue(&code);
    return load(&code);
}

/* ns per call of `guest`, run `n` times, blocked or not. */
static double time_calls(guest_fn *guest, int blocked, int n)
{
    uint64_t result;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < n; i++) {
        if (blocked)
            run_blocked(guest, &result);
        else
            guest(&result);
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    return ((end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec)) / n;
}

int main(void)
{
    unsigned support = sud_support();
    printf("kernel: syscall user dispatch %s, inclusive mode %s\n",
           support & SUD_SUPPORT_EXCLUSIVE ? "yes" : "no",
           support & SUD_SUPPORT_INCLUSIVE ? "yes" : "no");
    struct sud_range region = sud_allowed_region();
    printf("allowed region: %#lx..%#lx (%lu bytes); selector `sud_selector` at %p\n",
           (unsigned long)region.start, (unsigned long)region.end,
           (unsigned long)(region.end - region.start), (void *)&sud_selector);

    /* The guest: five raw syscalls, each result kept in results[i]. */
    static const char message[] = "  guest: hello from guest code (a reissued write)\n";
    static const char path[] = "/etc/passwd";
    struct code code = {.len = 0};
    prologue(&code);
    mov_imm32(&code, 0, SYS_getppid);
    syscall_(&code);
    store_rax(&code, 0);
    mov_imm32(&code, 0, SYS_write);
    mov_imm32(&code, 7, 1);
    mov_imm64(&code, 6, (uintptr_t)message);
    mov_imm32(&code, 2, sizeof message - 1);
    syscall_(&code);
    store_rax(&code, 1);
    mov_imm32(&code, 0, SYS_getpid);
    syscall_(&code);
    store_rax(&code, 2);
    mov_imm32(&code, 0, SYS_openat);
    mov_imm64(&code, 7, (uint64_t)(int64_t)AT_FDCWD);
    mov_imm64(&code, 6, (uintptr_t)path);
    mov_imm32(&code, 2, 0);
    syscall_(&code);
    store_rax(&code, 3);
    mov_imm32(&code, 0, NR_MISSING);
    syscall_(&code);
    store_rax(&code, 4);
    epilogue(&code);
    guest_fn *guest = load(&code);
    if (!guest) {
        perror("mmap");
        return 1;
    }
    printf("guest code: %zu bytes at %p\n", code.len, (void *)(uintptr_t)guest);

    int status = sud_install(on_syscall, NULL);
    if (status == 0)
        status = sud_arm();
    if (status != 0) {
        fprintf(stderr, "sud: %s (%d)\n", sud_strerror(status), status);
        return 1;
    }
    uint64_t results[5];
    fflush(stdout); /* the guest's write goes straight to fd 1 */
    run_blocked(guest, results);

    printf("\ntrapped syscalls:\n");
    for (int i = 0; i < log_.len; i++) {
        const struct trap *trap = &log_.traps[i];
        printf("  %-12s (%#lx, %#lx, %#lx) from guest+%#lx: ", name(trap->number),
               (unsigned long)trap->args[0], (unsigned long)trap->args[1],
               (unsigned long)trap->args[2], (unsigned long)(trap->call_addr - (uintptr_t)guest));
        switch (trap->action) {
        case SUD_ACTION_EMULATE:
            printf("emulated -> %lu\n", (unsigned long)trap->value);
            break;
        case SUD_ACTION_REISSUE:
            printf("reissued -> %ld\n", (long)results[i]);
            break;
        default:
            printf("denied -> %s (errno %lu)\n", strerror((int)trap->value),
                   (unsigned long)trap->value);
            break;
        }
    }
    uint64_t expected[5] = {FAKE_PPID, sizeof message - 1, (uint64_t)getpid(),
                            (uint64_t)-EACCES, (uint64_t)-ENOSYS};
    if (log_.len != 5 || memcmp(results, expected, sizeof expected) != 0) {
        fprintf(stderr, "unexpected results\n");
        return 1;
    }

    /* Cost: a one-syscall guest, run many times, emulated vs. reissued,
     * next to the same syscall made natively with dispatch off. */
    enum { N = 100000 };
    guest_fn *one_getppid = one_syscall(SYS_getppid), *one_getpid = one_syscall(SYS_getpid);
    log_.counting = 1;
    double emulate_ns = time_calls(one_getppid, 1, N);
    double reissue_ns = time_calls(one_getpid, 1, N);
    sud_disarm();
    double native_ns = time_calls(one_getpid, 0, N);
    printf("\ncost per guest syscall: emulate %.0f ns, reissue %.0f ns, native (unarmed) %.0f ns\n",
           emulate_ns, reissue_ns, native_ns);
    return 0;
}
