/* pymalloc.c: the wrappers installed on the three allocator domains. ctx is
 * the wrapped allocator. The tracker's guard is raised around the wrapped call
 * so the malloc that pymalloc (or the raw domain) makes underneath is not
 * recorded a second time; a realloc is recorded as the free of the old block
 * before the call and the allocation of the new one after it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "check.h"
#include "format.h"
#include "pymalloc.h"
#include "tracker.h"

/* The allocators found at wrap time, indexed by PYMEM_DOMAIN_*. Written with
 * the GIL held while tracking starts or stops; read by the wrappers through
 * their ctx. */
static const PyMemAllocatorDomain domains[] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM,
                                               PYMEM_DOMAIN_OBJ};
#define N_DOMAINS (sizeof domains / sizeof domains[0])
static PyMemAllocatorEx orig[N_DOMAINS];
static int wrapped;

static void *pm_malloc(void *ctx, size_t n)
{
    PyMemAllocatorEx *a = ctx;
    mr_tracker_guard++;
    void *p = a->malloc(a->ctx, n);
    mr_tracker_guard--;
    if (p != NULL && mr_tracker_wants())
        mr_tracker_record_alloc(p, n, MR_PYMALLOC_MALLOC);
    return p;
}

static void *pm_calloc(void *ctx, size_t nelem, size_t elsize)
{
    PyMemAllocatorEx *a = ctx;
    mr_tracker_guard++;
    void *p = a->calloc(a->ctx, nelem, elsize);
    mr_tracker_guard--;
    if (p != NULL && mr_tracker_wants())
        mr_tracker_record_alloc(p, nelem * elsize, MR_PYMALLOC_CALLOC);
    return p;
}

static void *pm_realloc(void *ctx, void *ptr, size_t n)
{
    PyMemAllocatorEx *a = ctx;
    if (ptr != NULL && mr_tracker_wants())
        mr_tracker_record_free(ptr, MR_PYMALLOC_FREE, 0);
    mr_tracker_guard++;
    void *p = a->realloc(a->ctx, ptr, n);
    mr_tracker_guard--;
    if (p != NULL && mr_tracker_wants())
        mr_tracker_record_alloc(p, n, MR_PYMALLOC_REALLOC);
    return p;
}

static void pm_free(void *ctx, void *ptr)
{
    PyMemAllocatorEx *a = ctx;
    if (ptr != NULL && mr_tracker_wants())
        mr_tracker_record_free(ptr, MR_PYMALLOC_FREE, 0);
    mr_tracker_guard++;
    a->free(a->ctx, ptr);
    mr_tracker_guard--;
}

void mr_pymalloc_trace(int on)
{
    MR_ASSERT(PyGILState_Check());
    if (on == wrapped)
        return;
    for (size_t i = 0; i < N_DOMAINS; i++) {
        if (on) {
            PyMem_GetAllocator(domains[i], &orig[i]);
            PyMemAllocatorEx w = {&orig[i], pm_malloc, pm_calloc, pm_realloc, pm_free};
            PyMem_SetAllocator(domains[i], &w);
        } else {
            PyMem_SetAllocator(domains[i], &orig[i]);
        }
    }
    wrapped = on;
}
