/* test_hashmap.c: the one hash table (hashmap.h) and the mixers (util.h):
 * random operations against a plain reference model with every lookup
 * checked, growth, deletion that keeps probe chains whole when keys collide
 * (also across the end of the slot array), the key kept beside mr_hm's
 * slots, and the bytes hash against a word-by-word reference. */
#define _GNU_SOURCE
#include <stdlib.h>

#include "ctest.h"
#include "hashmap.h"
#include "util.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    /* xorshift64*: the tests need repeatable, not good, randomness. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* ---- a table whose hash is chosen by the test -----------------------------
 * Keys are 64-bit; the hash is key >> 8, so the test decides homes (and
 * collisions) through the high bits and keeps keys distinct in the low ones. */

typedef struct test_slot {
    uint64_t key;
    uint64_t value;
    int used;
} test_slot_t;

static inline uint64_t test_key_hash(uint64_t key)
{
    return key >> 8;
}

static inline uint64_t test_slot_hash(const test_slot_t *s)
{
    return s->key >> 8;
}

static inline int test_slot_match(const test_slot_t *s, uint64_t key)
{
    return s->key == key;
}

static inline int test_slot_empty(const test_slot_t *s)
{
    return !s->used;
}

static inline void test_slot_clear(test_slot_t *s)
{
    s->used = 0;
}

MR_HASHMAP_DEFINE(testmap, test_slot_t, uint64_t, test_key_hash, test_slot_hash, test_slot_match,
                  test_slot_empty, test_slot_clear, 70)

/* The invariant deletion must keep: every slot from a key's home to the
 * key's slot is occupied (else a lookup would stop early). Returns the
 * number of occupied slots. */
static size_t check_chains(const testmap_t *t)
{
    size_t used = 0;
    for (size_t j = 0; t->slots != NULL && j <= t->mask; j++) {
        if (!t->slots[j].used)
            continue;
        used++;
        for (size_t i = (size_t)test_slot_hash(&t->slots[j]) & t->mask; i != j;
             i = (i + 1) & t->mask) {
            if (!t->slots[i].used) {
                fprintf(stderr, "hole at %zu before key %#" PRIx64 " at %zu\n", i, t->slots[j].key,
                        j);
                CHECK(0);
                return used;
            }
        }
    }
    return used;
}

static void put(testmap_t *t, uint64_t key, uint64_t value)
{
    int made;
    test_slot_t *s = testmap_put(t, key, &made);
    CHECK(s != NULL);
    if (s != NULL)
        *s = (test_slot_t){.key = key, .value = value, .used = 1};
}

static int del(testmap_t *t, uint64_t key)
{
    test_slot_t *s = testmap_find(t, key);
    if (s == NULL)
        return 0;
    testmap_remove(t, s);
    return 1;
}

/* Every key sharing one home, in a table of 16 slots: a single chain. Taking
 * out its head, its middle and its tail leaves the rest reachable. */
static void test_remove_from_one_chain(void)
{
    testmap_t t = {0};
    CHECK_EQ(testmap_reserve(&t, 10), 0);
    CHECK_EQ(t.mask, 15); /* 16 slots hold 11 at 70% */
    for (uint64_t i = 0; i < 10; i++)
        put(&t, 0x300 | i, 100 + i); /* hash 3: slots 3..12 */
    CHECK_EQ(t.count, 10);
    for (uint64_t i = 0; i < 10; i++)
        CHECK(&t.slots[3 + i] == testmap_find(&t, 0x300 | i));
    CHECK_EQ(del(&t, 0x300), 1); /* the head */
    CHECK_EQ(del(&t, 0x305), 1); /* the middle */
    CHECK_EQ(del(&t, 0x309), 1); /* the tail */
    CHECK_EQ(del(&t, 0x309), 0);
    CHECK_EQ(t.count, 7);
    CHECK_EQ(check_chains(&t), 7);
    /* Shifted back into one run from the home slot. */
    for (size_t j = 3; j < 10; j++)
        CHECK(t.slots[j].used);
    CHECK(!t.slots[10].used);
    static const uint64_t left[] = {1, 2, 3, 4, 6, 7, 8};
    for (size_t i = 0; i < 7; i++) {
        test_slot_t *s = testmap_find(&t, 0x300 | left[i]);
        CHECK(s != NULL);
        if (s != NULL)
            CHECK_EQ(s->value, 100 + left[i]);
    }
    CHECK(testmap_find(&t, 0x300) == NULL);
    CHECK(testmap_find(&t, 0x305) == NULL);
    testmap_destroy(&t);
    CHECK(t.slots == NULL && t.count == 0 && t.limit == 0);
}

