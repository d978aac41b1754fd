/* aggregate.c: folding allocation events into per-location answers: high
 * water mark and leaks (also used inside the tracked process), temporary
 * allocations, allocation lifetimes over snapshot intervals, the temporal
 * high water mark, and the totals behind `memray stats`. No I/O, no Python,
 * no locking; memory from plain malloc. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* tdestroy */
#endif
#include "aggregate.h"

#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "format.h"
#include "hashmap.h"
#include "util.h"

#define NONE32 UINT32_MAX

/* ---- location table ----------------------------------------------------
 * Dense array of per-location items (each starting with its mr_loc_key_t),
 * indexed through a hash table of item index + 1. Each slot keeps 32 bits of
 * its key's hash: a probe compares them before touching the item, and
 * growing never reads the items. */

typedef struct loc_slot {
    uint32_t item; /* item index + 1, 0 = empty */
    uint32_t hash; /* low bits of key_hash(item's key) */
} loc_slot_t;

struct loctab;

/* A key being looked up: what MATCH needs to reach the items. */
typedef struct loc_probe {
    const struct loctab *t;
    const mr_loc_key_t *key;
    uint32_t hash;
} loc_probe_t;

static inline uint64_t loc_probe_hash(const loc_probe_t *p)
{
    return p->hash;
}

static inline uint64_t loc_slot_hash(const loc_slot_t *s)
{
    return s->hash;
}

static inline int loc_slot_empty(const loc_slot_t *s)
{
    return s->item == 0;
}

static inline void loc_slot_clear(loc_slot_t *s)
{
    s->item = 0;
}

static inline int loc_slot_match(const loc_slot_t *s, const loc_probe_t *p);

MR_HASHMAP_DEFINE(locmap, loc_slot_t, const loc_probe_t *, loc_probe_hash, loc_slot_hash,
                  loc_slot_match, loc_slot_empty, loc_slot_clear, 50)

typedef struct loctab {
    char *items;
    size_t elem, n, cap;
    locmap_t map;
    uint32_t last; /* index found last: consecutive events often share a stack */
} loctab_t;

#define LOC(t, i, type) ((type *)((t)->items + (size_t)(i) * (t)->elem))

static inline int key_eq(const mr_loc_key_t *a, const mr_loc_key_t *b)
{
    return a->stack == b->stack && a->native == b->native && a->tid == b->tid &&
           a->allocator == b->allocator;
}

static inline int loc_slot_match(const loc_slot_t *s, const loc_probe_t *p)
{
    return s->hash == p->hash && key_eq(LOC(p->t, s->item - 1, mr_loc_key_t), p->key);
}

/* Every field through the one mixer: the often constant ones (native
 * stack, thread, allocator) first, then the python stack. */
static inline uint32_t key_hash(const mr_loc_key_t *k)
{
    uint64_t rest = mr_hash64(k->native ^ ((uint64_t)k->tid << 32 | k->allocator));
    return (uint32_t)mr_hash64(k->stack ^ rest);
}

static void loctab_init(loctab_t *t, size_t elem)
{
    memset(t, 0, sizeof *t);
    t->elem = elem;
    t->last = NONE32;
}

static void loctab_free(loctab_t *t)
{
    free(t->items);
    locmap_destroy(&t->map);
    memset(t, 0, sizeof *t);
}

/* The index of key's item, created zeroed (but for the key) when new.
 * 0 or -ENOMEM (nothing changed). */
static int loctab_get(loctab_t *t, const mr_loc_key_t *key, uint32_t *idx, int *created)
{
    *created = 0;
    if (t->last != NONE32 && key_eq(LOC(t, t->last, mr_loc_key_t), key)) {
        *idx = t->last;
        return 0;
    }
    loc_probe_t p = {.t = t, .key = key, .hash = key_hash(key)};
    const loc_slot_t *s = locmap_find(&t->map, &p);
    if (s != NULL) {
        *idx = t->last = s->item - 1;
        return 0;
    }
    if (t->n >= NONE32 - 1 || mr_grow_array((void **)&t->items, &t->cap, t->n + 1, t->elem) < 0 ||
        locmap_reserve(&t->map, 1) < 0)
        return -ENOMEM;
    *locmap_claim(&t->map, &p) = (loc_slot_t){.item = (uint32_t)t->n + 1, .hash = p.hash};
    memset(LOC(t, t->n, char), 0, t->elem);
    *LOC(t, t->n, mr_loc_key_t) = *key;
    *idx = t->last = (uint32_t)t->n++;
    *created = 1;
    return 0;
}

/* ---- live allocations --------------------------------------------------
 * address -> (location, size, tag) with linear probing and backward-shift
 * deletion (no tombstones, so probe chains never rot under churn).
 *
 * Blocks made by mmap are also kept by address range, in a search tree of
 * their [start, end), because a munmap works on a range: one call may span
 * several mappings, cut the head, the tail or the middle out of one (leaving
 * two), or cover gaps. Ranges in the tree never overlap (a new mapping
 * displaces what it covers, as the kernel does), so "overlaps" is a
 * consistent equality for tsearch's ordering, and tfind with the range of a
 * munmap finds one mapping it touches. */

/* Top bit of live_entry_t.size: the block is a mapping, in the range tree. */
#define LIVE_MAPPED (1ull << 63)
#define LIVE_SIZE(e) ((e)->size & ~LIVE_MAPPED)

typedef struct live_entry {
    uint64_t addr;
    uint64_t size; /* | LIVE_MAPPED */
    uint32_t loc;  /* NONE32 = empty slot */
    uint32_t tag;  /* aggregator-specific: the snapshot index for lifetimes */
} live_entry_t;

static inline uint64_t live_hash(const live_entry_t *e)
{
    return mr_hash64(e->addr);
}

static inline int live_match(const live_entry_t *e, uint64_t addr)
{
    return e->addr == addr;
}

static inline int live_empty(const live_entry_t *e)
{
    return e->loc == NONE32;
}

static inline void live_clear(live_entry_t *e)
{
    e->loc = NONE32;
}

/* Grown at 70% load, where linear probing with a good hash still averages
 * under two probes per hit; live allocations are the bulk of a reporter's
 * memory. */
MR_HASHMAP_DEFINE(livemap, live_entry_t, uint64_t, mr_hash64, live_hash, live_match, live_empty,
                  live_clear, 70)

/* The pieces a munmap of its middle made of one mapping: counted as one
 * allocation by lifetimes until the last piece goes. */
