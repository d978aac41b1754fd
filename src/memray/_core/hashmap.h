/* hashmap.h: the one hash table of the C core, and its u64 -> u64 instance
 * (mr_hm_t) for the interning tables. Open addressing with linear probing
 * over a power-of-two array of slots, grown past a load factor, and
 * backward-shift deletion (no tombstones, so probe chains never rot under
 * churn). Header-only and generated per slot type, so lookups inline into
 * their callers with the slot's own layout (no indirection on hot paths).
 * Memory from plain malloc (not intercepted inside this extension). No
 * locking: each table's owner says which lock guards it. */
#ifndef MR_HASHMAP_H
#define MR_HASHMAP_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Slots of a table when it first gets some. */
#define MR_HASHMAP_MIN_CAP 16

/* floor(cap * load_pct / 100) without overflow: the count beyond which a
 * table of cap slots grows. load_pct < 100 keeps at least one slot empty,
 * which ends every probe. */
static inline size_t mr_hashmap_limit(size_t cap, unsigned load_pct)
{
    return cap / 100 * load_pct + cap % 100 * load_pct / 100;
}

/* MR_HASHMAP_DEFINE(name, slot_t, key_t, KEY_HASH, SLOT_HASH, MATCH, IS_EMPTY,
 *                   SET_EMPTY, LOAD_PCT)
 * defines the table type name_t and its file-static functions name_*.
 * The caller's slot type holds the key (or enough of it: see MATCH) and the
 * value. Each of the following is a function or function-like macro:
 *   uint64_t KEY_HASH(key_t k)             hash of a key, well spread in its low bits
 *   uint64_t SLOT_HASH(const slot_t *s)    the same for the key an occupied slot holds
 *   int MATCH(const slot_t *s, key_t k)    s (occupied) holds k; key_t may be a pointer
 *                                          to a probe carrying context (for keys kept
 *                                          outside the slot)
 *   int IS_EMPTY(const slot_t *s), void SET_EMPTY(slot_t *s)
 * LOAD_PCT (10..90): the table doubles when more than that share of its slots
 * would be taken. A zero-initialized name_t is an empty table.
 *
 * Functions (t is a name_t *):
 *   name_find(t, k)        the slot holding k, or NULL
 *   name_reserve(t, n)     room for n more keys: 0 or -ENOMEM (unchanged). May move
 *                          every slot.
 *   name_claim(t, k)       for an absent k, with room reserved: the empty slot where k
 *                          goes, counted as taken. The caller fills it at once.
 *   name_put(t, k, &made)  find, else reserve and claim (*made = 1); NULL on -ENOMEM
 *   name_remove(t, s)      empties slot s and closes the gap in its probe chain. Slots
 *                          after s may move; pointers to them are stale.
 *   name_next(t, &pos)     iteration: the next occupied slot from *pos (start at 0),
 *                          or NULL; no insert or remove during it
 *   name_prefetch(t, k)    starts loading k's home slot
 *   name_destroy(t)        frees; t is empty again */
