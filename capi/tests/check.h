/*
 * What the C and C++ test programs share: checks that say where they
 * failed, and a line per case for tests/c.rs to read ("ok NAME" or
 * "FAIL NAME").  Only ever used outside signal context.
 */
#ifndef SUD_TEST_CHECK_H
#define SUD_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

#define CHECK_EQ(left, right)                                                           \
    do {                                                                                \
        long long left_ = (long long)(left), right_ = (long long)(right);              \
        if (left_ != right_) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s == %s: %lld != %lld\n", __FILE__, \
                    __LINE__, #left, #right, left_, right_);                            \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

/* Runs one case and reports it. */
static inline void run_case(const char *name, void (*body)(void))
{
    int before = failures;
    body();
    printf("%s %s\n", failures == before ? "ok" : "FAIL", name);
    fflush(stdout);
}

#define RUN(name) run_case(#name, name)

#endif
