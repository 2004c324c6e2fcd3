/*
 * The JIT-runtime case: a program with no libc at all (-nostdlib -static
 * -nostartfiles, its own _start), only sud and the kernel's UAPI headers.
 * It installs a callback, arms, and traps syscalls made by inline
 * `syscall` instructions and by machine code it writes into a page of its
 * own, first on the global selector and then on a sud_thread's.  Its output
 * goes through sud's trampolines; exit status 0 if every case passed.
 */
#include "sud.h"

#include <asm/errno.h>
#include <linux/mman.h>
#include <asm/unistd.h>

/* The memory functions the library and the compiler call, which a libc
 * would supply: string instructions, so that no compiler turns them back
 * into calls to themselves. */
void *memcpy(void *dst, const void *src, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    if ((uintptr_t)dst - (uintptr_t)src >= n)
        return memcpy(dst, src, n);
    const uint8_t *s = (const uint8_t *)src + n - 1;
    uint8_t *d = (uint8_t *)dst + n - 1;
    __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

int bcmp(const void *a, const void *b, size_t n) { return memcmp(a, b, n); }

/* Output through the allowed region: it works armed and blocked. */
static void say(const char *text)
{
    size_t len = 0;
    while (text[len])
        len++;
    sud_syscall3(__NR_write, 1, (long)text, (long)len);
}

static int failures;

static void check(int ok, const char *name)
{
    say(ok ? "ok " : "FAIL ");
    say(name);
    say("\n");
    failures += !ok;
}

static int on_syscall(struct sud_syscall *call, void *user)
{
    ++*(int *)user;
    switch (sud_syscall_number(call)) {
    case __NR_getppid:
        return sud_emulate(call, 42);
    case __NR_write:
        return SUD_ACTION_REISSUE;
    default:
        return sud_deny(call, ENOSYS);
    }
}

/* Guest code in a page of its own: getppid; ret. */
static long (*jit_getppid(void))(void)
{
    static const uint8_t code[] = {0xb8, __NR_getppid, 0, 0, 0, 0x0f, 0x05, 0xc3};
    long page = sud_syscall6(__NR_mmap, 0, 4096, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page < 0 && page > -4096)
        return 0;
    memcpy((void *)page, code, sizeof code);
    if (sud_syscall3(__NR_mprotect, page, 4096, PROT_READ | PROT_EXEC) != 0)
        return 0;
    return (long (*)(void))page;
}

static int start(void)
{
    static const char message[] = "freestanding: a reissued write\n";
    int calls = 0;
    check(sud_install(on_syscall, &calls) == 0 && sud_arm() == 0, "install_and_arm");

    long (*jit)(void) = jit_getppid();
    check(jit != 0, "jit_page");
    sud_block(&sud_selector);
    long ppid = sud_guest_syscall(__NR_getppid, 0, 0, 0, 0, 0, 0);
    long written =
        sud_guest_syscall(__NR_write, 1, (long)message, sizeof message - 1, 0, 0, 0);
    long from_jit = jit ? jit() : 0;
    long missing = sud_guest_syscall(500, 0, 0, 0, 0, 0, 0);
    sud_allow(&sud_selector);
    check(sud_disarm() == 0, "disarm");
    check(ppid == 42, "emulate");
    check(written == sizeof message - 1, "reissue");
    check(from_jit == 42, "jit_code_trapped");
    check(missing == -ENOSYS, "deny");
    check(calls == 4, "callback_calls");

    struct sud_thread *thread = 0;
    check(sud_thread_new(&thread) == 0 && sud_thread_arm(thread) == 0, "thread_arm");
    if (thread) {
        volatile uint8_t *selector = sud_thread_selector(thread);
        sud_block(selector);
        from_jit = jit ? jit() : 0;
        sud_allow(selector);
        sud_thread_free(thread);
        check(from_jit == 42, "thread_jit_code_trapped");
    }
    return failures;
}

/* Called by _start with the initial stack pointer; never returns. */
__attribute__((used, noreturn)) static void start_c(void)
{
    sud_syscall1(__NR_exit_group, start());
    __builtin_unreachable();
}

__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"   /* the outermost frame */
        "    and $-16, %rsp\n"   /* the ABI's alignment at each call */
        "    call start_c\n"
        "    ud2\n"
        ".size _start, . - _start\n");
