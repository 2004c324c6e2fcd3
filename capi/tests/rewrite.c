/*
 * Rewriting trap sites from C: a `mov eax, getppid; syscall; ret` function
 * and a `mov eax, edi; syscall; ret` one followed by alignment padding, in
 * a page of their own, are rewritten at their first trap (SUD_SITE_MOV and
 * SUD_SITE_ISLAND), listed, called through the rewrite with the callback
 * answering as before, and put back by sud_forget_sites.
 */
#define _GNU_SOURCE
#include "sud.h"
#include "check.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int calls;

static int on_syscall(struct sud_syscall *call, void *user)
{
    (void)user;
    calls++;
    if (sud_syscall_number(call) == SYS_getppid) return sud_emulate(call, 4242);
    return SUD_ACTION_REISSUE;
}

/* The two sites' code: at 0, mov eax, 110; syscall; ret; at 16, mov eax,
 * edi; syscall; ret and 11 bytes of no-ops up to 32. */
static const unsigned char code[] = {
    0xb8, SYS_getppid, 0, 0, 0, 0x0f, 0x05, 0xc3, /* mov eax, getppid; syscall; ret */
    0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
    0x89, 0xf8, 0x0f, 0x05, 0xc3,                               /* mov eax, edi; syscall; ret */
    0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0x66, 0x90, /* padding to 32 */
    0xc3,
};

typedef long (*site_fn)(long number);

static long call_site(site_fn site, long number)
{
    sud_block(&sud_selector);
    long result = site(number);
    sud_allow(&sud_selector);
    return result;
}

static void sites_rewritten_listed_and_forgotten(void)
{
    unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    memcpy(page, code, sizeof code);
    CHECK_EQ(mprotect(page, 4096, PROT_READ | PROT_EXEC), 0);
    site_fn mov_site = (site_fn)(uintptr_t)page, island_site = (site_fn)(uintptr_t)(page + 16);

    CHECK_EQ(sud_rewrite_sites((uintptr_t)page, (uintptr_t)page + 4096, 0), -EINVAL);
    CHECK_EQ(sud_install(on_syscall, NULL), 0);
    CHECK_EQ(sud_rewrite_sites((uintptr_t)page, (uintptr_t)page + 4096, 1), 0);
    CHECK_EQ(sud_arm(), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(call_site(mov_site, 0), 4242);
        CHECK_EQ(call_site(island_site, SYS_getppid), 4242);
        CHECK_EQ(call_site(island_site, SYS_getpid), getpid());
    }
    CHECK_EQ(calls, 9);
    CHECK_EQ(page[0], 0xe9);  /* jmp thunk where the mov was */
    CHECK_EQ(page[18], 0xeb); /* jmp island where the syscall was */

    CHECK_EQ(sud_rewritten_sites(NULL, 0), 2);
    struct sud_site sites[2];
    memset(sites, 0, sizeof sites);
    CHECK_EQ(sud_rewritten_sites(sites, 2), 2);
    if (sites[0].syscall > sites[1].syscall) {
        struct sud_site first = sites[1];
        sites[1] = sites[0];
        sites[0] = first;
    }
    CHECK_EQ(sites[0].syscall, (uintptr_t)page + 5);
    CHECK_EQ(sites[0].form, SUD_SITE_MOV);
    CHECK_EQ(sites[0].number, SYS_getppid);
    CHECK_EQ(sites[1].syscall, (uintptr_t)page + 18);
    CHECK_EQ(sites[1].form, SUD_SITE_ISLAND);
    CHECK_EQ(sites[1].island, (uintptr_t)page + 21);

    CHECK_EQ(sud_forget_sites((uintptr_t)page, (uintptr_t)page + 4096), 2);
    CHECK_EQ(sud_rewritten_sites(NULL, 0), 0);
    CHECK_EQ(page[0], 0xb8);
    CHECK_EQ(page[18], 0x0f);
    CHECK_EQ(call_site(mov_site, 0), 4242); /* trapped again */
    CHECK_EQ(calls, 10);
    CHECK_EQ(sud_disarm(), 0);
    CHECK(strstr(sud_strerror(SUD_ERR_NO_FSGSBASE), "FSGSBASE") != NULL);
}

int main(void)
{
    RUN(sites_rewritten_listed_and_forgotten);
    return failures != 0;
}