/* Two interleaved chains, one wrapping past the last slot to the first: an
 * entry moves back only to a slot at or after its home. */
static void test_remove_across_wrap(void)
{
    testmap_t t = {0};
    CHECK_EQ(testmap_reserve(&t, 10), 0);
    put(&t, 0xe00, 1); /* home 14: slot 14 */
    put(&t, 0xf00, 2); /* home 15: slot 15 */
    put(&t, 0xe01, 3); /* home 14: wraps to slot 0 */
    put(&t, 0x000, 4); /* home 0: slot 1 */
    put(&t, 0xf01, 5); /* home 15: slot 2 */
    put(&t, 0x100, 6); /* home 1: slot 3 */
    CHECK(testmap_find(&t, 0xe01) == &t.slots[0]);
    CHECK(testmap_find(&t, 0x000) == &t.slots[1]);
    CHECK(testmap_find(&t, 0xf01) == &t.slots[2]);
    CHECK(testmap_find(&t, 0x100) == &t.slots[3]);
    CHECK_EQ(del(&t, 0xe00), 1);
    /* The hole at 14: 0xf00 stays at its home 15 (after the hole); 0xe01
     * moves from 0 into 14; then each later entry into the new hole: 0x000
     * into its home 0, 0xf01 into 1, 0x100 into 2 (its home is 1). Slot 3
     * is free again. */
    CHECK(testmap_find(&t, 0xe01) == &t.slots[14]);
    CHECK(testmap_find(&t, 0xf00) == &t.slots[15]);
    CHECK(testmap_find(&t, 0x000) == &t.slots[0]);
    CHECK(testmap_find(&t, 0xf01) == &t.slots[1]);
    CHECK(testmap_find(&t, 0x100) == &t.slots[2]);
    CHECK(!t.slots[3].used);
    CHECK_EQ(check_chains(&t), 5);
    /* The hole at 15: 0x000 stays at its home 0 (after the hole, across the
     * wrap); 0xf01 moves back across the wrap into 15; 0x100 into its home 1. */
    CHECK_EQ(del(&t, 0xf00), 1);
    CHECK(testmap_find(&t, 0xe01) == &t.slots[14]);
    CHECK(testmap_find(&t, 0xf01) == &t.slots[15]);
    CHECK(testmap_find(&t, 0x000) == &t.slots[0]);
    CHECK(testmap_find(&t, 0x100) == &t.slots[1]);
    CHECK(!t.slots[2].used);
    CHECK_EQ(check_chains(&t), 4);
    testmap_destroy(&t);
}

/* Growth: capacity doubles exactly when the load would pass 70%, keys keep
 * their values, and iteration sees each key once. */
