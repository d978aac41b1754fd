/* analyze.c: the passes over a capture: decode with reader.c, fold with
 * aggregate.c. Owns only the loop, the snapshot stride and the progress
 * calls; all counting lives in the aggregators. */
#include "analyze.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "util.h"

/* One pass: every ALLOC/FREE/MEMORY/AGG/TRAILER event goes to fn (which
 * returns 0 or -errno), with progress calls in between. Events are decoded
 * a batch ahead and their addresses handed to prefetch first: with millions
 * of live blocks the live table misses the cache on nearly every event, and
 * a batch lets those misses overlap instead of queueing. */
typedef int (*event_fn)(void *ctx, const mr_event_t *ev);
typedef void (*prefetch_fn)(void *ctx, uint64_t addr);
#define BATCH 16

static int run_pass(mr_reader_t *r, const mr_progress_t *p, event_fn fn, prefetch_fn prefetch,
                    void *ctx)
{
    mr_event_t batch[BATCH];
    uint64_t events = 0, next_report = MR_PROGRESS_EVERY;
    const mr_header_t *h = mr_reader_header(r);
    /* A sampled capture: every pass sums estimates (format.h). */
    uint64_t every = (h->flags & MR_FLAG_SAMPLED) ? h->sample_every : 0;
    int rc = 1;
    while (rc > 0) {
        int n = 0;
        while (n < BATCH && (rc = mr_reader_next(r, &batch[n])) > 0) {
            mr_event_t *ev = &batch[n];
            if (ev->type == MR_REC_ALLOC || ev->type == MR_REC_FREE)
                prefetch(ctx, ev->addr);
            if (every != 0 && ev->type == MR_REC_ALLOC && ev->allocator != MR_MMAP)
                ev->size = mr_sample_weight(ev->size, every);
            n++;
        }
        for (int i = 0; i < n; i++) {
            const mr_event_t *ev = &batch[i];
            if ((ev->type == MR_REC_ALLOC || ev->type == MR_REC_FREE) && ++events == next_report) {
                next_report += MR_PROGRESS_EVERY;
                int prc;
                if (p != NULL && p->fn != NULL && (prc = p->fn(p->ctx, events)) != 0)
                    return prc < 0 ? prc : -EINTR;
            }
            int frc = fn(ctx, ev);
            if (frc < 0)
                return frc;
        }
    }
    if (rc == 0 && p != NULL && p->fn != NULL && (rc = p->fn(p->ctx, events)) > 0)
        rc = -EINTR;
    return rc;
}

/* A process of a merged capture ended (a PROCESS exit record): the range of
 * its addresses. */
static int process_exit(const mr_event_t *ev, uint64_t *lo, uint64_t *hi)
{
    if (ev->type != MR_REC_PROCESS || !(ev->arg & MR_PROCESS_EXIT))
        return 0;
    *lo = ev->id << MR_PROCESS_ADDR_SHIFT;
    *hi = (ev->id + 1) << MR_PROCESS_ADDR_SHIFT;
    if (*hi == 0)
        *hi = UINT64_MAX;
    return 1;
}

static inline mr_loc_key_t key_of(const mr_event_t *ev, int merge)
{
    return (mr_loc_key_t){.tid = merge ? 0 : ev->tid,
                          .allocator = ev->allocator,
                          .stack = ev->stack,
                          .native = ev->native};
}

/* Counts MEMORY records and says which start a new interval. */
typedef struct stride {
    uint64_t every, seen;
} stride_t;

static int stride_hit(stride_t *s)
{
    uint64_t i = s->seen++;
    return s->every <= 1 || i % s->every == 0;
}

/* The snapshot of a MEMORY record, with the heap the pass computed (unless
 * the record carries one), kept in *peaks when it tops them. */
static mr_snapshot_t snapshot_of(const mr_event_t *ev, const mr_header_t *hdr, uint64_t heap,
                                 mr_mem_peaks_t *peaks)
{
    mr_snapshot_t snap = {
        .ms = hdr->start_ms + ev->ms,
        .rss = ev->rss,
        .heap = ev->has_heap ? ev->heap : heap,
        .split = ev->split,
        .has_split = ev->has_split,
    };
    if (!peaks->any || snap.heap > peaks->heap.heap)
        peaks->heap = snap;
    if (!peaks->any || snap.rss > peaks->rss.rss)
        peaks->rss = snap;
    peaks->any = 1;
    return snap;
}

