/* hashmap.h: an open-addressing map from 64-bit keys to 64-bit values with
 * linear probing, for the interning tables of the tracker. Header-only so the
 * lookups inline into their callers. Memory from plain malloc (not
 * intercepted inside this extension). No deletion: tables only grow until
 * cleared. Key MR_HM_EMPTY is reserved. */
#ifndef MR_HASHMAP_H
#define MR_HASHMAP_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "util.h"

#define MR_HM_EMPTY UINT64_MAX

typedef struct mr_hm_slot {
    uint64_t key;
    uint64_t value;
} mr_hm_slot_t;

typedef struct mr_hm {
    mr_hm_slot_t *slots;
    size_t mask;  /* capacity - 1; capacity is a power of two */
    size_t count; /* keys stored */
} mr_hm_t;

static inline uint64_t mr_hm_hash(uint64_t x)
{
    return mr_hash64(x);
}

static inline int mr_hm_init(mr_hm_t *m, size_t capacity)
{
    size_t cap = 16;
    while (cap < capacity)
        cap <<= 1;
    m->slots = malloc(cap * sizeof *m->slots);
    if (m->slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        m->slots[i].key = MR_HM_EMPTY;
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

static inline void mr_hm_destroy(mr_hm_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

/* 1 and *value set when key is present, else 0. */
static inline int mr_hm_get(const mr_hm_t *m, uint64_t key, uint64_t *value)
{
    if (m->slots == NULL)
        return 0;
    for (size_t i = mr_hm_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key) {
            *value = m->slots[i].value;
            return 1;
        }
        if (m->slots[i].key == MR_HM_EMPTY)
            return 0;
    }
}

static inline void mr_hm_insert_unchecked(mr_hm_t *m, uint64_t key, uint64_t value)
{
    size_t i = mr_hm_hash(key) & m->mask;
    while (m->slots[i].key != MR_HM_EMPTY && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (m->slots[i].key == MR_HM_EMPTY)
        m->count++;
    m->slots[i].key = key;
    m->slots[i].value = value;
}

/* Inserts or replaces. 0 or -ENOMEM (the map is then unchanged). */
static inline int mr_hm_put(mr_hm_t *m, uint64_t key, uint64_t value)
{
    if (m->slots == NULL && mr_hm_init(m, 16) < 0)
        return -ENOMEM;
    if ((m->count + 1) * 2 > m->mask + 1) {
        mr_hm_t bigger;
        if (mr_hm_init(&bigger, (m->mask + 1) * 2) < 0)
            return -ENOMEM;
        for (size_t i = 0; i <= m->mask; i++)
            if (m->slots[i].key != MR_HM_EMPTY)
                mr_hm_insert_unchecked(&bigger, m->slots[i].key, m->slots[i].value);
        free(m->slots);
        *m = bigger;
    }
    mr_hm_insert_unchecked(m, key, value);
    return 0;
}

#endif