static void test_growth(void)
{
    testmap_t t = {0};
    CHECK(testmap_find(&t, 5) == NULL);
    size_t last_cap = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        uint64_t key = mr_hash64(i) << 8 | (i & 0xff);
        put(&t, key, i);
        size_t cap = t.mask + 1;
        CHECK((cap & (cap - 1)) == 0);
        CHECK(t.count * 10 <= cap * 7);
        if (cap != last_cap) {
            /* Grown on this insert: the previous capacity was full. */
            CHECK(last_cap == 0 ? cap == MR_HASHMAP_MIN_CAP : cap == 2 * last_cap);
            CHECK(last_cap == 0 || i == mr_hashmap_limit(last_cap, 70));
            last_cap = cap;
        }
    }
    CHECK_EQ(t.count, 100000);
    CHECK_EQ(t.mask + 1, 262144); /* 131072 * 0.7 < 100000 */
    CHECK_EQ(t.limit, 183500);
    int all = 1;
    for (uint64_t i = 0; i < 100000; i++) {
        const test_slot_t *s = testmap_find(&t, mr_hash64(i) << 8 | (i & 0xff));
        all &= s != NULL && s->value == i;
    }
    CHECK(all);
    size_t pos = 0, seen = 0;
    uint64_t sum = 0;
    const test_slot_t *s;
    while ((s = testmap_next(&t, &pos)) != NULL) {
        seen++;
        sum += s->value;
    }
    CHECK_EQ(seen, 100000);
    CHECK_EQ(sum, 100000ull * 99999 / 2);
    /* Reserving for many at once grows once, to the first capacity that fits. */
    testmap_t u = {0};
    CHECK_EQ(testmap_reserve(&u, 1000), 0);
    CHECK_EQ(u.mask + 1, 2048);
    CHECK_EQ(testmap_reserve(&u, 1433), 0);
    CHECK_EQ(u.mask + 1, 2048);
    CHECK_EQ(testmap_reserve(&u, 1434), 0);
    CHECK_EQ(u.mask + 1, 4096);
    CHECK_EQ(testmap_reserve(&u, SIZE_MAX), -ENOMEM);
    CHECK_EQ(u.mask + 1, 4096);
    testmap_destroy(&u);
    testmap_destroy(&t);
}

/* 200,000 random puts, removes and lookups over keys crowded into few homes
 * (so chains are long and cross each other), against an array model; every
 * lookup is checked, and the chain invariant every 1000 operations. */
static void test_random_against_model(void)
{
    enum { KEYS = 3000, OPS = 200000 };
    static uint64_t keys[KEYS], model[KEYS];
    static int present[KEYS];
    for (size_t i = 0; i < KEYS; i++) {
        /* 1600 homes for 3000 keys, half of them at the top of the hash
         * range, so the busiest chains wrap past the last slot; the low byte
         * keeps keys apart. */
        for (;;) {
            uint64_t home = rnd() % 800;
            if (rnd() & 1)
                home = (UINT64_MAX >> 8) - home;
            keys[i] = home << 8 | (i & 0xff);
            size_t j = 0;
            while (j < i && keys[j] != keys[i])
                j++;
            if (j == i)
                break;
        }
    }
    testmap_t t = {0};
    size_t n = 0;
    int lookups_ok = 1;
    for (size_t op = 0; op < OPS; op++) {
        size_t k = rnd() % KEYS;
        switch (rnd() % 3) {
        case 0: {
            uint64_t v = rnd();
            int made;
            test_slot_t *s = testmap_put(&t, keys[k], &made);
            CHECK(s != NULL);
            CHECK_EQ(made, !present[k]);
            *s = (test_slot_t){.key = keys[k], .value = v, .used = 1};
            n += !present[k];
            present[k] = 1;
            model[k] = v;
            break;
        }
        case 1:
            CHECK_EQ(del(&t, keys[k]), present[k]);
            n -= present[k];
            present[k] = 0;
            break;
        default: {
            const test_slot_t *s = testmap_find(&t, keys[k]);
            lookups_ok &= present[k] ? s != NULL && s->value == model[k] : s == NULL;
            break;
        }
        }
        CHECK_EQ(t.count, n);
        if (op % 1000 == 999) {
            CHECK_EQ(check_chains(&t), n);
            for (size_t i = 0; i < KEYS; i++) {
                const test_slot_t *s = testmap_find(&t, keys[i]);
                lookups_ok &= present[i] ? s != NULL && s->value == model[i] : s == NULL;
            }
        }
    }
    CHECK(lookups_ok);
    testmap_destroy(&t);
}

