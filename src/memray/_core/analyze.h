/* analyze.h: whole passes over a capture: the events a reader decodes, fed
 * in order to one aggregator (aggregate.h), with periodic progress calls so
 * a caller can report progress or abort. Each function consumes its reader
 * (one pass per reader); the reader's tables stay usable afterwards for
 * resolving the stack ids of the results. Plain C, 0 or -errno. */
#ifndef MR_ANALYZE_H
#define MR_ANALYZE_H

#include <stddef.h>
#include <stdint.h>

#include "aggregate.h"
#include "reader.h"

/* Called every MR_PROGRESS_EVERY allocation events and once at the end with
 * the number processed; a non-zero return (a negative errno, e.g. -EINTR)
 * stops the pass, which then returns it. */
typedef int (*mr_progress_fn)(void *ctx, uint64_t events);
typedef struct mr_progress {
    mr_progress_fn fn; /* may be NULL */
    void *ctx;
} mr_progress_t;
#define MR_PROGRESS_EVERY ((uint64_t)1 << 18)

typedef struct mr_snapshot {
    uint64_t ms;          /* unix time in ms */
    uint64_t rss;         /* bytes */
    uint64_t heap;        /* tracked bytes alive at that point of the stream */
    mr_mem_split_t split; /* bytes; zeros when the record has none */
    int has_split;        /* the MEMORY record carried MR_MEMORY_HAS_SPLIT */
} mr_snapshot_t;

/* Two samples worth showing beside the heap's peak: the one where the heap
 * was highest and the one where RSS was (the first of equals each). */
typedef struct mr_mem_peaks {
    mr_snapshot_t heap; /* the sample with the highest heap */
    mr_snapshot_t rss;  /* the sample with the highest rss */
    int any;            /* 0: no MEMORY record, the two are zeros */
} mr_mem_peaks_t;

/* What a first pass learns: the metadata, every memory snapshot, and the
 * per-location high water mark and leaks with threads kept apart. */
typedef struct mr_scan {
    uint64_t n_allocs; /* ALLOC records */
    uint64_t n_frees;  /* FREE records */
    uint64_t n_frames; /* FRAME records */
    uint64_t peak;     /* highest heap: computed, or from an aggregated capture */
    uint64_t end_ms;   /* unix ms: the trailer's, else the last snapshot's, else start */
    mr_end_t end;      /* how the data ended */
    int has_trailer;
    mr_trailer_t trailer;
    mr_snapshot_t *snapshots; /* every MEMORY record, in order */
    size_t n_snapshots;
    mr_mem_peaks_t mem_peaks; /* among snapshots */
    mr_agg_row_t *rows;       /* from the events, or the AGG records of an aggregated capture */
    size_t n_rows;
} mr_scan_t;

int mr_analyze_scan(mr_reader_t *r, mr_scan_t *out, const mr_progress_t *p);
void mr_scan_free(mr_scan_t *s);

/* Snapshot boundaries in the passes below: with stride > 1 only every
 * stride-th MEMORY record (the 1st, the stride+1-th, ...) starts an interval,
 * matching a snapshot list thinned the same way. */
int mr_analyze_temporary(mr_reader_t *r, int merge_threads, uint64_t threshold,
                         mr_count_row_t **rows, size_t *n, const mr_progress_t *p);
int mr_analyze_lifetimes(mr_reader_t *r, int merge_threads, uint64_t stride,
                         mr_interval_row_t **rows, size_t *n, const mr_progress_t *p);
int mr_analyze_temporal_hwm(mr_reader_t *r, int merge_threads, uint64_t stride,
                            mr_interval_row_t **rows, size_t *n, uint64_t **hwm, size_t *n_hwm,
                            const mr_progress_t *p);
/* *out: a mr_stats_t the caller destroys; *end_ms: as mr_scan_t.end_ms;
 * *peaks (unless NULL): as mr_scan_t.mem_peaks. */
int mr_analyze_stats(mr_reader_t *r, mr_stats_t **out, uint64_t *end_ms, mr_mem_peaks_t *peaks,
                     const mr_progress_t *p);

#endif
