/* dlopen_caller.c: a test library built with an RPATH or RUNPATH of
 * $ORIGIN/sub that dlopens libdlopen_helper.so by its bare name, found only
 * there, and allocates through it. While tracking, the hooked dlopen must
 * search this library's paths, as the real one does for its caller. */
#include <dlfcn.h>
#include <stddef.h>

static const char *last_error = "";

__attribute__((noinline)) void *dc_load_and_alloc(size_t size)
{
    void *h = dlopen("libdlopen_helper.so", RTLD_NOW);
    if (h == NULL) {
        const char *e = dlerror();
        last_error = e ? e : "dlopen failed";
        return NULL;
    }
    void *(*alloc)(size_t) = (void *(*)(size_t))dlsym(h, "dh_alloc");
    if (alloc == NULL)
        return NULL;
    void *p = alloc(size); /* DC_CALL */
    __asm__ volatile("" ::: "memory");
    return p;
}

const char *dc_error(void)
{
    return last_error;
}
