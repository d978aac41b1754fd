/* aggregate.h: folding allocation events into per-location totals: what was
 * alive at the heap high water mark and what was still alive at the end.
 * Shared by the reader (ALL_ALLOCATIONS captures) and the tracked process
 * (AGGREGATED_ALLOCATIONS), so both give the same answers. Plain C, no Python,
 * no locking: the caller serializes. Memory comes from plain malloc: inside
 * the tracked process this file's calls are not intercepted (only other
 * objects' GOT slots are patched) and the caller holds the reentrancy guard. */
#ifndef MR_AGGREGATE_H
#define MR_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

/* What groups allocations into one location. tid is 0 when threads are merged. */
typedef struct mr_loc_key {
    uint32_t tid;
    uint32_t allocator; /* enum mr_allocator of the allocating call */
    uint64_t stack;     /* python NODE id, 0 = no Python frames */
    uint64_t native;    /* NATIVE_NODE id, 0 = none */
} mr_loc_key_t;

typedef struct mr_agg_row {
    mr_loc_key_t key;
    uint64_t peak_n, peak_bytes; /* alive at the (first) heap high water mark */
    uint64_t leak_n, leak_bytes; /* alive at the end */
    uint64_t generation;         /* MAPPINGS generation of the latest allocation there */
} mr_agg_row_t;

typedef struct mr_agg mr_agg_t;

/* 0 or -ENOMEM. */
int mr_agg_new(mr_agg_t **out);
void mr_agg_destroy(mr_agg_t *agg);

/* Records an allocation of size bytes at addr. An address already alive is
 * first dropped (a lost free). 0 or -ENOMEM (the event is then not counted). */
int mr_agg_alloc(mr_agg_t *agg, const mr_loc_key_t *key, uint64_t addr, uint64_t size);

/* Records a deallocation at addr; unknown addresses are ignored. For munmap,
 * len is the unmapped length and the call works on [addr, addr + len): every
 * mapping (an allocation whose key->allocator is MR_MMAP) it overlaps loses
 * the bytes it covers; a cut out of the middle of one leaves two blocks. For
 * other frees len is 0. */
void mr_agg_free(mr_agg_t *agg, uint64_t addr, uint64_t len, int is_munmap);

/* A process of a merged capture ended: its blocks (addresses in [lo, hi))
 * leave the heap and are counted as leaked. 0 or -ENOMEM. The other
 * aggregators' _exit functions take them away as frees would. */
int mr_agg_exit(mr_agg_t *agg, uint64_t lo, uint64_t hi);

uint64_t mr_agg_heap(const mr_agg_t *agg);              /* bytes alive now */
uint64_t mr_agg_peak(const mr_agg_t *agg);              /* highest heap seen */
uint64_t mr_agg_total_allocations(const mr_agg_t *agg); /* mr_agg_alloc calls */

/* Settles the per-location peak values and returns every location with
 * anything at the peak or at the end, in a malloc'd array the caller frees.
 * Tracking may go on after it. 0 or -ENOMEM. */
int mr_agg_rows(mr_agg_t *agg, mr_agg_row_t **rows, size_t *n);

/* ---- Additions for the reader ------------------------------------------
 * Every aggregator below is fed the events of one capture in order and keys
 * locations like mr_agg (tid 0 when threads are merged). Rows come out
 * grouped by location, locations in the order they were first seen. Memory is
 * bounded by live allocations and distinct locations. */

/* mr_agg_alloc that also records the allocation's MAPPINGS generation. */
int mr_agg_alloc_gen(mr_agg_t *agg, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                     uint64_t generation);

/* Hints that addr is about to be allocated or freed: starts loading its
 * slot of the live table, so a caller decoding events ahead of feeding them
 * overlaps the cache misses of several events. No effect on results. */
void mr_agg_prefetch(const mr_agg_t *agg, uint64_t addr);

/* Folds rows that differ only in tid into one row with tid 0, in place,
 * keeping first-seen order. *n becomes the new count. 0 or -ENOMEM (rows are
 * then unchanged). */
int mr_agg_rows_merge_threads(mr_agg_row_t *rows, size_t *n);

/* A location and what was counted there. */
typedef struct mr_count_row {
    mr_loc_key_t key;
    uint64_t generation; /* of the latest allocation counted there */
    uint64_t n, bytes;
} mr_count_row_t;

/* Temporary allocations: an allocation freed by the thread that made it with
 * at most `threshold` other allocations by that thread in between. Each
 * thread keeps a ring of its last threshold + 1 allocations; a free by that
 * thread of an address in the ring (for munmap: of the whole mapping) counts
 * the allocation at its location. */
typedef struct mr_tmp mr_tmp_t;
int mr_tmp_new(mr_tmp_t **out, uint64_t threshold);
void mr_tmp_destroy(mr_tmp_t *t);
/* key->tid may be 0 (merged) while tid is the allocating thread. 0 or -ENOMEM. */
int mr_tmp_alloc(mr_tmp_t *t, uint32_t tid, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                 uint64_t generation);
/* 0 or -ENOMEM. */
int mr_tmp_free(mr_tmp_t *t, uint32_t tid, uint64_t addr, uint64_t len, int is_munmap);
/* Locations with at least one temporary allocation. 0 or -ENOMEM. */
int mr_tmp_rows(mr_tmp_t *t, mr_count_row_t **rows, size_t *n);