typedef struct map_group {
    uint32_t alive; /* pieces still mapped */
    uint32_t mark;  /* pass that counted the group last (see livetab_counts) */
} map_group_t;

typedef struct map_range {
    uint64_t start, end;
    map_group_t *group; /* NULL until the mapping is split */
} map_range_t;

typedef struct livetab {
    livemap_t map;
    void *ranges; /* tsearch root of map_range_t */
    uint32_t pass;
} livetab_t;

static int range_cmp(const void *pa, const void *pb)
{
    const map_range_t *a = pa, *b = pb;
    if (a->end <= b->start)
        return -1;
    return a->start >= b->end ? 1 : 0;
}

static void range_free(void *node)
{
    map_range_t *r = node;
    if (r->group != NULL && --r->group->alive == 0)
        free(r->group);
    free(r);
}

static void livetab_free(livetab_t *t)
{
    livemap_destroy(&t->map);
    if (t->ranges != NULL)
        tdestroy(t->ranges, range_free);
    memset(t, 0, sizeof *t);
}

/* Room for one more entry; may move every entry. */
static inline int livetab_reserve(livetab_t *t)
{
    return livemap_reserve(&t->map, 1);
}

static inline live_entry_t *livetab_find(const livetab_t *t, uint64_t addr)
{
    return livemap_find(&t->map, addr);
}

static inline void livetab_prefetch(const livetab_t *t, uint64_t addr)
{
    livemap_prefetch(&t->map, addr);
}

/* addr must be absent and room reserved. Sizes are kept below 2^63 (the top
 * bit is LIVE_MAPPED; a larger one is hostile input anyway). */
static inline void livetab_insert(livetab_t *t, uint64_t addr, uint64_t size, uint32_t loc,
                                  uint32_t tag)
{
    *livemap_claim(&t->map, addr) =
        (live_entry_t){.addr = addr, .size = size, .loc = loc, .tag = tag};
}

static inline void livetab_remove(livetab_t *t, live_entry_t *e)
{
    livemap_remove(&t->map, e);
}

/* What a deallocation took away from one live block. */
typedef struct released {
    uint32_t loc, tag;
    uint64_t bytes; /* bytes no longer alive */
    int whole;      /* the block is gone (else a munmap shrank it) */
    int last;       /* ... and it was the last piece of its mapping */
    int split;      /* a munmap of its middle left two blocks where there was one */
} released_t;

/* Called for each block a deallocation takes bytes from. */
typedef void (*release_fn)(void *ctx, const released_t *rel);

static map_range_t *range_find(const livetab_t *t, uint64_t start, uint64_t end)
{
    map_range_t key = {.start = start, .end = end};
    void *found = t->ranges != NULL ? tfind(&key, &t->ranges, range_cmp) : NULL;
    return found != NULL ? *(map_range_t **)found : NULL;
}

/* Takes [lo, hi) out of the mapping r, whose entry is e (hi > lo, both within
 * r). -ENOMEM when a split could not be recorded: the piece after hi is then
 * released too, so the answers stay consistent. */
static int mapping_cut(livetab_t *t, map_range_t *r, live_entry_t *e, uint64_t lo, uint64_t hi,
                       release_fn fn, void *ctx)
{
    released_t rel = {.loc = e->loc, .tag = e->tag, .bytes = hi - lo};
    int rc = 0;
    if (lo > r->start && hi < r->end) {
        /* The middle: the mapping keeps its head; its tail becomes a block of
         * its own, in the same group. */
        map_range_t *tail = malloc(sizeof *tail);
        map_group_t *g = r->group != NULL ? r->group : calloc(1, sizeof *g);
        uint32_t loc = e->loc, tag = e->tag;
        int room = tail != NULL && g != NULL && livetab_reserve(t) == 0;
        e = livetab_find(t, r->start); /* the reserve may have moved it */
        if (room && livetab_find(t, hi) == NULL) {
            *tail = (map_range_t){.start = hi, .end = r->end, .group = g};
            r->end = lo; /* first: the tree holds no overlapping ranges */
            if (tsearch(tail, &t->ranges, range_cmp) != NULL) {
                if (r->group == NULL) {
                    g->alive = 1;
                    r->group = g;
                }
                g->alive++;
                e->size = (lo - r->start) | LIVE_MAPPED;
                livetab_insert(t, hi, (tail->end - hi) | LIVE_MAPPED, loc, tag);
                rel.split = 1;
                fn(ctx, &rel);
                return 0;
            }
            r->end = tail->end;
            room = 0;
        }
        free(tail);
        if (r->group == NULL)
            free(g);
        /* No room, or another block already sits at hi (inconsistent
         * input): the tail goes as well. */
        rel.bytes = r->end - lo;
        hi = r->end;
        if (!room)
            rc = -ENOMEM;
    }
    if (lo == r->start && hi == r->end) {
        rel.whole = 1;
        rel.last = r->group == NULL || r->group->alive == 1;
        livetab_remove(t, e);
        tdelete(r, &t->ranges, range_cmp);
        range_free(r);
    } else if (lo == r->start) {
        /* The head: what is left starts at hi. */
        live_entry_t old = *e;
        livetab_remove(t, e);
        if (livetab_find(t, hi) != NULL) {
            /* Another block already sits at hi: inconsistent input; count
             * the whole mapping as gone. */
            rel.bytes = r->end - lo;
            rel.whole = 1;
            rel.last = r->group == NULL || r->group->alive == 1;
            tdelete(r, &t->ranges, range_cmp);
            range_free(r);
        } else {
            r->start = hi;
            livetab_insert(t, hi, (r->end - hi) | LIVE_MAPPED, old.loc, old.tag);
        }
    } else {
        /* The tail. */
        e->size = (lo - r->start) | LIVE_MAPPED;
        r->end = lo;
    }
    fn(ctx, &rel);
    return rc;
}

/* A munmap of [addr, addr + len): every mapping it touches loses the bytes
 * it covers. 0 or -ENOMEM (see mapping_cut). */
static int livetab_unmap(livetab_t *t, uint64_t addr, uint64_t len, release_fn fn, void *ctx)
{
    uint64_t end = addr + len < addr ? UINT64_MAX : addr + len;
    int rc = 0;
    map_range_t *r;
    while (addr < end && (r = range_find(t, addr, end)) != NULL) {
        live_entry_t *e = livetab_find(t, r->start);
        if (e == NULL) { /* cannot happen: every range has its entry */
            tdelete(r, &t->ranges, range_cmp);
            range_free(r);
            continue;
        }
        uint64_t lo = r->start > addr ? r->start : addr;
        uint64_t hi = r->end < end ? r->end : end;
        if (mapping_cut(t, r, e, lo, hi, fn, ctx) < 0)
            rc = -ENOMEM;
    }
    return rc;
}