/* ---- mr_hm_t ------------------------------------------------------------- */

/* The same against a model for the u64 map, over every kind of key: small,
 * pointer-like, random, 0 and MR_HM_EMPTY (kept beside the slots). */
static void test_hm_random_against_model(void)
{
    enum { KEYS = 4096, OPS = 200000 };
    static uint64_t keys[KEYS], model[KEYS];
    static int present[KEYS];
    for (size_t i = 0; i < KEYS; i++)
        keys[i] = i % 3 == 0 ? i : i % 3 == 1 ? 0x7f0000000000ull + 16 * i : rnd() | 1;
    keys[1] = MR_HM_EMPTY;
    keys[2] = MR_HM_EMPTY - 1;
    mr_hm_t m = {0};
    size_t n = 0;
    int lookups_ok = 1;
    for (size_t op = 0; op < OPS; op++) {
        size_t k = rnd() % KEYS;
        uint64_t v;
        switch (rnd() % 4) {
        case 0:
            v = rnd();
            CHECK_EQ(mr_hm_put(&m, keys[k], v), 0);
            n += !present[k];
            present[k] = 1;
            model[k] = v;
            break;
        case 1: {
            int created;
            uint64_t *p = mr_hm_slot(&m, keys[k], &created);
            CHECK(p != NULL);
            CHECK_EQ(created, !present[k]);
            lookups_ok &= present[k] ? *p == model[k] : *p == 0;
            *p += 7;
            model[k] = present[k] ? model[k] + 7 : 7;
            n += !present[k];
            present[k] = 1;
            break;
        }
        case 2:
            CHECK_EQ(mr_hm_del(&m, keys[k]), present[k]);
            n -= present[k];
            present[k] = 0;
            break;
        default:
            v = 0xdead;
            if (present[k])
                lookups_ok &= mr_hm_get(&m, keys[k], &v) == 1 && v == model[k];
            else
                lookups_ok &= mr_hm_get(&m, keys[k], &v) == 0 && v == 0xdead;
            break;
        }
        CHECK_EQ(mr_hm_count(&m), n);
    }
    CHECK(lookups_ok);
    /* Iteration: each present key once, with its value. */
    static int seen[KEYS];
    size_t pos = 0, count = 0;
    uint64_t key, value;
    int iter_ok = 1;
    while (mr_hm_next(&m, &pos, &key, &value)) {
        count++;
        size_t i = 0;
        while (i < KEYS && keys[i] != key)
            i++;
        iter_ok &= i < KEYS && present[i] && !seen[i] && model[i] == value;
        if (i < KEYS)
            seen[i] = 1;
    }
    CHECK(iter_ok);
    CHECK_EQ(count, n);
    CHECK(m.tab.count * 2 <= m.tab.mask + 1);
    mr_hm_destroy(&m);
    CHECK_EQ(mr_hm_count(&m), 0);
    CHECK_EQ(mr_hm_get(&m, MR_HM_EMPTY, &value), 0);
}