/* ---- scan ---------------------------------------------------------------- */

typedef struct scan_ctx {
    mr_scan_t *out;
    mr_agg_t *agg;
    const mr_header_t *hdr;
    size_t cap_snapshots, cap_agg_rows;
    mr_agg_row_t *agg_rows; /* AGG records */
    size_t n_agg_rows;
    uint64_t max_heap_seen; /* of MEMORY records carrying one */
} scan_ctx_t;

static int scan_event(void *vctx, const mr_event_t *ev)
{
    scan_ctx_t *c = vctx;
    mr_scan_t *s = c->out;
    uint64_t lo, hi;
    if (process_exit(ev, &lo, &hi))
        return mr_agg_exit(c->agg, lo, hi);
    switch (ev->type) {
    case MR_REC_ALLOC: {
        mr_loc_key_t key = key_of(ev, 0);
        return mr_agg_alloc_gen(c->agg, &key, ev->addr, ev->size, ev->generation);
    }
    case MR_REC_FREE:
        mr_agg_free(c->agg, ev->addr, ev->size, ev->allocator == MR_MUNMAP);
        return 0;
    case MR_REC_MEMORY:
        if (mr_grow_array((void **)&s->snapshots, &c->cap_snapshots, s->n_snapshots + 1,
                          sizeof *s->snapshots) < 0)
            return -ENOMEM;
        s->snapshots[s->n_snapshots++] =
            snapshot_of(ev, c->hdr, mr_agg_heap(c->agg), &s->mem_peaks);
        if (ev->has_heap && ev->heap > c->max_heap_seen)
            c->max_heap_seen = ev->heap;
        return 0;
    case MR_REC_AGG:
        if (mr_grow_array((void **)&c->agg_rows, &c->cap_agg_rows, c->n_agg_rows + 1,
                          sizeof *c->agg_rows) < 0)
            return -ENOMEM;
        c->agg_rows[c->n_agg_rows++] = (mr_agg_row_t){
            .key = {.tid = ev->tid,
                    .allocator = ev->allocator,
                    .stack = ev->stack,
                    .native = ev->native},
            .peak_n = ev->peak_n,
            .peak_bytes = ev->peak_bytes,
            .leak_n = ev->leak_n,
            .leak_bytes = ev->leak_bytes,
            .generation = ev->generation,
        };
        return 0;
    default:
        return 0;
    }
}

static void scan_prefetch(void *vctx, uint64_t addr)
{
    mr_agg_prefetch(((scan_ctx_t *)vctx)->agg, addr);
}

int mr_analyze_scan(mr_reader_t *r, mr_scan_t *out, const mr_progress_t *p)
{
    memset(out, 0, sizeof *out);
    scan_ctx_t c = {.out = out, .hdr = mr_reader_header(r)};
    int rc = mr_agg_new(&c.agg);
    if (rc < 0)
        return rc;
    rc = run_pass(r, p, scan_event, scan_prefetch, &c);
    mr_agg_row_t *rows = NULL;
    size_t n_rows = 0;
    if (rc == 0)
        rc = mr_agg_rows(c.agg, &rows, &n_rows);
    if (rc == 0 && c.n_agg_rows > 0) {
        /* Rows of an aggregated capture, after any from loose events. */
        mr_agg_row_t *all = realloc(rows, (n_rows + c.n_agg_rows) * sizeof *all);
        if (all == NULL) {
            rc = -ENOMEM;
        } else {
            memcpy(all + n_rows, c.agg_rows, c.n_agg_rows * sizeof *all);
            rows = all;
            n_rows += c.n_agg_rows;
        }
    }
    if (rc < 0) {
        free(rows);
        free(c.agg_rows);
        mr_agg_destroy(c.agg);
        mr_scan_free(out);
        return rc;
    }
    out->rows = rows;
    out->n_rows = n_rows;
    out->n_allocs = mr_reader_count(r, MR_REC_ALLOC);
    out->n_frees = mr_reader_count(r, MR_REC_FREE);
    out->n_frames = mr_reader_count(r, MR_REC_FRAME);
    out->end = mr_reader_end(r);
    const mr_trailer_t *t = mr_reader_trailer(r);
    if (t != NULL) {
        out->has_trailer = 1;
        out->trailer = *t;
    }
    if (mr_reader_header(r)->flags & MR_FLAG_AGGREGATED)
        out->peak = t != NULL ? t->peak : c.max_heap_seen;
    else
        out->peak = mr_agg_peak(c.agg);
    if (t != NULL)
        out->end_ms = c.hdr->start_ms + t->ms;
    else if (out->n_snapshots > 0)
        out->end_ms = out->snapshots[out->n_snapshots - 1].ms;
    else
        out->end_ms = c.hdr->start_ms;
    free(c.agg_rows);
    mr_agg_destroy(c.agg);
    return 0;
}