/* Snapshot intervals. The memory snapshots of a capture cut time into
 * intervals: interval k holds the events after snapshot k-1 and before
 * snapshot k (interval 0: before the first one). A row says that from
 * interval `allocated_before` on and up to (excluding) interval
 * `deallocated_before` (MR_NEVER: never freed), n allocations of `bytes`
 * bytes from that location were counted. */
#define MR_NEVER UINT64_MAX
typedef struct mr_interval_row {
    mr_loc_key_t key;
    uint64_t generation;
    uint64_t allocated_before, deallocated_before;
    uint64_t n, bytes;
} mr_interval_row_t;

/* Allocation lifetimes: every allocation grouped by location, by the interval
 * it was made in and the interval it was freed in. Allocations made and
 * freed within one interval are left out (no snapshot ever saw them). A
 * partial munmap counts its bytes with n = 0; the final one counts 1. */
typedef struct mr_life mr_life_t;
int mr_life_new(mr_life_t **out);
void mr_life_destroy(mr_life_t *l);
int mr_life_alloc(mr_life_t *l, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                  uint64_t generation);
int mr_life_free(mr_life_t *l, uint64_t addr, uint64_t len, int is_munmap);
int mr_life_exit(mr_life_t *l, uint64_t lo, uint64_t hi);
void mr_life_snapshot(mr_life_t *l);
void mr_life_prefetch(const mr_life_t *l, uint64_t addr);
/* Sorted by location, then allocated_before, then deallocated_before. */
int mr_life_rows(mr_life_t *l, mr_interval_row_t **rows, size_t *n);

/* Temporal high water mark: for each interval, what each location had alive
 * at the interval's heap peak (the first moment the heap was highest within
 * it; the interval's starting heap counts as a candidate). Rows are runs
 * [allocated_before, deallocated_before) of intervals over which a location's
 * (n, bytes) at the peak stayed the same and non-zero; the pseudo-interval
 * after the last one holds what was alive at the end, so a run still alive
 * at the end has deallocated_before MR_NEVER. */
typedef struct mr_thwm mr_thwm_t;
int mr_thwm_new(mr_thwm_t **out);
void mr_thwm_destroy(mr_thwm_t *t);
int mr_thwm_alloc(mr_thwm_t *t, const mr_loc_key_t *key, uint64_t addr, uint64_t size,
                  uint64_t generation);
int mr_thwm_free(mr_thwm_t *t, uint64_t addr, uint64_t len, int is_munmap);
int mr_thwm_exit(mr_thwm_t *t, uint64_t lo, uint64_t hi);
int mr_thwm_snapshot(mr_thwm_t *t);
void mr_thwm_prefetch(const mr_thwm_t *t, uint64_t addr);
/* rows as above, grouped by location, runs in order; hwm: the peak heap of
 * every interval (snapshots + 1 entries). Both malloc'd. 0 or -ENOMEM. */
int mr_thwm_rows(mr_thwm_t *t, mr_interval_row_t **rows, size_t *n, uint64_t **hwm, size_t *n_hwm);

/* The numbers behind `memray stats`. */
typedef struct mr_stats mr_stats_t;
typedef struct mr_stats_summary {
    uint64_t total_allocs;     /* allocation events */
    uint64_t total_bytes;      /* bytes they requested */
    uint64_t peak;             /* highest heap */
    uint64_t by_allocator[16]; /* allocation events per enum mr_allocator */
} mr_stats_summary_t;
typedef struct mr_size_count {
    uint64_t size, count;
} mr_size_count_t;
typedef struct mr_frame_total {
    uint64_t frame; /* innermost FRAME id of the allocating stack, 0 = none */
    uint64_t count, bytes;
} mr_frame_total_t;
int mr_stats_new(mr_stats_t **out);
void mr_stats_destroy(mr_stats_t *s);
/* frame: the innermost Python FRAME id. 0 or -ENOMEM. */
int mr_stats_alloc(mr_stats_t *s, unsigned allocator, uint64_t addr, uint64_t size, uint64_t frame);
void mr_stats_free(mr_stats_t *s, uint64_t addr, uint64_t len, int is_munmap);
int mr_stats_exit(mr_stats_t *s, uint64_t lo, uint64_t hi);
void mr_stats_prefetch(const mr_stats_t *s, uint64_t addr);
void mr_stats_summary(const mr_stats_t *s, mr_stats_summary_t *out);
uint64_t mr_stats_heap(const mr_stats_t *s); /* bytes alive now */
/* Allocation counts by exact requested size, ascending. 0 or -ENOMEM. */
int mr_stats_sizes(const mr_stats_t *s, mr_size_count_t **out, size_t *n);
/* Counts and bytes per innermost frame, in first-seen order. 0 or -ENOMEM. */
int mr_stats_frames(const mr_stats_t *s, mr_frame_total_t **out, size_t *n);
/* For captures with native stacks, besides mr_stats_alloc: one allocation of
 * size bytes counted at its (python stack, native stack) pair, whose innermost
 * hybrid frame a reader resolves once per pair. 0 or -ENOMEM. */
int mr_stats_loc(mr_stats_t *s, uint64_t stack, uint64_t native, uint64_t generation,
                 uint64_t size);
/* The pairs counted by mr_stats_loc (tid and allocator 0), first-seen order. */
int mr_stats_locs(const mr_stats_t *s, mr_count_row_t **rows, size_t *n);

#endif