/* A deallocation: a free of addr (len 0), or a munmap of [addr, addr + len).
 * Calls fn for each block it takes bytes from; addresses not alive are
 * ignored. 0 or -ENOMEM (a split that could not be recorded). */
static inline int livetab_release(livetab_t *t, uint64_t addr, uint64_t len, int is_munmap,
                                  release_fn fn, void *ctx)
{
    if (is_munmap)
        return livetab_unmap(t, addr, len, fn, ctx);
    live_entry_t *e = livetab_find(t, addr);
    if (e == NULL)
        return 0;
    if (e->size & LIVE_MAPPED) {
        map_range_t *r = range_find(t, addr, addr + 1);
        if (r != NULL && r->start == addr)
            return mapping_cut(t, r, e, r->start, r->end, fn, ctx);
    }
    released_t rel = {.loc = e->loc, .tag = e->tag, .bytes = LIVE_SIZE(e), .whole = 1, .last = 1};
    livetab_remove(t, e);
    fn(ctx, &rel);
    return 0;
}

/* A process of a merged capture ended: every block in [lo, hi) (its
 * addresses) goes, through fn. 0 or -ENOMEM. */
static int livetab_exit(livetab_t *t, uint64_t lo, uint64_t hi, release_fn fn, void *ctx)
{
    int rc = livetab_unmap(t, lo, hi - lo, fn, ctx); /* mappings, by range */
    uint64_t *addrs = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; t->map.slots != NULL && i <= t->map.mask; i++) {
        const live_entry_t *e = &t->map.slots[i];
        if (live_empty(e) || e->addr < lo || e->addr >= hi)
            continue;
        if (mr_grow_array((void **)&addrs, &cap, n + 1, sizeof *addrs) < 0) {
            rc = -ENOMEM;
            break;
        }
        addrs[n++] = e->addr;
    }
    /* Released after the walk: a removal moves entries within the table. */
    for (size_t i = 0; i < n; i++)
        livetab_release(t, addrs[i], 0, 0, fn, ctx);
    free(addrs);
    return rc;
}

/* Makes room for a new block at [addr, addr + size): whatever the table still
 * holds there was freed without our seeing it (a new mapping also displaces
 * the part of older ones it covers). Then inserts it; a mapping also goes in
 * the range tree. 0 or -ENOMEM, with nothing inserted. */
static int livetab_add(livetab_t *t, uint64_t addr, uint64_t size, int mapped, uint32_t loc,
                       uint32_t tag, release_fn fn, void *ctx)
{
    map_range_t *r = NULL;
    size &= ~LIVE_MAPPED;
    if (mapped && size > 0) {
        r = malloc(sizeof *r);
        if (r == NULL)
            return -ENOMEM;
        *r = (map_range_t){.start = addr, .end = addr + size < addr ? UINT64_MAX : addr + size};
        if (livetab_unmap(t, r->start, r->end - r->start, fn, ctx) < 0) {
            free(r);
            return -ENOMEM;
        }
    }
    livetab_release(t, addr, 0, 0, fn, ctx);
    if (livetab_reserve(t) < 0) {
        free(r);
        return -ENOMEM;
    }
    if (r != NULL) {
        if (tsearch(r, &t->ranges, range_cmp) == NULL) {
            free(r);
            return -ENOMEM;
        }
        size |= LIVE_MAPPED;
    }
    livetab_insert(t, addr, size, loc, tag);
    return 0;
}

/* Counts a live entry for lifetimes: a mapping split into pieces is one
 * allocation, counted at the first of its pieces this pass meets. Call
 * livetab_new_pass before each pass. */
static void livetab_new_pass(livetab_t *t)
{
    t->pass++;
}

static uint64_t livetab_count(const livetab_t *t, const live_entry_t *e)
{
    if (!(e->size & LIVE_MAPPED))
        return 1;
    map_range_t *r = range_find(t, e->addr, e->addr + 1);
    if (r == NULL || r->group == NULL)
        return 1;
    if (r->group->mark == t->pass)
        return 0;
    r->group->mark = t->pass;
    return 1;
}

/* ---- high water mark and leaks ----------------------------------------- */

/* Peak values are saved lazily. `epoch` counts heap peaks; a location's
 * pn/pbytes hold its value at the peak numbered `epoch` in its item. Before
 * a location changes during a later epoch, its current value (unchanged
 * since that later peak) is saved. At any time the value at the latest peak
 * is (item.epoch == epoch ? saved : current). */
typedef struct agg_loc {
    mr_loc_key_t key;
    uint64_t n, bytes;   /* alive now */
    uint64_t xn, xbytes; /* alive when their process ended (merged captures): leaked */
    uint64_t pn, pbytes; /* alive at peak `epoch` */
    uint64_t epoch;
    uint64_t generation;
} agg_loc_t;

struct mr_agg {
    loctab_t locs;
    livetab_t live;
    uint64_t heap, peak, epoch, total;
    mr_serial_t serial; /* the caller serializes (aggregate.h): checked */
};

int mr_agg_new(mr_agg_t **out)
{
    mr_agg_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    loctab_init(&a->locs, sizeof(agg_loc_t));
    *out = a;
    return 0;
}

void mr_agg_destroy(mr_agg_t *a)
{
    if (a == NULL)
        return;
    loctab_free(&a->locs);
    livetab_free(&a->live);
    free(a);
}

static inline void agg_touch(const mr_agg_t *a, agg_loc_t *l)
{
    if (l->epoch != a->epoch) {
        l->pn = l->n;
        l->pbytes = l->bytes;
        l->epoch = a->epoch;
    }
}

static void agg_release(void *ctx, const released_t *rel)
{
    mr_agg_t *a = ctx;
    agg_loc_t *l = LOC(&a->locs, rel->loc, agg_loc_t);
    agg_touch(a, l);
    l->n -= rel->whole;
    l->n += rel->split;
    l->bytes -= rel->bytes;
    a->heap -= rel->bytes;
}