void mr_scan_free(mr_scan_t *s)
{
    free(s->snapshots);
    free(s->rows);
    s->snapshots = NULL;
    s->rows = NULL;
    s->n_snapshots = s->n_rows = 0;
}

/* ---- temporary allocations ---------------------------------------------- */

typedef struct tmp_ctx {
    mr_tmp_t *tmp;
    int merge;
} tmp_ctx_t;

static int tmp_event(void *vctx, const mr_event_t *ev)
{
    tmp_ctx_t *c = vctx;
    if (ev->type == MR_REC_ALLOC) {
        mr_loc_key_t key = key_of(ev, c->merge);
        return mr_tmp_alloc(c->tmp, ev->tid, &key, ev->addr, ev->size, ev->generation);
    }
    if (ev->type == MR_REC_FREE)
        return mr_tmp_free(c->tmp, ev->tid, ev->addr, ev->size, ev->allocator == MR_MUNMAP);
    return 0;
}

static void no_prefetch(void *vctx, uint64_t addr)
{
    /* The rings are small and hot. */
    (void)vctx;
    (void)addr;
}

int mr_analyze_temporary(mr_reader_t *r, int merge_threads, uint64_t threshold,
                         mr_count_row_t **rows, size_t *n, const mr_progress_t *p)
{
    tmp_ctx_t c = {.merge = merge_threads};
    int rc = mr_tmp_new(&c.tmp, threshold);
    if (rc < 0)
        return rc;
    rc = run_pass(r, p, tmp_event, no_prefetch, &c);
    if (rc == 0)
        rc = mr_tmp_rows(c.tmp, rows, n);
    mr_tmp_destroy(c.tmp);
    return rc;
}

/* ---- lifetimes ------------------------------------------------------------ */

typedef struct life_ctx {
    mr_life_t *life;
    int merge;
    stride_t stride;
} life_ctx_t;

static int life_event(void *vctx, const mr_event_t *ev)
{
    life_ctx_t *c = vctx;
    uint64_t lo, hi;
    if (process_exit(ev, &lo, &hi))
        return mr_life_exit(c->life, lo, hi);
    switch (ev->type) {
    case MR_REC_ALLOC: {
        mr_loc_key_t key = key_of(ev, c->merge);
        return mr_life_alloc(c->life, &key, ev->addr, ev->size, ev->generation);
    }
    case MR_REC_FREE:
        return mr_life_free(c->life, ev->addr, ev->size, ev->allocator == MR_MUNMAP);
    case MR_REC_MEMORY:
        if (stride_hit(&c->stride))
            mr_life_snapshot(c->life);
        return 0;
    default:
        return 0;
    }
}

static void life_prefetch(void *vctx, uint64_t addr)
{
    mr_life_prefetch(((life_ctx_t *)vctx)->life, addr);
}

int mr_analyze_lifetimes(mr_reader_t *r, int merge_threads, uint64_t stride,
                         mr_interval_row_t **rows, size_t *n, const mr_progress_t *p)
{
    life_ctx_t c = {.merge = merge_threads, .stride = {.every = stride}};
    int rc = mr_life_new(&c.life);
    if (rc < 0)
        return rc;
    rc = run_pass(r, p, life_event, life_prefetch, &c);
    if (rc == 0)
        rc = mr_life_rows(c.life, rows, n);
    mr_life_destroy(c.life);
    return rc;
}

/* ---- temporal high water mark --------------------------------------------- */

