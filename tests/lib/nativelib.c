/* nativelib.c: a test library built with -g for native stack tests: a static
 * inline function the compiler inlines, an exported entry point, and a call
 * into the C++ part (nativelib_cxx.cpp). Line markers are asserted. */
#include <stdlib.h>

void *nl_cxx_alloc(size_t size);

static inline __attribute__((always_inline)) void *inlined_alloc(size_t size)
{
    return malloc(size); /* NL_INLINED */
}

__attribute__((noinline)) void *nl_alloc(size_t size)
{
    void *p = inlined_alloc(size); /* NL_ENTRY */
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) void *nl_alloc_cxx(size_t size)
{
    void *p = nl_cxx_alloc(size); /* NL_CXX_CALL */
    __asm__ volatile("" ::: "memory");
    return p;
}

/* Recurses depth times, then allocates: a native stack of depth + 1 frames
 * of this library. The barrier after the call keeps it a real call (no tail
 * call, no loop). */
__attribute__((noinline)) void *nl_recurse(int depth, size_t size)
{
    if (depth <= 0)
        return malloc(size);               /* NL_RECURSE_ALLOC */
    void *p = nl_recurse(depth - 1, size); /* NL_RECURSE_CALL */
    __asm__ volatile("" ::: "memory");
    return p;
}
