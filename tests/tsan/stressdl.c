/* stressdl.c: a library the TSan stress program dlopens while tracking runs,
 * so its GOT is patched by hook_dlopen concurrently with other threads'
 * allocations. Its calls must be recorded like anyone else's. */
#include <stdlib.h>

/* Makes n allocations of size bytes and frees them; returns how many
 * succeeded. The asm keeps the compiler from eliding the unused blocks. */
__attribute__((visibility("default"))) int stressdl_alloc(int n, size_t size)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char *p = malloc(size);
        if (p == NULL)
            continue;
        p[0] = (char)i;
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
        ok++;
    }
    return ok;
}
