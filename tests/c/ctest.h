/* ctest.h: a minimal C unit test harness. Each test file defines test
 * functions, lists them in main() with RUN(), and ends with DONE(), which
 * prints the plain closing line "N passed, N failed". */
#ifndef MR_CTEST_H
#define MR_CTEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int ctest_failed_checks;
static int ctest_passed, ctest_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            ctest_failed_checks++;                                                                 \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long ctest_a = (long long)(a), ctest_b = (long long)(b);                              \
        if (ctest_a != ctest_b) {                                                                  \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    ctest_a, ctest_b);                                                             \
            ctest_failed_checks++;                                                                 \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int ctest_before = ctest_failed_checks;                                                    \
        fn();                                                                                      \
        if (ctest_failed_checks == ctest_before) {                                                 \
            ctest_passed++;                                                                        \
        } else {                                                                                   \
            ctest_failed++;                                                                        \
            fprintf(stderr, "FAILED %s\n", #fn);                                                   \
        }                                                                                          \
    } while (0)

#define DONE()                                                                                     \
    do {                                                                                           \
        printf("%d passed, %d failed\n", ctest_passed, ctest_failed);                              \
        return ctest_failed ? 1 : 0;                                                               \
    } while (0)

#endif
