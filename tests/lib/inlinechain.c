/* inlinechain.c: a test library built with -O2 -g whose allocations sit under
 * chains of always_inline functions, some of the calls inside nested block
 * scopes (DW_TAG_lexical_block between DW_TAG_inlined_subroutine DIEs). The
 * symbolizer must give every inlined frame, in order, each at the line of its
 * call site, as elfutils' eu-addr2line -i does. Line markers are asserted. */
#include <stdlib.h>
#include <string.h>

volatile int ic_sink;

static inline __attribute__((always_inline)) void *ic_leaf(size_t size)
{
    void *p = malloc(size); /* IC_LEAF */
    if (p != NULL)
        memset(p, 1, 16);
    return p;
}

static inline __attribute__((always_inline)) void *ic_mid(size_t size, int n)
{
    void *p = NULL;
    for (int i = 0; i < n; i++) {
        int scoped = i * 3 + ic_sink; /* a block with its own variable */
        ic_sink = scoped;
        if (scoped >= 0) {
            char tmp[8];
            tmp[0] = (char)scoped;
            ic_sink += tmp[0];
            p = ic_leaf(size + (size_t)(i & 1)); /* IC_MID */
        }
    }
    return p;
}

static inline __attribute__((always_inline)) void *ic_upper(size_t size, int n)
{
    {
        int local = n + ic_sink;
        ic_sink = local;
        if (local > -1000) {
            void *p = ic_mid(size, n); /* IC_UPPER */
            ic_sink++;
            return p;
        }
    }
    return NULL;
}

static inline __attribute__((always_inline)) void *ic_top(size_t size, int n)
{
    void *p = ic_upper(size, n); /* IC_TOP */
    ic_sink--;
    return p;
}

__attribute__((noinline)) void *ic_alloc(size_t size)
{
    void *p = ic_top(size, 1); /* IC_ENTRY */
    __asm__ volatile("" ::: "memory");
    return p;
}