/* A block of a process that ended: off the heap, kept as a leak. */
static void agg_exit_release(void *ctx, const released_t *rel)
{
    mr_agg_t *a = ctx;
    agg_release(ctx, rel);
    agg_loc_t *l = LOC(&a->locs, rel->loc, agg_loc_t);
    l->xn += rel->whole;
    l->xn -= rel->split;
    l->xbytes += rel->bytes;
}

int mr_agg_exit(mr_agg_t *a, uint64_t lo, uint64_t hi)
{
    MR_SERIAL_ENTER(&a->serial);
    int rc = livetab_exit(&a->live, lo, hi, agg_exit_release, a);
    MR_SERIAL_LEAVE(&a->serial);
    return rc;
}

int mr_agg_alloc_gen(mr_agg_t *a, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                     uint64_t generation)
{
    uint32_t idx;
    int created, rc = -ENOMEM;
    MR_SERIAL_ENTER(&a->serial);
    if (loctab_get(&a->locs, key, &idx, &created) < 0)
        goto out;
    agg_loc_t *l = LOC(&a->locs, idx, agg_loc_t);
    if (created)
        l->epoch = a->epoch; /* absent so far: 0 at the current peak */
    if (livetab_add(&a->live, addr, size, key->allocator == MR_MMAP, idx, 0, agg_release, a) < 0)
        goto out;
    agg_touch(a, l);
    l->n++;
    l->bytes += size;
    l->generation = generation;
    a->total++;
    a->heap += size;
    if (a->heap > a->peak) {
        a->peak = a->heap;
        a->epoch++;
    }
    rc = 0;
out:
    MR_SERIAL_LEAVE(&a->serial);
    return rc;
}

int mr_agg_alloc(mr_agg_t *a, const mr_loc_key_t *key, uint64_t addr, uint64_t size)
{
    return mr_agg_alloc_gen(a, key, addr, size, 0);
}

void mr_agg_free(mr_agg_t *a, uint64_t addr, uint64_t len, int is_munmap)
{
    MR_SERIAL_ENTER(&a->serial);
    livetab_release(&a->live, addr, len, is_munmap, agg_release, a);
    MR_SERIAL_LEAVE(&a->serial);
}

void mr_agg_prefetch(const mr_agg_t *a, uint64_t addr)
{
    livetab_prefetch(&a->live, addr);
}

uint64_t mr_agg_heap(const mr_agg_t *a)
{
    return a->heap;
}

uint64_t mr_agg_peak(const mr_agg_t *a)
{
    return a->peak;
}

uint64_t mr_agg_total_allocations(const mr_agg_t *a)
{
    return a->total;
}

int mr_agg_rows(mr_agg_t *a, mr_agg_row_t **rows, size_t *n)
{
    mr_agg_row_t *out = malloc((a->locs.n ? a->locs.n : 1) * sizeof *out);
    if (out == NULL)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < a->locs.n; i++) {
        const agg_loc_t *l = LOC(&a->locs, i, agg_loc_t);
        int saved = l->epoch == a->epoch;
        mr_agg_row_t row = {
            .key = l->key,
            .peak_n = saved ? l->pn : l->n,
            .peak_bytes = saved ? l->pbytes : l->bytes,
            .leak_n = l->n + l->xn,
            .leak_bytes = l->bytes + l->xbytes,
            .generation = l->generation,
        };
        if (row.peak_n || row.peak_bytes || row.leak_n || row.leak_bytes)
            out[k++] = row;
    }
    *rows = out;
    *n = k;
    return 0;
}

int mr_agg_rows_merge_threads(mr_agg_row_t *rows, size_t *n)
{
    loctab_t t;
    loctab_init(&t, sizeof(mr_loc_key_t));
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        mr_loc_key_t key = rows[i].key;
        key.tid = 0;
        uint32_t idx;
        int created;
        if (loctab_get(&t, &key, &idx, &created) < 0) {
            loctab_free(&t);
            return -ENOMEM;
        }
        /* Items are created in row order, so idx is also the output slot,
         * which never runs ahead of i. */
        if (created) {
            rows[k] = rows[i];
            rows[k].key.tid = 0;
            k++;
        } else {
            mr_agg_row_t *r = &rows[idx];
            r->peak_n += rows[i].peak_n;
            r->peak_bytes += rows[i].peak_bytes;
            r->leak_n += rows[i].leak_n;
            r->leak_bytes += rows[i].leak_bytes;
            r->generation = rows[i].generation;
        }
    }
    loctab_free(&t);
    *n = k;
    return 0;
}

/* ---- temporary allocations --------------------------------------------- */

typedef struct tmp_loc {
    mr_loc_key_t key;
    uint64_t generation;
    uint64_t n, bytes;
} tmp_loc_t;

typedef struct tmp_slot {
    uint64_t addr, size;
    uint32_t loc;
    uint32_t valid;
} tmp_slot_t;

/* A thread's last `depth` allocations: slot (pushed % depth) is next. The
 * array grows up to depth entries as the thread allocates, so a huge
 * threshold costs memory only for threads that allocate that much. */
typedef struct tmp_ring {
    tmp_slot_t *slots;
    size_t cap;
    uint64_t pushed;
} tmp_ring_t;

struct mr_tmp {
    loctab_t locs;
    uint64_t depth;
    mr_hm_t ring_of_tid; /* tid -> index in rings */
    tmp_ring_t *rings;
    size_t n_rings, cap_rings;
};

int mr_tmp_new(mr_tmp_t **out, uint64_t threshold)
{
    mr_tmp_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    loctab_init(&t->locs, sizeof(tmp_loc_t));
    /* Bounded so depth + 1 cannot wrap and slot indices fit size_t. */
    t->depth = (threshold > UINT32_MAX ? UINT32_MAX : threshold) + 1;
    *out = t;
    return 0;
}

void mr_tmp_destroy(mr_tmp_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_rings; i++)
        free(t->rings[i].slots);
    free(t->rings);
    mr_hm_destroy(&t->ring_of_tid);
    loctab_free(&t->locs);
    free(t);
}

static tmp_ring_t *tmp_ring(mr_tmp_t *t, uint32_t tid, int create)
{
    if (!create) {
        uint64_t v;
        return mr_hm_get(&t->ring_of_tid, tid, &v) ? &t->rings[v] : NULL;
    }
    if (mr_grow_array((void **)&t->rings, &t->cap_rings, t->n_rings + 1, sizeof *t->rings) < 0)
        return NULL;
    int created;
    uint64_t *v = mr_hm_slot(&t->ring_of_tid, tid, &created);
    if (v == NULL)
        return NULL;
    if (created) {
        *v = t->n_rings;
        t->rings[t->n_rings++] = (tmp_ring_t){0};
    }
    return &t->rings[*v];
}

