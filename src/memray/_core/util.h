/* util.h: the two small helpers every component needs: a 64-bit mixer for
 * hash tables and a doubling array grower. Header-only, no state. */
#ifndef MR_UTIL_H
#define MR_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* splitmix64 finalizer: keys are pointers, aligned addresses and small ids,
 * all poorly spread in their low bits. */
static inline uint64_t mr_hash64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Grows *arr (*cap elements of elem bytes) to hold at least need elements,
 * doubling. 0 or -ENOMEM (then *arr and *cap are unchanged). */
static inline int mr_grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *a = realloc(*arr, n * elem);
    if (a == NULL)
        return -ENOMEM;
    *arr = a;
    *cap = n;
    return 0;
}

#endif
