/* util.h: the small helpers every component needs: the hash mixers of the
 * core (one for integers, one for bytes; every table hashes with these) and a
 * doubling array grower. Header-only, no state. */
#ifndef MR_UTIL_H
#define MR_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64 finalizer: keys are pointers, aligned addresses and small ids,
 * all poorly spread in their low bits. A bijection, so distinct keys never
 * share a hash; every output bit depends on every input bit. */
static inline uint64_t mr_hash64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Eight bytes from p as a little-endian number, so hashes of bytes are the
 * same on every machine. */
static inline uint64_t mr_load_le64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Hash of n bytes at p (object paths, build ids, strings of a capture),
 * seeded by seed (a second part of the key, or 0). Eight bytes at a time,
 * each word folded into the state through mr_hash64; the last word is
 * zero-padded and the length goes in last, so "ab" and "ab\0" differ. Not
 * collision-resistant against chosen input: tables confirm their keys.
 * p may be NULL when n is 0. */
static inline uint64_t mr_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed;
    size_t left = n;
    for (; left >= 8; left -= 8, s += 8)
        h = mr_hash64(h ^ mr_load_le64(s));
    if (left > 0) {
        unsigned char tail[8] = {0};
        memcpy(tail, s, left);
        h = mr_hash64(h ^ mr_load_le64(tail));
    }
    return mr_hash64(h ^ (uint64_t)n);
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