static void test_hm_reserved_key(void)
{
    mr_hm_t m = {0};
    uint64_t v = 1, key;
    size_t pos = 0;
    CHECK_EQ(mr_hm_get(&m, MR_HM_EMPTY, &v), 0);
    CHECK_EQ(mr_hm_next(&m, &pos, &key, &v), 0);
    CHECK_EQ(mr_hm_put(&m, MR_HM_EMPTY, 42), 0);
    CHECK(m.tab.slots == NULL); /* beside the table, not in it */
    CHECK_EQ(mr_hm_count(&m), 1);
    CHECK_EQ(mr_hm_get(&m, MR_HM_EMPTY, &v), 1);
    CHECK_EQ(v, 42);
    CHECK_EQ(mr_hm_put(&m, 5, 6), 0);
    pos = 0;
    int n = 0, saw_max = 0;
    while (mr_hm_next(&m, &pos, &key, &v)) {
        n++;
        if (key == MR_HM_EMPTY)
            saw_max += v == 42;
        else
            CHECK(key == 5 && v == 6);
    }
    CHECK_EQ(n, 2);
    CHECK_EQ(saw_max, 1);
    CHECK_EQ(mr_hm_del(&m, MR_HM_EMPTY), 1);
    CHECK_EQ(mr_hm_del(&m, MR_HM_EMPTY), 0);
    CHECK_EQ(mr_hm_count(&m), 1);
    int created;
    uint64_t *p = mr_hm_slot(&m, MR_HM_EMPTY, &created);
    CHECK(p != NULL && created == 1 && *p == 0);
    mr_hm_destroy(&m);
}

/* ---- mixers -------------------------------------------------------------- */

/* mr_hash_bytes written out byte by byte, as documented. */
static uint64_t ref_hash_bytes(const unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t h = seed;
    for (size_t at = 0; at < n; at += 8) {
        uint64_t w = 0;
        for (size_t i = 0; i < 8 && at + i < n; i++)
            w |= (uint64_t)p[at + i] << (8 * i);
        h = mr_hash64(h ^ w);
    }
    return mr_hash64(h ^ (uint64_t)n);
}

static void test_mixers(void)
{
    /* splitmix64's published first output for seed 0 is its finalizer of the
     * golden-ratio increment. */
    CHECK(mr_hash64(0x9E3779B97F4A7C15ull) == 0xE220A8397B1DCDAFull);
    CHECK(mr_hash64(0) == 0);
    /* Bytes: the reference for every length up to 80, any alignment, any seed. */
    unsigned char buf[96];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)rnd();
    int same = 1;
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n <= 80; n++)
            for (uint64_t seed = 0; seed < 3; seed++)
                same &= mr_hash_bytes(buf + off, n, seed * 0x1234567) ==
                        ref_hash_bytes(buf + off, n, seed * 0x1234567);
    CHECK(same);
    CHECK(mr_hash_bytes(NULL, 0, 0) == 0);
    CHECK(mr_hash_bytes("", 0, 7) == mr_hash64(7));
    CHECK(mr_hash_bytes("a", 1, 0) == mr_hash64(mr_hash64(0x61) ^ 1));
    CHECK(mr_hash_bytes("abcdefgh", 8, 0) == mr_hash64(mr_hash64(0x6867666564636261ull) ^ 8));
    /* The length counts: zero padding does not collide. */
    CHECK(mr_hash_bytes("ab", 2, 0) != mr_hash_bytes("ab\0", 3, 0));
    CHECK(mr_hash_bytes("/lib/a.so", 9, 0) != mr_hash_bytes("/lib/a.so", 9, 1));
    /* Every single-bit flip of a 40-byte string gives a hash of its own. */
    static uint64_t h[40 * 8 + 1];
    unsigned char s[40];
    memcpy(s, buf, sizeof s);
    h[0] = mr_hash_bytes(s, sizeof s, 0);
    for (size_t bit = 0; bit < 40 * 8; bit++) {
        s[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        h[bit + 1] = mr_hash_bytes(s, sizeof s, 0);
        s[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    int distinct = 1;
    for (size_t i = 0; i < 40 * 8 + 1; i++)
        for (size_t j = 0; j < i; j++)
            distinct &= h[i] != h[j];
    CHECK(distinct);
}

int main(void)
{
    RUN(test_remove_from_one_chain);
    RUN(test_remove_across_wrap);
    RUN(test_growth);
    RUN(test_random_against_model);
    RUN(test_hm_random_against_model);
    RUN(test_hm_reserved_key);
    RUN(test_mixers);
    DONE();
}
