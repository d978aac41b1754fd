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