int mr_tmp_alloc(mr_tmp_t *t, uint32_t tid, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                 uint64_t generation)
{
    uint32_t idx;
    int created;
    tmp_ring_t *ring = tmp_ring(t, tid, 1);
    if (ring == NULL)
        return -ENOMEM;
    if (ring->pushed < t->depth && ring->pushed >= ring->cap &&
        mr_grow_array((void **)&ring->slots, &ring->cap, (size_t)ring->pushed + 1,
                      sizeof *ring->slots) < 0)
        return -ENOMEM;
    if (loctab_get(&t->locs, key, &idx, &created) < 0)
        return -ENOMEM;
    LOC(&t->locs, idx, tmp_loc_t)->generation = generation;
    ring->slots[ring->pushed % t->depth] =
        (tmp_slot_t){.addr = addr, .size = size, .loc = idx, .valid = 1};
    ring->pushed++;
    return 0;
}

int mr_tmp_free(mr_tmp_t *t, uint32_t tid, uint64_t addr, uint64_t len, int is_munmap)
{
    tmp_ring_t *ring = tmp_ring(t, tid, 0);
    if (ring == NULL)
        return 0;
    uint64_t have = ring->pushed < t->depth ? ring->pushed : t->depth;
    for (uint64_t i = 0; i < have; i++) {
        tmp_slot_t *s = &ring->slots[(ring->pushed - 1 - i) % t->depth];
        if (!s->valid || s->addr != addr)
            continue;
        if (is_munmap && len < s->size)
            return 0; /* a partial munmap: the mapping lives on */
        tmp_loc_t *l = LOC(&t->locs, s->loc, tmp_loc_t);
        l->n++;
        l->bytes += s->size;
        s->valid = 0; /* the block is gone: a later free of addr is another one's */
        return 0;
    }
    return 0;
}

int mr_tmp_rows(mr_tmp_t *t, mr_count_row_t **rows, size_t *n)
{
    mr_count_row_t *out = malloc((t->locs.n ? t->locs.n : 1) * sizeof *out);
    if (out == NULL)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < t->locs.n; i++) {
        const tmp_loc_t *l = LOC(&t->locs, i, tmp_loc_t);
        if (l->n > 0)
            out[k++] = (mr_count_row_t){
                .key = l->key, .generation = l->generation, .n = l->n, .bytes = l->bytes};
    }
    *rows = out;
    *n = k;
    return 0;
}

/* ---- allocation lifetimes ----------------------------------------------- */

typedef struct life_loc {
    mr_loc_key_t key;
    uint64_t generation;
} life_loc_t;

/* (location, allocated_before, deallocated_before). Intervals are kept in 32
 * bits (a capture with more snapshots than that is strided by the caller long
 * before). */
typedef struct hist_key {
    uint32_t loc, a, d;
} hist_key_t;

typedef struct life_hist {
    uint32_t loc, a, d;
    uint64_t n, bytes;
} life_hist_t;

typedef struct hist_slot {
    hist_key_t key; /* key.loc NONE32 = empty */
    uint32_t index; /* in histtab_t.rows */
} hist_slot_t;

static inline uint64_t hist_key_hash(const hist_key_t *k)
{
    return mr_hash64(((uint64_t)k->loc << 32 | k->a) ^ mr_hash64(k->d));
}

static inline uint64_t hist_slot_hash(const hist_slot_t *s)
{
    return hist_key_hash(&s->key);
}

static inline int hist_slot_match(const hist_slot_t *s, const hist_key_t *k)
{
    return s->key.loc == k->loc && s->key.a == k->a && s->key.d == k->d;
}

static inline int hist_slot_empty(const hist_slot_t *s)
{
    return s->key.loc == NONE32;
}

static inline void hist_slot_clear(hist_slot_t *s)
{
    s->key.loc = NONE32;
}

MR_HASHMAP_DEFINE(histmap, hist_slot_t, const hist_key_t *, hist_key_hash, hist_slot_hash,
                  hist_slot_match, hist_slot_empty, hist_slot_clear, 50)

/* Rows of (n, bytes) per (location, interval made, interval freed), in the
 * order first seen. */
typedef struct histtab {
    histmap_t map;
    life_hist_t *rows;
    size_t n, cap;
} histtab_t;

static void histtab_free(histtab_t *h)
{
    histmap_destroy(&h->map);
    free(h->rows);
    memset(h, 0, sizeof *h);
}

struct mr_life {
    loctab_t locs;
    livetab_t live; /* tag: the interval the allocation was made in */
    uint32_t interval;
    histtab_t hist; /* allocations freed so far */
    int err;        /* -ENOMEM from a release callback */
};

int mr_life_new(mr_life_t **out)
{
    mr_life_t *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    loctab_init(&l->locs, sizeof(life_loc_t));
    *out = l;
    return 0;
}

void mr_life_destroy(mr_life_t *l)
{
    if (l == NULL)
        return;
    loctab_free(&l->locs);
    livetab_free(&l->live);
    histtab_free(&l->hist);
    free(l);
}

/* Adds (n, bytes) to the row of (loc, a, d). 0 or -ENOMEM. */
static int hist_add(histtab_t *h, uint32_t loc, uint32_t a, uint32_t d, uint64_t n, uint64_t bytes)
{
    hist_key_t key = {.loc = loc, .a = a, .d = d};
    hist_slot_t *s = histmap_find(&h->map, &key);
    if (s == NULL) {
        if (h->n >= NONE32 ||
            mr_grow_array((void **)&h->rows, &h->cap, h->n + 1, sizeof *h->rows) < 0 ||
            histmap_reserve(&h->map, 1) < 0)
            return -ENOMEM;
        s = histmap_claim(&h->map, &key);
        *s = (hist_slot_t){.key = key, .index = (uint32_t)h->n};
        h->rows[h->n++] = (life_hist_t){.loc = loc, .a = a, .d = d};
    }
    life_hist_t *row = &h->rows[s->index];
    row->n += n;
    row->bytes += bytes;
    return 0;
}

/* Bytes (and, with the last piece of a block, the allocation) that lived
 * from interval rel->tag to the current one. */
