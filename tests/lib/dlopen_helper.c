/* dlopen_helper.c: the library dlopen_caller.c loads by bare name from its
 * RPATH/RUNPATH directory. */
#include <stdlib.h>

__attribute__((noinline)) void *dh_alloc(size_t size)
{
    void *p = malloc(size); /* DH_ALLOC */
    __asm__ volatile("" ::: "memory");
    return p;
}