typedef struct thwm_ctx {
    mr_thwm_t *thwm;
    int merge;
    stride_t stride;
} thwm_ctx_t;

static int thwm_event(void *vctx, const mr_event_t *ev)
{
    thwm_ctx_t *c = vctx;
    uint64_t lo, hi;
    if (process_exit(ev, &lo, &hi))
        return mr_thwm_exit(c->thwm, lo, hi);
    switch (ev->type) {
    case MR_REC_ALLOC: {
        mr_loc_key_t key = key_of(ev, c->merge);
        return mr_thwm_alloc(c->thwm, &key, ev->addr, ev->size, ev->generation);
    }
    case MR_REC_FREE:
        return mr_thwm_free(c->thwm, ev->addr, ev->size, ev->allocator == MR_MUNMAP);
    case MR_REC_MEMORY:
        return stride_hit(&c->stride) ? mr_thwm_snapshot(c->thwm) : 0;
    default:
        return 0;
    }
}

static void thwm_prefetch(void *vctx, uint64_t addr)
{
    mr_thwm_prefetch(((thwm_ctx_t *)vctx)->thwm, addr);
}

int mr_analyze_temporal_hwm(mr_reader_t *r, int merge_threads, uint64_t stride,
                            mr_interval_row_t **rows, size_t *n, uint64_t **hwm, size_t *n_hwm,
                            const mr_progress_t *p)
{
    thwm_ctx_t c = {.merge = merge_threads, .stride = {.every = stride}};
    int rc = mr_thwm_new(&c.thwm);
    if (rc < 0)
        return rc;
    rc = run_pass(r, p, thwm_event, thwm_prefetch, &c);
    if (rc == 0)
        rc = mr_thwm_rows(c.thwm, rows, n, hwm, n_hwm);
    mr_thwm_destroy(c.thwm);
    return rc;
}

/* ---- statistics ------------------------------------------------------------ */

typedef struct stats_ctx {
    mr_stats_t *stats;
    const mr_reader_t *r;
    uint64_t last_memory_ms; /* since start */
    int has_memory;
    mr_mem_peaks_t peaks;
} stats_ctx_t;

static int stats_event(void *vctx, const mr_event_t *ev)
{
    stats_ctx_t *c = vctx;
    uint64_t lo, hi;
    if (process_exit(ev, &lo, &hi))
        return mr_stats_exit(c->stats, lo, hi);
    if (ev->type == MR_REC_ALLOC) {
        int rc = mr_stats_alloc(c->stats, ev->allocator, ev->addr, ev->size,
                                mr_reader_stack_top_frame(c->r, ev->stack));
        if (rc == 0) /* per stack: top modules, and locations with native frames */
            rc = mr_stats_loc(c->stats, ev->stack, ev->native, ev->generation, ev->size);
        return rc;
    }
    if (ev->type == MR_REC_FREE)
        mr_stats_free(c->stats, ev->addr, ev->size, ev->allocator == MR_MUNMAP);
    if (ev->type == MR_REC_MEMORY) {
        c->last_memory_ms = ev->ms;
        c->has_memory = 1;
        snapshot_of(ev, mr_reader_header(c->r), mr_stats_heap(c->stats), &c->peaks);
    }
    return 0;
}

static void stats_prefetch(void *vctx, uint64_t addr)
{
    mr_stats_prefetch(((stats_ctx_t *)vctx)->stats, addr);
}

int mr_analyze_stats(mr_reader_t *r, mr_stats_t **out, uint64_t *end_ms, mr_mem_peaks_t *peaks,
                     const mr_progress_t *p)
{
    stats_ctx_t c = {.r = r};
    int rc = mr_stats_new(&c.stats);
    if (rc < 0)
        return rc;
    rc = run_pass(r, p, stats_event, stats_prefetch, &c);
    if (rc < 0) {
        mr_stats_destroy(c.stats);
        return rc;
    }
    uint64_t start = mr_reader_header(r)->start_ms;
    const mr_trailer_t *t = mr_reader_trailer(r);
    *end_ms = start + (t != NULL ? t->ms : c.has_memory ? c.last_memory_ms : 0);
    if (peaks != NULL)
        *peaks = c.peaks;
    *out = c.stats;
    return 0;
}