static void life_release(void *ctx, const released_t *rel)
{
    mr_life_t *l = ctx;
    if (rel->tag == l->interval)
        return; /* made and freed between two snapshots */
    if (hist_add(&l->hist, rel->loc, rel->tag, l->interval, (uint64_t)(rel->whole && rel->last),
                 rel->bytes) < 0)
        l->err = -ENOMEM;
}

int mr_life_alloc(mr_life_t *l, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                  uint64_t generation)
{
    uint32_t idx;
    int created;
    if (loctab_get(&l->locs, key, &idx, &created) < 0)
        return -ENOMEM;
    LOC(&l->locs, idx, life_loc_t)->generation = generation;
    if (livetab_add(&l->live, addr, size, key->allocator == MR_MMAP, idx, l->interval, life_release,
                    l) < 0)
        return -ENOMEM;
    return l->err;
}

int mr_life_free(mr_life_t *l, uint64_t addr, uint64_t len, int is_munmap)
{
    if (livetab_release(&l->live, addr, len, is_munmap, life_release, l) < 0)
        return -ENOMEM;
    return l->err;
}

int mr_life_exit(mr_life_t *l, uint64_t lo, uint64_t hi)
{
    if (livetab_exit(&l->live, lo, hi, life_release, l) < 0)
        return -ENOMEM;
    return l->err;
}

void mr_life_prefetch(const mr_life_t *l, uint64_t addr)
{
    livetab_prefetch(&l->live, addr);
}

void mr_life_snapshot(mr_life_t *l)
{
    if (l->interval < NONE32 - 1)
        l->interval++;
}

static int cmp_interval_rows(const void *pa, const void *pb)
{
    const life_hist_t *a = pa, *b = pb;
    if (a->loc != b->loc)
        return a->loc < b->loc ? -1 : 1;
    if (a->a != b->a)
        return a->a < b->a ? -1 : 1;
    if (a->d != b->d)
        return a->d < b->d ? -1 : 1;
    if (a->bytes != b->bytes)
        return a->bytes < b->bytes ? -1 : 1;
    return 0;
}

int mr_life_rows(mr_life_t *l, mr_interval_row_t **rows, size_t *n)
{
    /* Allocations still alive: grouped by (location, interval made) with
     * d = NONE32, which sorts after every real interval. */
    histtab_t alive = {0};
    int rc = 0;
    livetab_new_pass(&l->live);
    const live_entry_t *e;
    for (size_t pos = 0; rc == 0 && (e = livemap_next(&l->live.map, &pos)) != NULL;)
        rc = hist_add(&alive, e->loc, e->tag, NONE32, livetab_count(&l->live, e), LIVE_SIZE(e));
    /* The rows go on alone, with room for the freed ones after them. */
    life_hist_t *all = alive.rows;
    size_t n_all = alive.n, cap_all = alive.cap;
    histmap_destroy(&alive.map);
    if (rc == 0 && mr_grow_array((void **)&all, &cap_all, n_all + l->hist.n + 1, sizeof *all) < 0)
        rc = -ENOMEM;
    mr_interval_row_t *out = NULL;
    if (rc == 0) {
        if (l->hist.n > 0) /* memcpy from NULL is undefined even for 0 bytes */
            memcpy(all + n_all, l->hist.rows, l->hist.n * sizeof *all);
        n_all += l->hist.n;
        qsort(all, n_all, sizeof *all, cmp_interval_rows);
        out = malloc((n_all ? n_all : 1) * sizeof *out);
        if (out == NULL)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        for (size_t i = 0; i < n_all; i++) {
            const life_loc_t *loc = LOC(&l->locs, all[i].loc, life_loc_t);
            out[i] = (mr_interval_row_t){
                .key = loc->key,
                .generation = loc->generation,
                .allocated_before = all[i].a,
                .deallocated_before = all[i].d == NONE32 ? MR_NEVER : all[i].d,
                .n = all[i].n,
                .bytes = all[i].bytes,
            };
        }
        *rows = out;
        *n = n_all;
    }
    free(all);
    return rc;
}

/* ---- temporal high water mark ------------------------------------------ */

/* The lazy peak scheme of mr_agg, per interval. `epoch` is bumped at every
 * snapshot (the interval's starting heap is its first peak candidate) and
 * whenever the heap exceeds the current interval's peak; peak_epoch[k] is
 * the epoch of interval k's peak. A location's runs (change points of its
 * value at interval peaks) are settled for intervals before next_k; later
 * ones follow from (saved at `epoch`, current), as in mr_agg: the value at
 * any peak after the location's epoch is the current one. */
typedef struct thwm_loc {
    mr_loc_key_t key;
    uint64_t generation;
    uint64_t n, bytes;   /* alive now */
    uint64_t sn, sbytes; /* alive at peak `epoch` */
    uint64_t epoch;
    uint32_t next_k;     /* first interval whose value is not in the runs */
    uint32_t head, tail; /* runs, NONE32 = none */
} thwm_loc_t;

typedef struct thwm_run {
    uint64_t n, bytes;
    uint32_t k;    /* the value holds from interval k on */
    uint32_t next; /* next run of the location */
} thwm_run_t;

struct mr_thwm {
    loctab_t locs;
    livetab_t live;
    uint64_t heap, ipeak, epoch; /* ipeak: highest heap in the current interval */
    uint32_t k;                  /* the current interval */
    uint64_t *peak_epoch, *hwm;  /* per completed interval */
    size_t cap_k;
    thwm_run_t *runs;
    size_t n_runs, cap_runs;
    int err; /* -ENOMEM from a release callback */
};

int mr_thwm_new(mr_thwm_t **out)
{
    mr_thwm_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    loctab_init(&t->locs, sizeof(thwm_loc_t));
    *out = t;
    return 0;
}

void mr_thwm_destroy(mr_thwm_t *t)
{
    if (t == NULL)
        return;
    loctab_free(&t->locs);
    livetab_free(&t->live);
    free(t->peak_epoch);
    free(t->hwm);
    free(t->runs);
    free(t);
}

/* Room for the runs one event can add (two locations, two runs each). */
static int thwm_reserve_runs(mr_thwm_t *t)
{
    return mr_grow_array((void **)&t->runs, &t->cap_runs, t->n_runs + 4, sizeof *t->runs);
}

