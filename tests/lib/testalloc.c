/* testalloc.c: a test-only library that allocates exact sizes through each
 * intercepted function, so tests can assert sizes, allocator types and the
 * Python line that called in. Built by tests/conftest.py. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

void *ta_malloc(size_t size)
{
    return malloc(size);
}
void *ta_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}
void *ta_realloc(void *p, size_t size)
{
    return realloc(p, size);
}
void ta_free(void *p)
{
    free(p);
}

void *ta_posix_memalign(size_t align, size_t size)
{
    void *p = NULL;
    return posix_memalign(&p, align, size) == 0 ? p : NULL;
}
void *ta_aligned_alloc(size_t align, size_t size)
{
    return aligned_alloc(align, size);
}
void *ta_memalign(size_t align, size_t size)
{
    return memalign(align, size);
}
void *ta_valloc(size_t size)
{
    return valloc(size);
}
void *ta_pvalloc(size_t size)
{
    return pvalloc(size);
}

void *ta_mmap(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
int ta_munmap(void *p, size_t size)
{
    return munmap(p, size);
}

/* A native thread that names itself through prctl, allocates size bytes and
 * frees free_size of them (0: leaks everything). */
struct job {
    size_t size;
    int leak;
    const char *name;
};

static void *thread_main(void *arg)
{
    struct job *j = arg;
    if (j->name)
        prctl(PR_SET_NAME, (unsigned long)j->name, 0, 0, 0);
    void *p = malloc(j->size);
    memset(p, 1, j->size);
    if (!j->leak)
        free(p);
    return NULL;
}

int ta_run_pthread(size_t size, int leak, const char *name)
{
    pthread_t th;
    struct job j = {size, leak, name};
    if (pthread_create(&th, NULL, thread_main, &j) != 0)
        return -1;
    return pthread_join(th, NULL);
}

int ta_set_thread_name(const char *name)
{
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

/* A native thread that calls back into Python (ctypes takes the GIL for it). */
static void *callback_main(void *arg)
{
    void (*cb)(void) = (void (*)(void))arg;
    cb();
    return NULL;
}

int ta_call_in_pthread(void (*cb)(void))
{
    pthread_t th;
    if (pthread_create(&th, NULL, callback_main, (void *)cb) != 0)
        return -1;
    return pthread_join(th, NULL);
}