#define MR_HASHMAP_DEFINE(name, slot_t, key_t, KEY_HASH, SLOT_HASH, MATCH, IS_EMPTY, SET_EMPTY,    \
                          LOAD_PCT)                                                                \
    typedef struct name {                                                                          \
        slot_t *slots; /* mask + 1 of them; NULL until the first insert */                         \
        size_t mask;   /* capacity - 1; capacity is a power of two */                              \
        size_t count;  /* occupied slots */                                                        \
        size_t limit;  /* count beyond which the table grows; 0 while slots is NULL */             \
    } name##_t;                                                                                    \
                                                                                                   \
    static inline __attribute__((unused)) void name##_destroy(name##_t *t)                         \
    {                                                                                              \
        free(t->slots);                                                                            \
        memset(t, 0, sizeof *t);                                                                   \
    }                                                                                              \
                                                                                                   \
    /* Rehashes every key into cap slots (a power of two, with room for them). */                  \
    static __attribute__((noinline, unused)) int name##_resize(name##_t *t, size_t cap)            \
    {                                                                                              \
        if (cap > SIZE_MAX / sizeof(slot_t))                                                       \
            return -ENOMEM;                                                                        \
        slot_t *slots = malloc(cap * sizeof(slot_t));                                              \
        if (slots == NULL)                                                                         \
            return -ENOMEM;                                                                        \
        for (size_t i = 0; i < cap; i++)                                                           \
            SET_EMPTY(&slots[i]);                                                                  \
        for (size_t i = 0; t->slots != NULL && i <= t->mask; i++) {                                \
            if (IS_EMPTY(&t->slots[i]))                                                            \
                continue;                                                                          \
            size_t j = (size_t)SLOT_HASH(&t->slots[i]) & (cap - 1);                                \
            while (!IS_EMPTY(&slots[j]))                                                           \
                j = (j + 1) & (cap - 1);                                                           \
            slots[j] = t->slots[i];                                                                \
        }                                                                                          \
        free(t->slots);                                                                            \
        t->slots = slots;                                                                          \
        t->mask = cap - 1;                                                                         \
        t->limit = mr_hashmap_limit(cap, (LOAD_PCT));                                              \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* The slow path of reserve: doubles until count + n fit. */                                   \
    static __attribute__((noinline, unused)) int name##_grow(name##_t *t, size_t n)                \
    {                                                                                              \
        size_t cap = t->slots != NULL ? t->mask + 1 : MR_HASHMAP_MIN_CAP;                          \
        if (n > SIZE_MAX - t->count)                                                               \
            return -ENOMEM;                                                                        \
        while (mr_hashmap_limit(cap, (LOAD_PCT)) < t->count + n) {                                 \
            if (cap > SIZE_MAX / 2)                                                                \
                return -ENOMEM;                                                                    \
            cap *= 2;                                                                              \
        }                                                                                          \
        return name##_resize(t, cap);                                                              \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((unused)) int name##_reserve(name##_t *t, size_t n)                \
    {                                                                                              \
        if (__builtin_expect(n <= t->limit - t->count, 1))                                         \
            return 0;                                                                              \
        return name##_grow(t, n);                                                                  \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((unused)) slot_t *name##_find(const name##_t *t, key_t k)          \
    {                                                                                              \
        if (t->slots == NULL)                                                                      \
            return NULL;                                                                           \
        for (size_t i = (size_t)KEY_HASH(k) & t->mask;; i = (i + 1) & t->mask) {                   \
            slot_t *s = &t->slots[i];                                                              \
            if (IS_EMPTY(s))                                                                       \
                return NULL;                                                                       \
            if (MATCH(s, k))                                                                       \
                return s;                                                                          \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((unused)) slot_t *name##_claim(name##_t *t, key_t k)               \
    {                                                                                              \
        size_t i = (size_t)KEY_HASH(k) & t->mask;                                                  \
        while (!IS_EMPTY(&t->slots[i]))                                                            \
            i = (i + 1) & t->mask;                                                                 \
        t->count++;                                                                                \
        return &t->slots[i];                                                                       \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((unused)) slot_t *name##_put(name##_t *t, key_t k, int *made)      \
    {                                                                                              \
        *made = 0;                                                                                 \
        size_t i = 0;                                                                              \
        if (t->slots != NULL) {                                                                    \
            for (i = (size_t)KEY_HASH(k) & t->mask;; i = (i + 1) & t->mask) {                      \
                slot_t *s = &t->slots[i];                                                          \
                if (IS_EMPTY(s))                                                                   \
                    break;                                                                         \
                if (MATCH(s, k))                                                                   \
                    return s;                                                                      \
            }                                                                                      \
        }                                                                                          \
        *made = 1;                                                                                 \
        if (__builtin_expect(t->count >= t->limit, 0)) {                                           \
            if (name##_grow(t, 1) < 0) {                                                           \
                *made = 0;                                                                         \
                return NULL;                                                                       \
            }                                                                                      \
            return name##_claim(t, k);                                                             \
        }                                                                                          \
        t->count++;                                                                                \
        return &t->slots[i];                                                                       \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((unused)) void name##_remove(name##_t *t, slot_t *s)               \
    {                                                                                              \
        size_t i = (size_t)(s - t->slots);                                                         \
        /* Shift back every later entry of the probe chain whose home slot                         \
         * lies at or before the hole (cyclically), so lookups never stop                          \
         * early at it. */                                                                         \
        for (size_t j = (i + 1) & t->mask;; j = (j + 1) & t->mask) {                               \
            slot_t *n = &t->slots[j];                                                              \
            if (IS_EMPTY(n))                                                                       \
                break;                                                                             \
            size_t home = (size_t)SLOT_HASH(n) & t->mask;                                          \
            if (((j - home) & t->mask) >= ((j - i) & t->mask)) {                                   \
                t->slots[i] = *n;                                                                  \
                i = j;                                                                             \
            }                                                                                      \
        }                                                                                          \
        SET_EMPTY(&t->slots[i]);                                                                   \
        t->count--;                                                                                \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((unused)) slot_t *name##_next(const name##_t *t, size_t *pos)      \
    {                                                                                              \
        for (; t->slots != NULL && *pos <= t->mask; (*pos)++)                                      \
            if (!IS_EMPTY(&t->slots[*pos]))                                                        \
                return &t->slots[(*pos)++];                                                        \
        return NULL;                                                                               \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((unused)) void name##_prefetch(const name##_t *t, key_t k)         \
    {                                                                                              \
        if (t->slots != NULL)                                                                      \
            __builtin_prefetch(&t->slots[(size_t)KEY_HASH(k) & t->mask]);                          \
    }

/* ---- mr_hm_t: 64-bit keys to 64-bit values ------------------------------
 * Every key is allowed: MR_HM_EMPTY marks free slots, so that one key is
 * kept beside the table. */

#define MR_HM_EMPTY UINT64_MAX

typedef struct mr_hm_slot {
    uint64_t key; /* MR_HM_EMPTY = free */
    uint64_t value;
} mr_hm_slot_t;

static inline uint64_t mr_hm_slot_hash(const mr_hm_slot_t *s)
{
    return mr_hash64(s->key);
}

static inline int mr_hm_slot_match(const mr_hm_slot_t *s, uint64_t key)
{
    return s->key == key;
}

static inline int mr_hm_slot_empty(const mr_hm_slot_t *s)
{
    return s->key == MR_HM_EMPTY;
}

static inline void mr_hm_slot_clear(mr_hm_slot_t *s)
{
    s->key = MR_HM_EMPTY;
}

MR_HASHMAP_DEFINE(mr_hm_tab, mr_hm_slot_t, uint64_t, mr_hash64, mr_hm_slot_hash, mr_hm_slot_match,
                  mr_hm_slot_empty, mr_hm_slot_clear, 50)

/* Zero-initialized: an empty map. */
typedef struct mr_hm {
    mr_hm_tab_t tab;
    int has_max;        /* key MR_HM_EMPTY is present ... */
    uint64_t max_value; /* ... with this value */
} mr_hm_t;

static inline void mr_hm_destroy(mr_hm_t *m)
{
    mr_hm_tab_destroy(&m->tab);
    m->has_max = 0;
}

static inline size_t mr_hm_count(const mr_hm_t *m)
{
    return m->tab.count + (m->has_max != 0);
}

/* 1 and *value set when key is present, else 0. */
static inline int mr_hm_get(const mr_hm_t *m, uint64_t key, uint64_t *value)
{
    if (__builtin_expect(key == MR_HM_EMPTY, 0)) {
        if (m->has_max)
            *value = m->max_value;
        return m->has_max;
    }
    const mr_hm_slot_t *s = mr_hm_tab_find(&m->tab, key);
    if (s == NULL)
        return 0;
    *value = s->value;
    return 1;
}

/* The value of key, created as 0 (*created = 1) when absent. Valid until the
 * next insert or delete. NULL on -ENOMEM (the map is then unchanged). */
static inline uint64_t *mr_hm_slot(mr_hm_t *m, uint64_t key, int *created)
{
    if (__builtin_expect(key == MR_HM_EMPTY, 0)) {
        *created = !m->has_max;
        if (!m->has_max)
            m->max_value = 0;
        m->has_max = 1;
        return &m->max_value;
    }
    mr_hm_slot_t *s = mr_hm_tab_put(&m->tab, key, created);
    if (s == NULL)
        return NULL;
    if (*created)
        *s = (mr_hm_slot_t){.key = key, .value = 0};
    return &s->value;
}

/* Inserts or replaces. 0 or -ENOMEM (the map is then unchanged). */
static inline int mr_hm_put(mr_hm_t *m, uint64_t key, uint64_t value)
{
    int created;
    uint64_t *v = mr_hm_slot(m, key, &created);
    if (v == NULL)
        return -ENOMEM;
    *v = value;
    return 0;
}

/* 1 when key was present (and is now gone), else 0. */
static inline int mr_hm_del(mr_hm_t *m, uint64_t key)
{
    if (__builtin_expect(key == MR_HM_EMPTY, 0)) {
        int had = m->has_max;
        m->has_max = 0;
        return had;
    }
    mr_hm_slot_t *s = mr_hm_tab_find(&m->tab, key);
    if (s == NULL)
        return 0;
    mr_hm_tab_remove(&m->tab, s);
    return 1;
}

/* Iteration in no particular order: start with *pos = 0; 1 and the next
 * pair, or 0 at the end. No insert or delete during it. */
static inline int mr_hm_next(const mr_hm_t *m, size_t *pos, uint64_t *key, uint64_t *value)
{
    const mr_hm_slot_t *s = mr_hm_tab_next(&m->tab, pos);
    if (s != NULL) {
        *key = s->key;
        *value = s->value;
        return 1;
    }
    /* After the slots: the key kept beside them, once. */
    if (m->has_max && *pos != SIZE_MAX) {
        *pos = SIZE_MAX;
        *key = MR_HM_EMPTY;
        *value = m->max_value;
        return 1;
    }
    return 0;
}

#endif