static void thwm_append(mr_thwm_t *t, thwm_loc_t *l, uint32_t k, uint64_t n, uint64_t bytes)
{
    if (l->tail != NONE32) {
        const thwm_run_t *last = &t->runs[l->tail];
        if (last->n == n && last->bytes == bytes)
            return;
    } else if (n == 0 && bytes == 0) {
        return; /* runs start from an implicit zero */
    }
    uint32_t i = (uint32_t)t->n_runs++;
    t->runs[i] = (thwm_run_t){.n = n, .bytes = bytes, .k = k, .next = NONE32};
    if (l->tail != NONE32)
        t->runs[l->tail].next = i;
    else
        l->head = i;
    l->tail = i;
}

/* Before l changes: settle its values at the peaks of completed intervals,
 * then save its value at the current peak. */
static void thwm_touch(mr_thwm_t *t, thwm_loc_t *l)
{
    if (l->epoch == t->epoch)
        return;
    if (l->next_k < t->k) {
        uint32_t k = l->next_k;
        if (t->peak_epoch[k] == l->epoch)
            thwm_append(t, l, k, l->sn, l->sbytes);
        else
            thwm_append(t, l, k, l->n, l->bytes);
        if (k + 1 < t->k)
            thwm_append(t, l, k + 1, l->n, l->bytes);
        l->next_k = t->k;
    }
    l->sn = l->n;
    l->sbytes = l->bytes;
    l->epoch = t->epoch;
}

/* A munmap may touch many locations: room for each one's runs is made as it
 * comes. */
static void thwm_release(void *ctx, const released_t *rel)
{
    mr_thwm_t *t = ctx;
    if (thwm_reserve_runs(t) < 0 || t->n_runs >= NONE32 - 4) {
        t->err = -ENOMEM;
        return;
    }
    thwm_loc_t *l = LOC(&t->locs, rel->loc, thwm_loc_t);
    thwm_touch(t, l);
    l->n -= rel->whole;
    l->n += rel->split;
    l->bytes -= rel->bytes;
    t->heap -= rel->bytes;
}

int mr_thwm_alloc(mr_thwm_t *t, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                  uint64_t generation)
{
    uint32_t idx;
    int created;
    if (thwm_reserve_runs(t) < 0 || t->n_runs >= NONE32 - 4 ||
        loctab_get(&t->locs, key, &idx, &created) < 0)
        return -ENOMEM;
    thwm_loc_t *l = LOC(&t->locs, idx, thwm_loc_t);
    if (created) {
        l->epoch = t->epoch;
        l->next_k = t->k;
        l->head = l->tail = NONE32;
    }
    /* Each release makes room for its own runs; two are left for l. */
    if (livetab_add(&t->live, addr, size, key->allocator == MR_MMAP, idx, 0, thwm_release, t) < 0 ||
        t->err < 0)
        return -ENOMEM;
    thwm_touch(t, l);
    l->n++;
    l->bytes += size;
    l->generation = generation;
    t->heap += size;
    if (t->heap > t->ipeak) {
        t->ipeak = t->heap;
        t->epoch++;
    }
    return 0;
}

int mr_thwm_free(mr_thwm_t *t, uint64_t addr, uint64_t len, int is_munmap)
{
    if (livetab_release(&t->live, addr, len, is_munmap, thwm_release, t) < 0)
        return -ENOMEM;
    return t->err;
}

int mr_thwm_exit(mr_thwm_t *t, uint64_t lo, uint64_t hi)
{
    if (livetab_exit(&t->live, lo, hi, thwm_release, t) < 0)
        return -ENOMEM;
    return t->err;
}

void mr_thwm_prefetch(const mr_thwm_t *t, uint64_t addr)
{
    livetab_prefetch(&t->live, addr);
}

int mr_thwm_snapshot(mr_thwm_t *t)
{
    if (t->k >= NONE32 - 2)
        return 0; /* intervals saturate; the caller strides long before */
    if (t->k >= t->cap_k) {
        size_t cap = t->cap_k;
        if (mr_grow_array((void **)&t->peak_epoch, &cap, (size_t)t->k + 1, sizeof *t->peak_epoch) <
            0)
            return -ENOMEM;
        cap = t->cap_k;
        if (mr_grow_array((void **)&t->hwm, &cap, (size_t)t->k + 1, sizeof *t->hwm) < 0)
            return -ENOMEM;
        t->cap_k = cap;
    }
    t->peak_epoch[t->k] = t->epoch;
    t->hwm[t->k] = t->ipeak;
    t->k++;
    t->epoch++;
    t->ipeak = t->heap;
    return 0;
}

int mr_thwm_rows(mr_thwm_t *t, mr_interval_row_t **rows, size_t *n, uint64_t **hwm, size_t *n_hwm)
{
    *hwm = malloc(((size_t)t->k + 1) * sizeof **hwm);
    if (*hwm == NULL)
        return -ENOMEM;
    if (t->k > 0)
        memcpy(*hwm, t->hwm, (size_t)t->k * sizeof **hwm);
    (*hwm)[t->k] = t->ipeak;
    *n_hwm = (size_t)t->k + 1;

    /* Each location contributes at most its stored runs plus four. */
    size_t cap = t->n_runs + 4 * t->locs.n + 1;
    mr_interval_row_t *out = malloc(cap * sizeof *out);
    if (out == NULL) {
        free(*hwm);
        *hwm = NULL;
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < t->locs.n; i++) {
        const thwm_loc_t *l = LOC(&t->locs, i, thwm_loc_t);
        /* The unsettled tail, computed without changing l, so tracking could
         * go on: completed intervals from next_k, the current interval, and
         * the pseudo-interval after it (alive at the end). */
        thwm_run_t extra[4];
        int n_extra = 0;
        if (l->epoch != t->epoch && l->next_k < t->k) {
            uint32_t kk = l->next_k;
            int saved = t->peak_epoch[kk] == l->epoch;
            extra[n_extra++] =
                (thwm_run_t){saved ? l->sn : l->n, saved ? l->sbytes : l->bytes, kk, NONE32};
            if (kk + 1 < t->k)
                extra[n_extra++] = (thwm_run_t){l->n, l->bytes, kk + 1, NONE32};
        }
        int saved = l->epoch == t->epoch;
        extra[n_extra++] =
            (thwm_run_t){saved ? l->sn : l->n, saved ? l->sbytes : l->bytes, t->k, NONE32};
        extra[n_extra++] = (thwm_run_t){l->n, l->bytes, t->k + 1, NONE32};

        /* Walk stored then extra change points, dropping repeats; each
         * non-zero value becomes a row ending where the next value starts. */
        uint64_t cur_n = 0, cur_b = 0;
        size_t open = SIZE_MAX; /* row index of the value in force, if non-zero */
        uint32_t r = l->head;
        for (int e = 0;;) {
            const thwm_run_t *run;
            if (r != NONE32) {
                run = &t->runs[r];
                r = run->next;
            } else if (e < n_extra) {
                run = &extra[e++];
            } else {
                break;
            }
            if (run->n == cur_n && run->bytes == cur_b)
                continue;
            if (open != SIZE_MAX)
                out[open].deallocated_before = run->k;
            open = SIZE_MAX;
            cur_n = run->n;
            cur_b = run->bytes;
            if (cur_n || cur_b) {
                open = k;
                out[k++] = (mr_interval_row_t){.key = l->key,
                                               .generation = l->generation,
                                               .allocated_before = run->k,
                                               .deallocated_before = MR_NEVER,
                                               .n = cur_n,
                                               .bytes = cur_b};
            }
        }
    }
    *rows = out;
    *n = k;
    return 0;
}

