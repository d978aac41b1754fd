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
} mr_agg_row_t;

typedef struct mr_agg mr_agg_t;

/* 0 or -ENOMEM. */
int mr_agg_new(mr_agg_t **out);
void mr_agg_destroy(mr_agg_t *agg);

/* Records an allocation of size bytes at addr. An address already alive is
 * first dropped (a lost free). 0 or -ENOMEM (the event is then not counted). */
int mr_agg_alloc(mr_agg_t *agg, const mr_loc_key_t *key, uint64_t addr, uint64_t size);

/* Records a deallocation at addr; unknown addresses are ignored. For munmap,
 * len is the unmapped length: a partial unmap from the start of a mapping
 * shrinks it, a full one removes it. For other frees len is 0. */
void mr_agg_free(mr_agg_t *agg, uint64_t addr, uint64_t len, int is_munmap);

uint64_t mr_agg_heap(const mr_agg_t *agg);              /* bytes alive now */
uint64_t mr_agg_peak(const mr_agg_t *agg);              /* highest heap seen */
uint64_t mr_agg_total_allocations(const mr_agg_t *agg); /* mr_agg_alloc calls */

/* Settles the per-location peak values and returns every location with
 * anything at the peak or at the end, in a malloc'd array the caller frees.
 * Tracking may go on after it. 0 or -ENOMEM. */
int mr_agg_rows(mr_agg_t *agg, mr_agg_row_t **rows, size_t *n);

#endif
