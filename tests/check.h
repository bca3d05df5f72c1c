// A minimal test harness: each test is one executable; CHECK_* record failures with
// file:line and keep going; test_main() returns 1 if any failed. Exit code 77 tells
// meson the test was skipped (no GPU, no MPI launcher).
#ifndef SELMA_TESTS_CHECK_H
#define SELMA_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures, check_count;

#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        check_count++;                                                         \
        if (!(cond)) {                                                         \
            check_failures++;                                                  \
            fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

#define EXPECT_TRUE(cond) EXPECT(cond, "%s", "")

// |a - b| <= atol + rtol * |b|
#define EXPECT_NEAR(a, b, atol, rtol)                                          \
    do {                                                                       \
        double ea_ = (double)(a), eb_ = (double)(b);                            \
        EXPECT(fabs(ea_ - eb_) <= (atol) + (rtol) * fabs(eb_),                 \
               "%s = %.9g, %s = %.9g", #a, ea_, #b, eb_);                      \
    } while (0)

#define TEST_SKIP 77

static inline int check_report(const char *name) {
    if (check_failures)
        fprintf(stderr, "%s: %d of %d checks failed\n", name, check_failures, check_count);
    else
        printf("%s: %d checks passed\n", name, check_count);
    return check_failures ? 1 : 0;
}

#endif