/* ---- statistics --------------------------------------------------------- */

struct mr_stats {
    livetab_t live;
    uint64_t heap, peak, total, total_bytes;
    uint64_t by_allocator[16];
    mr_hm_t by_size;     /* size -> count */
    mr_hm_t frame_index; /* frame -> index in frames */
    mr_frame_total_t *frames;
    size_t n_frames, cap_frames;
    loctab_t locs; /* (python stack, native stack) -> stats_loc_t, see mr_stats_loc */
};

typedef struct stats_loc {
    mr_loc_key_t key;
    uint64_t generation;
    uint64_t n, bytes;
} stats_loc_t;

int mr_stats_new(mr_stats_t **out)
{
    mr_stats_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    loctab_init(&s->locs, sizeof(stats_loc_t));
    *out = s;
    return 0;
}

void mr_stats_destroy(mr_stats_t *s)
{
    if (s == NULL)
        return;
    livetab_free(&s->live);
    mr_hm_destroy(&s->by_size);
    mr_hm_destroy(&s->frame_index);
    free(s->frames);
    loctab_free(&s->locs);
    free(s);
}

int mr_stats_loc(mr_stats_t *s, uint64_t stack, uint64_t native, uint64_t generation, uint64_t size)
{
    mr_loc_key_t key = {.stack = stack, .native = native};
    uint32_t idx;
    int created;
    if (loctab_get(&s->locs, &key, &idx, &created) < 0)
        return -ENOMEM;
    stats_loc_t *l = LOC(&s->locs, idx, stats_loc_t);
    l->generation = generation;
    l->n++;
    l->bytes += size;
    return 0;
}

int mr_stats_locs(const mr_stats_t *s, mr_count_row_t **rows, size_t *n)
{
    mr_count_row_t *out = malloc((s->locs.n ? s->locs.n : 1) * sizeof *out);
    if (out == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < s->locs.n; i++) {
        const stats_loc_t *l = LOC(&s->locs, i, stats_loc_t);
        out[i] = (mr_count_row_t){
            .key = l->key, .generation = l->generation, .n = l->n, .bytes = l->bytes};
    }
    *rows = out;
    *n = s->locs.n;
    return 0;
}

static void stats_release(void *ctx, const released_t *rel)
{
    ((mr_stats_t *)ctx)->heap -= rel->bytes;
}

int mr_stats_alloc(mr_stats_t *s, unsigned allocator, uint64_t addr, uint64_t size, uint64_t frame)
{
    int created;
    if (mr_grow_array((void **)&s->frames, &s->cap_frames, s->n_frames + 1, sizeof *s->frames) <
            0 ||
        livetab_add(&s->live, addr, size, allocator == MR_MMAP, 0, 0, stats_release, s) < 0)
        return -ENOMEM;
    s->heap += size;
    if (s->heap > s->peak)
        s->peak = s->heap;
    uint64_t *count = mr_hm_slot(&s->by_size, size, &created);
    uint64_t *fi = count ? mr_hm_slot(&s->frame_index, frame, &created) : NULL;
    if (fi == NULL)
        return -ENOMEM;
    if (created) {
        *fi = s->n_frames;
        s->frames[s->n_frames++] = (mr_frame_total_t){.frame = frame};
    }
    (*count)++;
    s->frames[*fi].count++;
    s->frames[*fi].bytes += size;
    s->by_allocator[allocator & 15]++;
    s->total++;
    s->total_bytes += size;
    return 0;
}

void mr_stats_free(mr_stats_t *s, uint64_t addr, uint64_t len, int is_munmap)
{
    livetab_release(&s->live, addr, len, is_munmap, stats_release, s);
}

int mr_stats_exit(mr_stats_t *s, uint64_t lo, uint64_t hi)
{
    return livetab_exit(&s->live, lo, hi, stats_release, s);
}

void mr_stats_prefetch(const mr_stats_t *s, uint64_t addr)
{
    livetab_prefetch(&s->live, addr);
}

uint64_t mr_stats_heap(const mr_stats_t *s)
{
    return s->heap;
}

void mr_stats_summary(const mr_stats_t *s, mr_stats_summary_t *out)
{
    out->total_allocs = s->total;
    out->total_bytes = s->total_bytes;
    out->peak = s->peak;
    memcpy(out->by_allocator, s->by_allocator, sizeof out->by_allocator);
}

static int cmp_size(const void *pa, const void *pb)
{
    const mr_size_count_t *a = pa, *b = pb;
    return a->size < b->size ? -1 : a->size > b->size;
}

int mr_stats_sizes(const mr_stats_t *s, mr_size_count_t **out, size_t *n)
{
    size_t count = mr_hm_count(&s->by_size);
    mr_size_count_t *v = malloc((count ? count : 1) * sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    size_t k = 0, pos = 0;
    while (k < count && mr_hm_next(&s->by_size, &pos, &v[k].size, &v[k].count))
        k++;
    qsort(v, k, sizeof *v, cmp_size);
    *out = v;
    *n = k;
    return 0;
}

int mr_stats_frames(const mr_stats_t *s, mr_frame_total_t **out, size_t *n)
{
    mr_frame_total_t *v = malloc((s->n_frames ? s->n_frames : 1) * sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    if (s->n_frames > 0)
        memcpy(v, s->frames, s->n_frames * sizeof *v);
    *out = v;
    *n = s->n_frames;
    return 0;
}
