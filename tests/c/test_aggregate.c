/* test_aggregate.c: the aggregators on hand-made event sequences with exact
 * expected numbers (high water mark, leaks, munmap, temporary allocations
 * with thresholds, lifetimes, temporal high water mark, statistics), the
 * same on random sequences against a brute-force model, and whole passes
 * (analyze.c) over hand-built captures. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "aggregate.h"
#include "analyze.h"
#include "capbuf.h"
#include "ctest.h"
#include "format.h"
#include "reader.h"

static mr_loc_key_t K(uint32_t tid, uint64_t stack)
{
    return (mr_loc_key_t){.tid = tid, .allocator = MR_MALLOC, .stack = stack, .native = 0};
}

static const mr_agg_row_t *find_row(const mr_agg_row_t *rows, size_t n, uint32_t tid,
                                    uint64_t stack)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].key.tid == tid && rows[i].key.stack == stack)
            return &rows[i];
    return NULL;
}

#define CHECK_ROW(row, pn, pb, ln, lb)                                                             \
    do {                                                                                           \
        CHECK((row) != NULL);                                                                      \
        if ((row) != NULL) {                                                                       \
            CHECK_EQ((row)->peak_n, pn);                                                           \
            CHECK_EQ((row)->peak_bytes, pb);                                                       \
            CHECK_EQ((row)->leak_n, ln);                                                           \
            CHECK_EQ((row)->leak_bytes, lb);                                                       \
        }                                                                                          \
    } while (0)

static void test_hwm_and_leaks(void)
{
    mr_agg_t *a;
    CHECK_EQ(mr_agg_new(&a), 0);
    mr_loc_key_t l1 = K(1, 1), l2 = K(1, 2), l3 = K(2, 1);
    CHECK_EQ(mr_agg_alloc(a, &l1, 0x100, 100), 0);
    CHECK_EQ(mr_agg_alloc(a, &l2, 0x200, 50), 0);
    CHECK_EQ(mr_agg_alloc(a, &l1, 0x300, 10), 0); /* heap 160: the peak */
    mr_agg_free(a, 0x100, 0, 0);
    CHECK_EQ(mr_agg_heap(a), 60);
    CHECK_EQ(mr_agg_alloc(a, &l3, 0x400, 90), 0); /* 150 < 160 */
    mr_agg_free(a, 0x999, 0, 0);                  /* unknown: ignored */
    mr_agg_free(a, 0x200, 0, 0);
    CHECK_EQ(mr_agg_heap(a), 100);
    CHECK_EQ(mr_agg_peak(a), 160);
    CHECK_EQ(mr_agg_total_allocations(a), 4);
    mr_agg_row_t *rows;
    size_t n;
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_EQ(n, 3);
    CHECK_ROW(find_row(rows, n, 1, 1), 2, 110, 1, 10);
    CHECK_ROW(find_row(rows, n, 1, 2), 1, 50, 0, 0);
    CHECK_ROW(find_row(rows, n, 2, 1), 0, 0, 1, 90);
    /* First-seen order. */
    CHECK(rows[0].key.stack == 1 && rows[0].key.tid == 1);
    CHECK(rows[2].key.tid == 2);
    free(rows);

    /* Tracking goes on after mr_agg_rows: a new, higher peak. */
    CHECK_EQ(mr_agg_alloc(a, &l2, 0x500, 70), 0); /* 170 */
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_ROW(find_row(rows, n, 1, 1), 1, 10, 1, 10);
    CHECK_ROW(find_row(rows, n, 1, 2), 1, 70, 1, 70);
    CHECK_ROW(find_row(rows, n, 2, 1), 1, 90, 1, 90);
    CHECK_EQ(mr_agg_peak(a), 170);

    CHECK_EQ(mr_agg_rows_merge_threads(rows, &n), 0);
    CHECK_EQ(n, 2);
    CHECK(rows[0].key.tid == 0 && rows[0].key.stack == 1);
    CHECK_EQ(rows[0].peak_n, 2);
    CHECK_EQ(rows[0].peak_bytes, 100);
    CHECK_EQ(rows[1].leak_bytes, 70);
    free(rows);
    mr_agg_destroy(a);
}

static void test_first_peak_wins(void)
{
    mr_agg_t *a;
    CHECK_EQ(mr_agg_new(&a), 0);
    mr_loc_key_t l1 = K(1, 1), l2 = K(1, 2);
    mr_agg_alloc(a, &l1, 0x10, 200); /* 200: peak made of l1 */
    mr_agg_free(a, 0x10, 0, 0);
    mr_agg_alloc(a, &l2, 0x20, 200); /* 200 again: not higher */
    mr_agg_row_t *rows;
    size_t n;
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_ROW(find_row(rows, n, 1, 1), 1, 200, 0, 0);
    CHECK_ROW(find_row(rows, n, 1, 2), 0, 0, 1, 200);
    free(rows);
    mr_agg_destroy(a);
}

/* A process of a merged capture ends (addresses of process N carry N from
 * bit 48): its blocks, mappings included, leave the heap but stay leaks;
 * the other process's blocks at the same low addresses are untouched. */
static void test_process_exit(void)
{
    const uint64_t p1 = 1ull << 48, p2 = 2ull << 48;
    mr_agg_t *a;
    CHECK_EQ(mr_agg_new(&a), 0);
    mr_loc_key_t l1 = K(1, 1), l2 = K(2, 2), map = K(1, 3);
    map.allocator = MR_MMAP;
    CHECK_EQ(mr_agg_alloc(a, &l1, p1 | 0x100, 100), 0);
    CHECK_EQ(mr_agg_alloc(a, &l1, p1 | 0x200, 30), 0);
    CHECK_EQ(mr_agg_alloc(a, &map, p1 | 0x10000, 4096), 0);
    CHECK_EQ(mr_agg_alloc(a, &l2, p2 | 0x100, 500), 0); /* 4726: the peak */
    mr_agg_free(a, p1 | 0x200, 0, 0);
    CHECK_EQ(mr_agg_exit(a, p1, p2), 0);
    CHECK_EQ(mr_agg_heap(a), 500);
    CHECK_EQ(mr_agg_alloc(a, &l2, p2 | 0x200, 4000), 0); /* 4500: not above */
    mr_agg_free(a, p1 | 0x100, 0, 0);                    /* gone already: ignored */
    CHECK_EQ(mr_agg_peak(a), 4726);
    mr_agg_row_t *rows;
    size_t n;
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_EQ(n, 3);
    CHECK_ROW(find_row(rows, n, 1, 1), 2, 130, 1, 100);
    CHECK_ROW(find_row(rows, n, 1, 3), 1, 4096, 1, 4096);
    CHECK_ROW(find_row(rows, n, 2, 2), 1, 500, 2, 4500);
    free(rows);
    mr_agg_destroy(a);

    mr_stats_t *st;
    CHECK_EQ(mr_stats_new(&st), 0);
    CHECK_EQ(mr_stats_alloc(st, MR_MALLOC, p1 | 0x100, 100, 1), 0);
    CHECK_EQ(mr_stats_exit(st, p1, p2), 0);
    CHECK_EQ(mr_stats_alloc(st, MR_MALLOC, p2 | 0x100, 80, 1), 0);
    CHECK_EQ(mr_stats_alloc(st, MR_MALLOC, p2 | 0x200, 30, 1), 0);
    mr_stats_summary_t sum;
    mr_stats_summary(st, &sum);
    CHECK_EQ(sum.peak, 110);
    mr_stats_destroy(st);
}

static void test_lost_free_and_munmap(void)
{
    mr_agg_t *a;
    CHECK_EQ(mr_agg_new(&a), 0);
    mr_loc_key_t l1 = K(1, 1), l2 = K(1, 2);
    mr_agg_alloc(a, &l1, 0x1000, 64);
    mr_agg_alloc(a, &l2, 0x1000, 32); /* 0x1000 again: the first was freed unseen */
    CHECK_EQ(mr_agg_heap(a), 32);
    mr_loc_key_t m = {.tid = 1, .allocator = MR_MMAP, .stack = 3};
    mr_agg_alloc(a, &m, 0x100000, 3 * 4096);
    mr_agg_free(a, 0x100000, 4096, 1); /* unmaps the first page */
    CHECK_EQ(mr_agg_heap(a), 32 + 2 * 4096);
    mr_agg_free(a, 0x100000, 4096, 1); /* nothing mapped there any more */
    CHECK_EQ(mr_agg_heap(a), 32 + 2 * 4096);
    mr_agg_free(a, 0x101000, 0, 1); /* length 0 unmaps nothing */
    CHECK_EQ(mr_agg_heap(a), 32 + 2 * 4096);
    mr_agg_row_t *rows;
    size_t n;
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    const mr_agg_row_t *r = NULL;
    for (size_t i = 0; i < n; i++)
        if (rows[i].key.allocator == MR_MMAP)
            r = &rows[i];
    CHECK_ROW(r, 1, 3 * 4096, 1, 2 * 4096);
    /* The peak came with the mapping, after l1's block was gone. */
    CHECK(find_row(rows, n, 1, 1) == NULL);
    CHECK_ROW(find_row(rows, n, 1, 2), 1, 32, 1, 32);
    free(rows);
    mr_agg_free(a, 0x101000, 1 << 20, 1); /* the rest, and more */
    CHECK_EQ(mr_agg_heap(a), 32);
    mr_agg_destroy(a);
}

static void test_many_allocations_grow_tables(void)
{
    mr_agg_t *a;
    CHECK_EQ(mr_agg_new(&a), 0);
    const uint64_t n = 200000;
    for (uint64_t i = 0; i < n; i++) {
        mr_loc_key_t k = K((uint32_t)(i % 7), i % 1000);
        CHECK_EQ(mr_agg_alloc(a, &k, 0x10000 + i * 16, 8), 0);
    }
    CHECK_EQ(mr_agg_heap(a), 8 * n);
    for (uint64_t i = 0; i < n; i += 2)
        mr_agg_free(a, 0x10000 + i * 16, 0, 0);
    CHECK_EQ(mr_agg_heap(a), 4 * n);
    mr_agg_row_t *rows;
    size_t nr;
    CHECK_EQ(mr_agg_rows(a, &rows, &nr), 0);
    uint64_t pn = 0, ln = 0;
    for (size_t i = 0; i < nr; i++) {
        pn += rows[i].peak_n;
        ln += rows[i].leak_n;
    }
    CHECK_EQ(pn, n);
    CHECK_EQ(ln, n / 2);
    free(rows);
    mr_agg_destroy(a);
}

/* Every combination of 10 threads, 11 allocators, 10 python stacks and 10
 * native stacks is a location of its own (many differ in one field only),
 * also after the location table grew many times; each keeps exactly its own
 * allocations. */
static void test_locations_differ_in_every_field(void)
{
    static const unsigned allocators[11] = {
        MR_PYMALLOC_MALLOC, MR_PYMALLOC_CALLOC, MR_PYMALLOC_REALLOC, MR_MALLOC,
        MR_REALLOC,         MR_CALLOC,          MR_POSIX_MEMALIGN,   MR_ALIGNED_ALLOC,
        MR_MEMALIGN,        MR_VALLOC,          MR_PVALLOC};
    enum { N = 10 * 11 * 10 * 10 };
    mr_agg_t *a;
    CHECK_EQ(mr_agg_new(&a), 0);
    uint64_t addr = 0x100000;
    for (int round = 0; round < 2; round++) {
        for (uint32_t i = 0; i < N; i++) {
            mr_loc_key_t k = {.tid = i % 10,
                              .allocator = allocators[i / 10 % 11],
                              .stack = i / 110 % 10,
                              .native = i / 1100};
            CHECK_EQ(mr_agg_alloc(a, &k, addr, 1 + i), 0);
            addr += 1 << 16;
        }
    }
    mr_agg_row_t *rows;
    size_t n;
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_EQ(n, N);
    int exact = n == N;
    for (uint32_t i = 0; exact && i < N; i++) { /* first-seen order */
        const mr_loc_key_t *k = &rows[i].key;
        exact &= k->tid == i % 10 && k->allocator == allocators[i / 10 % 11] &&
                 k->stack == i / 110 % 10 && k->native == i / 1100;
        exact &= rows[i].leak_n == 2 && rows[i].leak_bytes == 2 * (1 + (uint64_t)i);
    }
    CHECK(exact);
    free(rows);
    mr_agg_destroy(a);
}

/* ---- temporary allocations ---- */

static uint64_t tmp_bytes(mr_tmp_t *t, uint64_t stack, uint64_t *count)
{
    mr_count_row_t *rows;
    size_t n;
    uint64_t b = 0, c = 0;
    if (mr_tmp_rows(t, &rows, &n) != 0)
        return UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (rows[i].key.stack == stack) {
            b += rows[i].bytes;
            c += rows[i].n;
        }
    free(rows);
    if (count)
        *count = c;
    return b;
}

static void test_temporary_thresholds(void)
{
    for (uint64_t threshold = 0; threshold < 4; threshold++) {
        mr_tmp_t *t;
        CHECK_EQ(mr_tmp_new(&t, threshold), 0);
        mr_loc_key_t a = K(1, 1), other = K(1, 9);
        /* Allocation at stack 1 freed after `gap` other allocations, gap 0..3. */
        for (uint64_t gap = 0; gap < 4; gap++) {
            uint64_t base = 0x1000 * (gap + 1);
            mr_tmp_alloc(t, 1, &a, base, 10 + gap, 0);
            for (uint64_t i = 0; i < gap; i++)
                mr_tmp_alloc(t, 1, &other, base + 16 * (i + 1), 1, 0);
            mr_tmp_free(t, 1, base, 0, 0);
        }
        uint64_t count;
        uint64_t bytes = tmp_bytes(t, 1, &count);
        /* Gaps 0..threshold count: sizes 10 .. 10 + threshold. */
        uint64_t want_n = threshold + 1, want_b = 0;
        for (uint64_t g = 0; g <= threshold; g++)
            want_b += 10 + g;
        CHECK_EQ(count, want_n);
        CHECK_EQ(bytes, want_b);
        mr_tmp_destroy(t);
    }
}

/* munmap works by range: across mappings, over gaps, and out of the middle
 * of one (two blocks for peak and leaks, one allocation for lifetimes). */
static void test_munmap_ranges(void)
{
    mr_agg_t *a;
    mr_life_t *l;
    CHECK_EQ(mr_agg_new(&a), 0);
    CHECK_EQ(mr_life_new(&l), 0);
    mr_loc_key_t m1 = {.allocator = MR_MMAP, .stack = 1}, m2 = {.allocator = MR_MMAP, .stack = 2};
    const uint64_t P = 4096, base = 0x100000;
    CHECK_EQ(mr_agg_alloc(a, &m1, base, 10 * P), 0);
    CHECK_EQ(mr_life_alloc(l, &m1, base, 10 * P, 0), 0);
    mr_life_snapshot(l);
    mr_agg_free(a, base + 2 * P, 4 * P, 1); /* the middle: 2 + 4 pages left */
    CHECK_EQ(mr_life_free(l, base + 2 * P, 4 * P, 1), 0);
    CHECK_EQ(mr_agg_heap(a), 6 * P);
    /* Next to it, after a gap of two pages: 3 pages. */
    CHECK_EQ(mr_agg_alloc(a, &m2, base + 12 * P, 3 * P), 0);
    CHECK_EQ(mr_life_alloc(l, &m2, base + 12 * P, 3 * P, 0), 0);
    mr_agg_row_t *rows;
    size_t n;
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_EQ(n, 2);
    CHECK_ROW(find_row(rows, n, 0, 1), 1, 10 * P, 2, 6 * P); /* the peak came before m2 */
    CHECK_ROW(find_row(rows, n, 0, 2), 0, 0, 1, 3 * P);
    free(rows);
    /* One call over the end of the second piece ([6P, 10P)), the gap and
     * the head of m2. */
    mr_agg_free(a, base + 8 * P, 5 * P, 1);
    CHECK_EQ(mr_life_free(l, base + 8 * P, 5 * P, 1), 0);
    CHECK_EQ(mr_agg_heap(a), 2 * P + 2 * P + 2 * P);
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_ROW(find_row(rows, n, 0, 1), 1, 10 * P, 2, 4 * P);
    CHECK_ROW(find_row(rows, n, 0, 2), 0, 0, 1, 2 * P);
    free(rows);
    /* A new mapping over the first page displaces it. */
    CHECK_EQ(mr_agg_alloc(a, &m2, base, P), 0);
    CHECK_EQ(mr_agg_heap(a), 6 * P);
    CHECK_EQ(mr_agg_rows(a, &rows, &n), 0);
    CHECK_ROW(find_row(rows, n, 0, 1), 1, 10 * P, 2, 3 * P);
    CHECK_ROW(find_row(rows, n, 0, 2), 0, 0, 2, 3 * P);
    free(rows);
    mr_interval_row_t *ir;
    CHECK_EQ(mr_life_rows(l, &ir, &n), 0);
    /* m1: 6 of its pages made before snapshot 1 went after it (no whole
     * allocation); 4 pages in two pieces are alive, one allocation. m2: made
     * after snapshot 1, its 2 pages alive. */
    CHECK_EQ(n, 3);
    if (n == 3) {
        CHECK(ir[0].key.stack == 1 && ir[0].allocated_before == 0 &&
              ir[0].deallocated_before == 1 && ir[0].n == 0 && ir[0].bytes == 6 * P);
        CHECK(ir[1].key.stack == 1 && ir[1].allocated_before == 0 &&
              ir[1].deallocated_before == MR_NEVER && ir[1].n == 1 && ir[1].bytes == 4 * P);
        CHECK(ir[2].key.stack == 2 && ir[2].allocated_before == 1 &&
              ir[2].deallocated_before == MR_NEVER && ir[2].n == 1 && ir[2].bytes == 2 * P);
    }
    free(ir);
    mr_life_destroy(l);
    mr_agg_destroy(a);
}

static void test_temporary_threads_and_munmap(void)
{
    mr_tmp_t *t;
    CHECK_EQ(mr_tmp_new(&t, 1), 0);
    mr_loc_key_t a = K(0, 1); /* merged key, real tids below */
    mr_tmp_alloc(t, 1, &a, 0x10, 8, 0);
    mr_tmp_free(t, 2, 0x10, 0, 0); /* another thread frees it: not temporary */
    mr_tmp_alloc(t, 2, &a, 0x20, 16, 0);
    mr_tmp_alloc(t, 1, &a, 0x30, 32, 0); /* other threads' allocations do not count */
    mr_tmp_alloc(t, 1, &a, 0x40, 64, 0);
    mr_tmp_free(t, 2, 0x20, 0, 0); /* thread 2: nothing in between: counts */
    mr_tmp_free(t, 2, 0x20, 0, 0); /* a second free of the same block: no */
    mr_loc_key_t m = {.tid = 0, .allocator = MR_MMAP, .stack = 2};
    mr_tmp_alloc(t, 3, &m, 0x100000, 8192, 0);
    mr_tmp_free(t, 3, 0x100000, 4096, 1); /* partial munmap: no */
    mr_tmp_alloc(t, 3, &m, 0x200000, 4096, 0);
    mr_tmp_free(t, 3, 0x200000, 4096, 1); /* whole: yes */
    uint64_t n;
    CHECK_EQ(tmp_bytes(t, 1, &n), 16);
    CHECK_EQ(n, 1);
    CHECK_EQ(tmp_bytes(t, 2, &n), 4096);
    CHECK_EQ(n, 1);
    mr_tmp_destroy(t);
}

/* ---- lifetimes ---- */

static void test_lifetimes_exact(void)
{
    mr_life_t *l;
    CHECK_EQ(mr_life_new(&l), 0);
    mr_loc_key_t a = K(1, 1), b = K(1, 2);
    mr_life_alloc(l, &a, 0x10, 100, 0); /* interval 0 */
    mr_life_alloc(l, &b, 0x20, 7, 0);
    mr_life_free(l, 0x20, 0, 0); /* made and freed in interval 0: left out */
    mr_life_alloc(l, &a, 0x30, 5, 0);
    mr_life_snapshot(l);
    mr_life_alloc(l, &b, 0x40, 50, 0); /* interval 1 */
    mr_life_snapshot(l);
    mr_life_free(l, 0x10, 0, 0); /* freed in interval 2 */
    mr_life_free(l, 0x40, 0, 0);
    mr_loc_key_t m = {.tid = 1, .allocator = MR_MMAP, .stack = 3};
    mr_life_alloc(l, &m, 0x100000, 8192, 0);
    mr_life_snapshot(l);
    mr_life_free(l, 0x100000, 4096, 1); /* partial in interval 3: n 0 */
    mr_interval_row_t *rows;
    size_t n;
    CHECK_EQ(mr_life_rows(l, &rows, &n), 0);
    CHECK_EQ(n, 5);
    if (n == 5) {
        /* a: 0->2 (1 x 100), 0->never (1 x 5) */
        CHECK(rows[0].key.stack == 1 && rows[0].allocated_before == 0);
        CHECK(rows[0].deallocated_before == 2 && rows[0].n == 1 && rows[0].bytes == 100);
        CHECK(rows[1].key.stack == 1 && rows[1].allocated_before == 0);
        CHECK(rows[1].deallocated_before == MR_NEVER && rows[1].n == 1 && rows[1].bytes == 5);
        /* b: 1->2 */
        CHECK(rows[2].key.stack == 2 && rows[2].allocated_before == 1);
        CHECK(rows[2].deallocated_before == 2 && rows[2].n == 1 && rows[2].bytes == 50);
        /* the mapping: 4096 bytes freed in 3 (count 0), the rest alive */
        CHECK(rows[3].key.stack == 3 && rows[3].allocated_before == 2);
        CHECK(rows[3].deallocated_before == 3 && rows[3].n == 0 && rows[3].bytes == 4096);
        CHECK(rows[4].deallocated_before == MR_NEVER && rows[4].n == 1 && rows[4].bytes == 4096);
    }
    free(rows);
    mr_life_destroy(l);
}

/* ---- temporal high water mark ---- */

static void test_temporal_hwm_exact(void)
{
    mr_thwm_t *t;
    CHECK_EQ(mr_thwm_new(&t), 0);
    mr_loc_key_t l1 = K(1, 1), l2 = K(1, 2);
    mr_thwm_alloc(t, &l1, 0xA, 100, 0);
    mr_thwm_alloc(t, &l2, 0xB, 50, 0); /* interval 0 peak: 150 */
    mr_thwm_free(t, 0xA, 0, 0);
    mr_thwm_snapshot(t);               /* interval 1 starts at 50 */
    mr_thwm_alloc(t, &l1, 0xC, 30, 0); /* 80: interval 1 peak */
    mr_thwm_free(t, 0xB, 0, 0);
    mr_thwm_snapshot(t); /* interval 2 starts at 30, its peak */
    mr_thwm_free(t, 0xC, 0, 0);
    mr_interval_row_t *rows;
    size_t n, nh;
    uint64_t *hwm;
    CHECK_EQ(mr_thwm_rows(t, &rows, &n, &hwm, &nh), 0);
    CHECK_EQ(nh, 3);
    CHECK_EQ(hwm[0], 150);
    CHECK_EQ(hwm[1], 80);
    CHECK_EQ(hwm[2], 30);
    CHECK_EQ(n, 3);
    if (n == 3) {
        CHECK(rows[0].key.stack == 1 && rows[0].allocated_before == 0 &&
              rows[0].deallocated_before == 1 && rows[0].n == 1 && rows[0].bytes == 100);
        CHECK(rows[1].key.stack == 1 && rows[1].allocated_before == 1 &&
              rows[1].deallocated_before == 3 && rows[1].n == 1 && rows[1].bytes == 30);
        CHECK(rows[2].key.stack == 2 && rows[2].allocated_before == 0 &&
              rows[2].deallocated_before == 2 && rows[2].n == 1 && rows[2].bytes == 50);
    }
    free(rows);
    free(hwm);
    mr_thwm_destroy(t);
}

/* ---- random sequences against a brute-force model ---- */

#define NLOC 6
#define NADDR 24
#define MAXSNAP 64

/* A mapping (loc 5, size > 0) is unmapped by range; pieces of one mapping
 * share a group, which lifetimes count as one allocation. */
typedef struct model_block {
    int live, loc, interval, mapped, group;
    uint64_t addr, size;
} model_block_t;

#define MAXBLOCKS 1024

typedef struct model {
    model_block_t blocks[MAXBLOCKS];
    int group_alive[MAXBLOCKS];
    int n_blocks;
    uint64_t n[NLOC], bytes[NLOC];
    uint64_t heap, peak, peak_n[NLOC], peak_bytes[NLOC];
    int interval;
    uint64_t ipeak, ip_n[NLOC], ip_b[NLOC]; /* current interval's peak */
    uint64_t iv_n[MAXSNAP + 2][NLOC], iv_b[MAXSNAP + 2][NLOC], iv_peak[MAXSNAP + 2];
    /* lifetimes: [loc][a][d] with d = MAXSNAP+1 for never */
    uint64_t life_n[NLOC][MAXSNAP + 2][MAXSNAP + 2], life_b[NLOC][MAXSNAP + 2][MAXSNAP + 2];
    int first_seen[NLOC], order[NLOC], n_order;
} model_t;

static model_block_t *model_find(model_t *m, uint64_t addr)
{
    for (int i = 0; i < m->n_blocks; i++)
        if (m->blocks[i].live && m->blocks[i].addr == addr)
            return &m->blocks[i];
    return NULL;
}

/* bytes of b are gone; with whole, b is. */
static void model_take(model_t *m, model_block_t *b, uint64_t bytes, int whole)
{
    int last = 1;
    if (whole) {
        b->live = 0;
        if (b->mapped)
            last = --m->group_alive[b->group] == 0;
    }
    m->n[b->loc] -= whole;
    m->bytes[b->loc] -= bytes;
    m->heap -= bytes;
    if (b->interval != m->interval) {
        m->life_n[b->loc][b->interval][m->interval] += whole && last;
        m->life_b[b->loc][b->interval][m->interval] += bytes;
    }
}

/* munmap(addr, len), byte by byte over every mapping. */
static void model_unmap(model_t *m, uint64_t addr, uint64_t len)
{
    uint64_t end = addr + len;
    for (int i = 0; len > 0 && i < m->n_blocks; i++) {
        model_block_t *b = &m->blocks[i];
        uint64_t bend = b->addr + b->size;
        if (!b->live || !b->mapped || bend <= addr || b->addr >= end)
            continue;
        uint64_t lo = b->addr > addr ? b->addr : addr, hi = bend < end ? bend : end;
        if (lo > b->addr && hi < bend) {
            if (model_find(m, hi) == NULL) { /* the middle: two pieces */
                model_block_t *t = &m->blocks[m->n_blocks++];
                *t = *b;
                t->addr = hi;
                t->size = bend - hi;
                m->group_alive[b->group]++;
                m->n[b->loc]++;
                b->size = lo - b->addr;
                model_take(m, b, hi - lo, 0);
                continue;
            }
            hi = bend; /* a block already at hi: the tail goes too */
        }
        if (lo == b->addr && hi == bend) {
            model_take(m, b, b->size, 1);
        } else if (lo == b->addr) {
            if (model_find(m, hi) != NULL) {
                model_take(m, b, b->size, 1);
            } else {
                model_take(m, b, hi - lo, 0);
                b->addr = hi;
                b->size = bend - hi;
            }
        } else {
            model_take(m, b, hi - lo, 0);
            b->size = lo - b->addr;
        }
    }
}

static void model_release(model_t *m, uint64_t addr, uint64_t len, int munmap)
{
    if (munmap) {
        model_unmap(m, addr, len);
        return;
    }
    model_block_t *b = model_find(m, addr);
    if (b != NULL)
        model_take(m, b, b->size, 1);
}

static void model_alloc(model_t *m, int loc, uint64_t addr, uint64_t size)
{
    if (!m->first_seen[loc]) {
        m->first_seen[loc] = 1;
        m->order[m->n_order++] = loc;
    }
    int mapped = loc == 5 && size > 0;
    if (mapped)
        model_unmap(m, addr, size); /* a new mapping displaces what it covers */
    model_release(m, addr, 0, 0);
    int i = m->n_blocks++;
    m->blocks[i] = (model_block_t){.live = 1,
                                   .loc = loc,
                                   .interval = m->interval,
                                   .mapped = mapped,
                                   .group = i,
                                   .addr = addr,
                                   .size = size};
    m->group_alive[i] = 1;
    m->n[loc]++;
    m->bytes[loc] += size;
    m->heap += size;
    if (m->heap > m->peak) {
        m->peak = m->heap;
        memcpy(m->peak_n, m->n, sizeof m->n);
        memcpy(m->peak_bytes, m->bytes, sizeof m->bytes);
    }
    if (m->heap > m->ipeak) {
        m->ipeak = m->heap;
        memcpy(m->ip_n, m->n, sizeof m->n);
        memcpy(m->ip_b, m->bytes, sizeof m->bytes);
    }
}

static void model_interval_start(model_t *m)
{
    m->ipeak = m->heap;
    memcpy(m->ip_n, m->n, sizeof m->n);
    memcpy(m->ip_b, m->bytes, sizeof m->bytes);
}

static void model_snapshot(model_t *m)
{
    memcpy(m->iv_n[m->interval], m->ip_n, sizeof m->ip_n);
    memcpy(m->iv_b[m->interval], m->ip_b, sizeof m->ip_b);
    m->iv_peak[m->interval] = m->ipeak;
    m->interval++;
    model_interval_start(m);
}

static mr_loc_key_t loc_key(int loc)
{
    return (mr_loc_key_t){.tid = (uint32_t)(loc % 2),
                          .allocator = loc == 5 ? MR_MMAP : MR_MALLOC,
                          .stack = (uint64_t)loc + 1,
                          .native = (uint64_t)(loc % 3)};
}

static int loc_of_key(const mr_loc_key_t *k)
{
    return (int)k->stack - 1;
}

static void test_random_against_model(void)
{
    srand(777);
    model_t *m = malloc(sizeof *m);
    for (int iter = 0; iter < 1500; iter++) {
        memset(m, 0, sizeof *m);
        model_interval_start(m);
        mr_agg_t *agg;
        mr_life_t *life;
        mr_thwm_t *thwm;
        mr_agg_new(&agg);
        mr_life_new(&life);
        mr_thwm_new(&thwm);
        int ops = 20 + rand() % 200;
        for (int op = 0; op < ops && m->n_blocks < MAXBLOCKS - 2 * NADDR; op++) {
            int what = rand() % 100;
            uint64_t addr = 0x1000 * (uint64_t)(1 + rand() % NADDR);
            if (what < 45) {
                int loc = rand() % NLOC;
                uint64_t size = (uint64_t)(rand() % 5) * 4096 + (uint64_t)(rand() % 3) * 100;
                mr_loc_key_t k = loc_key(loc);
                model_alloc(m, loc, addr, size);
                CHECK_EQ(mr_agg_alloc(agg, &k, addr, size), 0);
                CHECK_EQ(mr_life_alloc(life, &k, addr, size, 0), 0);
                CHECK_EQ(mr_thwm_alloc(thwm, &k, addr, size, 0), 0);
            } else if (what < 80) {
                model_release(m, addr, 0, 0);
                mr_agg_free(agg, addr, 0, 0);
                CHECK_EQ(mr_life_free(life, addr, 0, 0), 0);
                CHECK_EQ(mr_thwm_free(thwm, addr, 0, 0), 0);
            } else if (what < 92) {
                uint64_t len = (uint64_t)(rand() % 8) * 4096 + (uint64_t)(rand() % 4 == 0) * 100;
                model_release(m, addr, len, 1);
                mr_agg_free(agg, addr, len, 1);
                CHECK_EQ(mr_life_free(life, addr, len, 1), 0);
                CHECK_EQ(mr_thwm_free(thwm, addr, len, 1), 0);
            } else if (m->interval < MAXSNAP - 1) {
                model_snapshot(m);
                mr_life_snapshot(life);
                CHECK_EQ(mr_thwm_snapshot(thwm), 0);
            }
        }
        /* High water mark and leaks. */
        CHECK_EQ(mr_agg_heap(agg), m->heap);
        CHECK_EQ(mr_agg_peak(agg), m->peak);
        mr_agg_row_t *rows;
        size_t n;
        CHECK_EQ(mr_agg_rows(agg, &rows, &n), 0);
        size_t want = 0;
        for (int loc = 0; loc < NLOC; loc++)
            if (m->peak_n[loc] || m->peak_bytes[loc] || m->n[loc] || m->bytes[loc])
                want++;
        CHECK_EQ(n, want);
        for (size_t i = 0; i < n; i++) {
            int loc = loc_of_key(&rows[i].key);
            CHECK_EQ(rows[i].peak_n, m->peak_n[loc]);
            CHECK_EQ(rows[i].peak_bytes, m->peak_bytes[loc]);
            CHECK_EQ(rows[i].leak_n, m->n[loc]);
            CHECK_EQ(rows[i].leak_bytes, m->bytes[loc]);
        }
        free(rows);

        /* Lifetimes: the model's table, leaks added, in (first seen, a, d) order. */
        for (int i = 0; i < m->n_blocks; i++) {
            model_block_t *b = &m->blocks[i];
            if (b->live) {
                /* A split mapping counts once. */
                int first = 1;
                for (int j = 0; j < i && b->mapped; j++)
                    if (m->blocks[j].live && m->blocks[j].mapped && m->blocks[j].group == b->group)
                        first = 0;
                m->life_n[b->loc][b->interval][MAXSNAP + 1] += first;
                m->life_b[b->loc][b->interval][MAXSNAP + 1] += b->size;
            }
        }
        mr_interval_row_t *ir;
        CHECK_EQ(mr_life_rows(life, &ir, &n), 0);
        size_t k = 0;
        int life_ok = 1;
        for (int o = 0; o < m->n_order; o++) {
            int loc = m->order[o];
            for (int a = 0; a <= MAXSNAP; a++)
                for (int d = 0; d <= MAXSNAP + 1; d++) {
                    if (!m->life_n[loc][a][d] && !m->life_b[loc][a][d])
                        continue;
                    uint64_t dd = d == MAXSNAP + 1 ? MR_NEVER : (uint64_t)d;
                    if (k >= n || loc_of_key(&ir[k].key) != loc ||
                        ir[k].allocated_before != (uint64_t)a || ir[k].deallocated_before != dd ||
                        ir[k].n != m->life_n[loc][a][d] || ir[k].bytes != m->life_b[loc][a][d])
                        life_ok = 0;
                    k++;
                }
        }
        CHECK(life_ok);
        CHECK_EQ(k, n);
        free(ir);

        /* Temporal high water mark: finish the last interval, then runs. */
        memcpy(m->iv_n[m->interval], m->ip_n, sizeof m->ip_n);
        memcpy(m->iv_b[m->interval], m->ip_b, sizeof m->ip_b);
        m->iv_peak[m->interval] = m->ipeak;
        memcpy(m->iv_n[m->interval + 1], m->n, sizeof m->n);
        memcpy(m->iv_b[m->interval + 1], m->bytes, sizeof m->bytes);
        uint64_t *hwm;
        size_t nh;
        CHECK_EQ(mr_thwm_rows(thwm, &ir, &n, &hwm, &nh), 0);
        CHECK_EQ(nh, (size_t)m->interval + 1);
        for (int i = 0; i <= m->interval && i < (int)nh; i++)
            CHECK_EQ(hwm[i], m->iv_peak[i]);
        k = 0;
        int thwm_ok = 1;
        for (int o = 0; o < m->n_order; o++) {
            int loc = m->order[o];
            uint64_t cn = 0, cb = 0;
            int start = -1;
            for (int i = 0; i <= m->interval + 2; i++) {
                int end = i == m->interval + 2;
                uint64_t vn = end ? 0 : m->iv_n[i][loc], vb = end ? 0 : m->iv_b[i][loc];
                if (!end && vn == cn && vb == cb)
                    continue;
                if (end && start < 0)
                    break;
                if (start >= 0) {
                    uint64_t dd = end ? MR_NEVER : (uint64_t)i;
                    if (k >= n || loc_of_key(&ir[k].key) != loc ||
                        ir[k].allocated_before != (uint64_t)start ||
                        ir[k].deallocated_before != dd || ir[k].n != cn || ir[k].bytes != cb)
                        thwm_ok = 0;
                    k++;
                }
                if (end)
                    break;
                cn = vn;
                cb = vb;
                start = (vn || vb) ? i : -1;
            }
        }
        CHECK(thwm_ok);
        CHECK_EQ(k, n);
        if (!thwm_ok || !life_ok) {
            fprintf(stderr, "iteration %d\n", iter);
            free(ir);
            free(hwm);
            mr_agg_destroy(agg);
            mr_life_destroy(life);
            mr_thwm_destroy(thwm);
            break;
        }
        free(ir);
        free(hwm);
        mr_agg_destroy(agg);
        mr_life_destroy(life);
        mr_thwm_destroy(thwm);
    }
    free(m);
}

/* Temporary allocations against a model: per thread, the last threshold+1
 * allocations; a free matches the newest live one at that address. */
static void test_random_temporary_against_model(void)
{
    srand(4242);
    for (int iter = 0; iter < 1000; iter++) {
        uint64_t threshold = (uint64_t)(rand() % 4);
        mr_tmp_t *t;
        mr_tmp_new(&t, threshold);
        struct {
            int tid, loc, valid;
            uint64_t addr, size;
        } hist[300];
        int nh = 0;
        uint64_t want_n[NLOC] = {0}, want_b[NLOC] = {0};
        int ops = 10 + rand() % 250;
        for (int op = 0; op < ops && nh < 300; op++) {
            int tid = 1 + rand() % 3;
            uint64_t addr = 0x100 * (uint64_t)(1 + rand() % 8);
            if (rand() % 2) {
                int loc = rand() % NLOC;
                uint64_t size = 1 + (uint64_t)(rand() % 50);
                mr_loc_key_t k = K(0, (uint64_t)loc + 1);
                CHECK_EQ(mr_tmp_alloc(t, (uint32_t)tid, &k, addr, size, 0), 0);
                hist[nh].tid = tid;
                hist[nh].loc = loc;
                hist[nh].valid = 1;
                hist[nh].addr = addr;
                hist[nh].size = size;
                nh++;
            } else {
                CHECK_EQ(mr_tmp_free(t, (uint32_t)tid, addr, 0, 0), 0);
                uint64_t seen = 0;
                for (int i = nh - 1; i >= 0 && seen <= threshold; i--) {
                    if (hist[i].tid != tid)
                        continue;
                    seen++;
                    if (hist[i].valid && hist[i].addr == addr) {
                        want_n[hist[i].loc]++;
                        want_b[hist[i].loc] += hist[i].size;
                        hist[i].valid = 0;
                        break;
                    }
                }
            }
        }
        for (int loc = 0; loc < NLOC; loc++) {
            uint64_t n;
            CHECK_EQ(tmp_bytes(t, (uint64_t)loc + 1, &n), want_b[loc]);
            CHECK_EQ(n, want_n[loc]);
        }
        mr_tmp_destroy(t);
    }
}

static void test_stats(void)
{
    mr_stats_t *s;
    CHECK_EQ(mr_stats_new(&s), 0);
    mr_stats_alloc(s, MR_MALLOC, 0x10, 100, 1);
    mr_stats_alloc(s, MR_CALLOC, 0x20, 100, 2);
    mr_stats_alloc(s, MR_MALLOC, 0x30, 8, 1); /* 208: peak */
    mr_stats_free(s, 0x10, 0, 0);
    mr_stats_alloc(s, MR_PYMALLOC_MALLOC, 0x40, 50, 0);
    mr_stats_summary_t sum;
    mr_stats_summary(s, &sum);
    CHECK_EQ(sum.total_allocs, 4);
    CHECK_EQ(sum.total_bytes, 258);
    CHECK_EQ(sum.peak, 208);
    CHECK_EQ(sum.by_allocator[MR_MALLOC], 2);
    CHECK_EQ(sum.by_allocator[MR_CALLOC], 1);
    CHECK_EQ(sum.by_allocator[MR_PYMALLOC_MALLOC], 1);
    mr_size_count_t *sizes;
    size_t n;
    CHECK_EQ(mr_stats_sizes(s, &sizes, &n), 0);
    CHECK_EQ(n, 3);
    CHECK(sizes[0].size == 8 && sizes[0].count == 1);
    CHECK(sizes[1].size == 50 && sizes[1].count == 1);
    CHECK(sizes[2].size == 100 && sizes[2].count == 2);
    free(sizes);
    mr_frame_total_t *frames;
    CHECK_EQ(mr_stats_frames(s, &frames, &n), 0);
    CHECK_EQ(n, 3);
    CHECK(frames[0].frame == 1 && frames[0].count == 2 && frames[0].bytes == 108);
    CHECK(frames[1].frame == 2 && frames[1].count == 1 && frames[1].bytes == 100);
    CHECK(frames[2].frame == 0 && frames[2].count == 1 && frames[2].bytes == 50);
    free(frames);
    /* Per (python stack, native stack) pair, with the latest generation. */
    CHECK_EQ(mr_stats_loc(s, 3, 7, 1, 100), 0);
    CHECK_EQ(mr_stats_loc(s, 3, 0, 0, 10), 0);
    CHECK_EQ(mr_stats_loc(s, 3, 7, 2, 20), 0);
    mr_count_row_t *locs;
    CHECK_EQ(mr_stats_locs(s, &locs, &n), 0);
    CHECK_EQ(n, 2);
    CHECK(locs[0].key.stack == 3 && locs[0].key.native == 7 && locs[0].generation == 2);
    CHECK(locs[0].n == 2 && locs[0].bytes == 120);
    CHECK(locs[1].key.stack == 3 && locs[1].key.native == 0 && locs[1].n == 1);
    CHECK(locs[1].bytes == 10);
    free(locs);
    mr_stats_destroy(s);
}

/* Sizes are counted for any value a capture may hold, the largest too. */
static void test_stats_sizes_any_value(void)
{
    mr_stats_t *s;
    CHECK_EQ(mr_stats_new(&s), 0);
    static const uint64_t sizes_in[] = {UINT64_MAX, 1, 0,         UINT64_MAX - 1,
                                        UINT64_MAX, 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof sizes_in / sizeof sizes_in[0]; i++) {
        CHECK_EQ(mr_stats_alloc(s, MR_MALLOC, 0x1000 + 16 * i, sizes_in[i], 0), 0);
        mr_stats_free(s, 0x1000 + 16 * i, 0, 0);
    }
    mr_size_count_t *sizes;
    size_t n;
    CHECK_EQ(mr_stats_sizes(s, &sizes, &n), 0);
    CHECK_EQ(n, 4);
    if (n == 4) {
        CHECK(sizes[0].size == 0 && sizes[0].count == 1);
        CHECK(sizes[1].size == 1 && sizes[1].count == 2);
        CHECK(sizes[2].size == UINT64_MAX - 1 && sizes[2].count == 1);
        CHECK(sizes[3].size == UINT64_MAX && sizes[3].count == 3);
    }
    free(sizes);
    mr_stats_destroy(s);
}

/* ---- whole passes over captures ---- */

static mr_reader_t *open_capture(const capbuf_t *b)
{
    char err[MR_READER_ERRLEN];
    mr_reader_t *r = NULL;
    if (mr_reader_open(&r, cb_save(b, b->len, "pass.bin"), err, sizeof err) != 0)
        fprintf(stderr, "open: %s\n", err);
    return r;
}

/* Two threads; snapshots between; the third MEMORY record ends the data. */
static void build_pass_capture(capbuf_t *b, int with_trailer)
{
    cbstate_t s = {0};
    cb_header(b, 0);
    cb_code(b, "f", "f.py", 1);
    cb_frame(b, 1, 3);
    cb_node(b, 0, 1, 0);
    cb_frame(b, 1, 4);
    cb_node(b, 0, 2, 0);
    cb_thread_name(b, 11, "worker");
    cb_alloc(b, &s, 10, MR_MALLOC, 0x100, 1000, 1, 0);
    cb_alloc(b, &s, 11, MR_MALLOC, 0x200, 500, 1, 0);
    cb_free(b, &s, 11, MR_FREE, 0x200, 0); /* temporary (thread 11) */
    cb_memory(b, 10, 5000, 0, 0);          /* heap 1000 */
    cb_alloc(b, &s, 10, MR_CALLOC, 0x300, 300, 2, 0);
    cb_alloc(b, &s, 11, MR_MALLOC, 0x400, 2000, 1, 0); /* 3300: peak */
    cb_free(b, &s, 10, MR_FREE, 0x100, 0);
    cb_memory(b, 20, 6000, 0, 0); /* heap 2300 */
    cb_free(b, &s, 11, MR_FREE, 0x400, 0);
    cb_memory(b, 30, 7000, 0, 0); /* heap 300 */
    if (with_trailer)
        cb_trailer(b, 35, 4, 3300, 0);
}

static int count_progress(void *ctx, uint64_t events)
{
    *(uint64_t *)ctx = events;
    return 0;
}

static void test_scan_pass(void)
{
    for (int trailer = 0; trailer < 2; trailer++) {
        capbuf_t b = {0};
        build_pass_capture(&b, trailer);
        mr_reader_t *r = open_capture(&b);
        mr_scan_t s;
        uint64_t seen = 0;
        mr_progress_t p = {count_progress, &seen};
        CHECK_EQ(mr_analyze_scan(r, &s, &p), 0);
        CHECK_EQ(seen, 7);
        CHECK_EQ(s.n_allocs, 4);
        CHECK_EQ(s.n_frees, 3);
        CHECK_EQ(s.n_frames, 2);
        CHECK_EQ(s.peak, 3300);
        CHECK_EQ(s.has_trailer, trailer);
        CHECK_EQ(s.end, trailer ? MR_END_TRAILER : MR_END_EOF);
        CHECK_EQ(s.end_ms, 1700000000000ull + (trailer ? 35 : 30));
        CHECK_EQ(s.n_snapshots, 3);
        if (s.n_snapshots == 3) {
            CHECK_EQ(s.snapshots[0].ms, 1700000000010ull);
            CHECK_EQ(s.snapshots[0].rss, 5000);
            CHECK_EQ(s.snapshots[0].heap, 1000);
            CHECK_EQ(s.snapshots[1].heap, 2300);
            CHECK_EQ(s.snapshots[2].heap, 300);
        }
        CHECK_EQ(s.n_rows, 3);
        const mr_agg_row_t *row = find_row(s.rows, s.n_rows, 10, 1);
        CHECK_ROW(row, 1, 1000, 0, 0);
        row = find_row(s.rows, s.n_rows, 11, 1);
        CHECK_ROW(row, 1, 2000, 0, 0);
        row = find_row(s.rows, s.n_rows, 10, 2);
        CHECK_ROW(row, 1, 300, 1, 300);
        mr_scan_free(&s);
        mr_reader_close(r);
        free(b.d);
    }
}

static void test_aggregated_scan(void)
{
    capbuf_t b = {0};
    cb_header(&b, MR_FLAG_AGGREGATED);
    cb_code(&b, "f", "f.py", 1);
    cb_frame(&b, 1, 3);
    cb_node(&b, 0, 1, 0);
    cb_memory(&b, 5, 100, 1, 64);
    cb_memory(&b, 9, 100, 1, 128);
    cb_agg(&b, 3, MR_MALLOC, 1, 0, 2, 128, 1, 64);
    cb_trailer(&b, 10, 17, 999, 0);
    mr_reader_t *r = open_capture(&b);
    mr_scan_t s;
    CHECK_EQ(mr_analyze_scan(r, &s, NULL), 0);
    CHECK_EQ(s.peak, 999);
    CHECK_EQ(s.trailer.total_allocs, 17);
    CHECK_EQ(s.n_snapshots, 2);
    CHECK_EQ(s.snapshots[1].heap, 128);
    CHECK_EQ(s.n_rows, 1);
    CHECK_ROW(find_row(s.rows, s.n_rows, 3, 1), 2, 128, 1, 64);
    mr_scan_free(&s);
    mr_reader_close(r);

    /* Without a trailer the peak falls back to the highest heap sample. */
    b.len -= 5;
    r = open_capture(&b);
    CHECK_EQ(mr_analyze_scan(r, &s, NULL), 0);
    CHECK_EQ(s.peak, 128);
    mr_scan_free(&s);
    mr_reader_close(r);
    free(b.d);
}

/* The samples where the heap and RSS peaked (the first of equals), with
 * their split of RSS, from the scan and from the statistics pass alike;
 * samples without a split keep zeros. */
static void test_memory_peaks(void)
{
    capbuf_t b = {0};
    cbstate_t s = {0};
    cb_header(&b, 0);
    cb_memory(&b, 1, 900, 0, 0); /* heap 0, no split */
    cb_alloc(&b, &s, 1, MR_MALLOC, 0x100, 4000, 0, 0);
    cb_memory_split(&b, 2, 9000, 0, 0, 6000, 2500, 500, 0); /* heap 4000: the heap's peak */
    cb_free(&b, &s, 1, MR_FREE, 0x100, 0);
    cb_alloc(&b, &s, 1, MR_MMAP, 0x10000, 4000, 0, 0);
    cb_memory_split(&b, 3, 9500, 0, 0, 6000, 3500, 0, 4000); /* heap 4000 again: not first */
    cb_free(&b, &s, 1, MR_MUNMAP, 0x10000, 4000);
    cb_memory_split(&b, 4, 12000, 0, 0, 11000, 1000, 0, 0); /* RSS's peak, heap 0 */
    cb_memory_split(&b, 5, 12000, 0, 0, 10000, 2000, 0, 0); /* equal RSS: not first */
    mr_reader_t *r = open_capture(&b);
    mr_scan_t scan;
    CHECK_EQ(mr_analyze_scan(r, &scan, NULL), 0);
    mr_reader_close(r);
    r = open_capture(&b);
    mr_stats_t *st = NULL;
    uint64_t end_ms;
    mr_mem_peaks_t peaks;
    CHECK_EQ(mr_analyze_stats(r, &st, &end_ms, &peaks, NULL), 0);
    mr_stats_destroy(st);
    mr_reader_close(r);
    const mr_mem_peaks_t *both[2] = {&scan.mem_peaks, &peaks};
    for (int i = 0; i < 2; i++) {
        const mr_mem_peaks_t *p = both[i];
        CHECK_EQ(p->any, 1);
        CHECK_EQ(p->heap.ms, 1700000000002ull);
        CHECK_EQ(p->heap.heap, 4000);
        CHECK_EQ(p->heap.rss, 9000);
        CHECK_EQ(p->heap.has_split, 1);
        CHECK_EQ(p->heap.split.anon, 6000);
        CHECK_EQ(p->heap.split.file, 2500);
        CHECK_EQ(p->heap.split.shmem, 500);
        CHECK_EQ(p->rss.ms, 1700000000004ull);
        CHECK_EQ(p->rss.heap, 0);
        CHECK_EQ(p->rss.split.anon, 11000);
    }
    CHECK_EQ(scan.n_snapshots, 5);
    if (scan.n_snapshots == 5) {
        CHECK_EQ(scan.snapshots[0].has_split, 0);
        CHECK_EQ(scan.snapshots[0].split.anon, 0);
        CHECK_EQ(scan.snapshots[2].heap, 4000);
        CHECK_EQ(scan.snapshots[2].split.mapped, 4000);
        CHECK_EQ(scan.snapshots[3].split.mapped, 0);
    }
    mr_scan_free(&scan);
    free(b.d);

    /* No samples: nothing to show. */
    b = (capbuf_t){0};
    cb_header(&b, 0);
    r = open_capture(&b);
    CHECK_EQ(mr_analyze_scan(r, &scan, NULL), 0);
    CHECK_EQ(scan.mem_peaks.any, 0);
    mr_scan_free(&scan);
    mr_reader_close(r);
    free(b.d);
}

static void test_other_passes(void)
{
    capbuf_t b = {0};
    build_pass_capture(&b, 1);

    /* Threshold 0: thread 11 frees both its blocks right away; thread 10
     * frees 0x100 after one other allocation of its own. */
    mr_reader_t *r = open_capture(&b);
    mr_count_row_t *tr;
    size_t n;
    CHECK_EQ(mr_analyze_temporary(r, 0, 0, &tr, &n, NULL), 0);
    CHECK_EQ(n, 1);
    CHECK(n == 1 && tr[0].key.tid == 11 && tr[0].key.stack == 1 && tr[0].n == 2 &&
          tr[0].bytes == 2500);
    free(tr);
    mr_reader_close(r);
    r = open_capture(&b);
    CHECK_EQ(mr_analyze_temporary(r, 0, 1, &tr, &n, NULL), 0);
    CHECK_EQ(n, 2);
    CHECK(n == 2 && tr[0].key.tid == 10 && tr[0].key.stack == 1 && tr[0].n == 1 &&
          tr[0].bytes == 1000);
    free(tr);
    mr_reader_close(r);
    r = open_capture(&b);
    CHECK_EQ(mr_analyze_temporary(r, 1, 1, &tr, &n, NULL), 0);
    CHECK(n == 1 && tr[0].key.tid == 0 && tr[0].n == 3 && tr[0].bytes == 3500);
    free(tr);
    mr_reader_close(r);

    r = open_capture(&b);
    mr_interval_row_t *ir;
    CHECK_EQ(mr_analyze_lifetimes(r, 1, 0, &ir, &n, NULL), 0);
    /* 0x100 (stack 1): 0->1; 0x400 (stack 1): 1->2; 0x300 (calloc, stack 2): 1->never. */
    CHECK_EQ(n, 3);
    if (n == 3) {
        CHECK(ir[0].key.tid == 0 && ir[0].key.stack == 1 && ir[0].allocated_before == 0 &&
              ir[0].deallocated_before == 1 && ir[0].bytes == 1000);
        CHECK(ir[1].key.stack == 1 && ir[1].allocated_before == 1 &&
              ir[1].deallocated_before == 2 && ir[1].bytes == 2000);
        CHECK(ir[2].key.stack == 2 && ir[2].allocated_before == 1 &&
              ir[2].deallocated_before == MR_NEVER && ir[2].bytes == 300);
    }
    free(ir);
    mr_reader_close(r);

    /* Stride 2: only the 1st and 3rd MEMORY records start intervals. */
    r = open_capture(&b);
    CHECK_EQ(mr_analyze_lifetimes(r, 1, 2, &ir, &n, NULL), 0);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK(ir[0].key.stack == 1 && ir[0].allocated_before == 0 &&
              ir[0].deallocated_before == 1 && ir[0].n == 1 && ir[0].bytes == 1000);
        CHECK(ir[1].key.stack == 2 && ir[1].allocated_before == 1 &&
              ir[1].deallocated_before == MR_NEVER);
    }
    free(ir);
    mr_reader_close(r);

    r = open_capture(&b);
    uint64_t *hwm;
    size_t nh;
    CHECK_EQ(mr_analyze_temporal_hwm(r, 1, 0, &ir, &n, &hwm, &nh, NULL), 0);
    CHECK_EQ(nh, 4);
    if (nh == 4) {
        CHECK_EQ(hwm[0], 1500);
        CHECK_EQ(hwm[1], 3300);
        CHECK_EQ(hwm[2], 2300);
        CHECK_EQ(hwm[3], 300);
    }
    free(ir);
    free(hwm);
    mr_reader_close(r);

    r = open_capture(&b);
    mr_stats_t *st;
    uint64_t end_ms;
    CHECK_EQ(mr_analyze_stats(r, &st, &end_ms, NULL, NULL), 0);
    CHECK_EQ(end_ms, 1700000000035ull);
    mr_stats_summary_t sum;
    mr_stats_summary(st, &sum);
    CHECK_EQ(sum.total_allocs, 4);
    CHECK_EQ(sum.total_bytes, 3800);
    CHECK_EQ(sum.peak, 3300);
    mr_frame_total_t *ft;
    CHECK_EQ(mr_stats_frames(st, &ft, &n), 0);
    CHECK(n == 2 && ft[0].frame == 1 && ft[0].count == 3 && ft[1].frame == 2);
    free(ft);
    mr_stats_destroy(st);
    mr_reader_close(r);
    free(b.d);
}

static int abort_progress(void *ctx, uint64_t events)
{
    (void)ctx;
    (void)events;
    return -EINTR;
}

static void test_progress_can_stop_a_pass(void)
{
    capbuf_t b = {0};
    cbstate_t s = {0};
    cb_header(&b, 0);
    for (uint64_t i = 0; i < 2 * MR_PROGRESS_EVERY; i++)
        cb_alloc(&b, &s, 1, MR_MALLOC, 0x1000 + 16 * i, 8, 0, 0);
    mr_reader_t *r = open_capture(&b);
    mr_scan_t sc;
    mr_progress_t p = {abort_progress, NULL};
    CHECK_EQ(mr_analyze_scan(r, &sc, &p), -EINTR);
    mr_reader_close(r);
    free(b.d);
}

int main(void)
{
    RUN(test_hwm_and_leaks);
    RUN(test_first_peak_wins);
    RUN(test_lost_free_and_munmap);
    RUN(test_process_exit);
    RUN(test_munmap_ranges);
    RUN(test_many_allocations_grow_tables);
    RUN(test_locations_differ_in_every_field);
    RUN(test_temporary_thresholds);
    RUN(test_temporary_threads_and_munmap);
    RUN(test_lifetimes_exact);
    RUN(test_temporal_hwm_exact);
    RUN(test_random_against_model);
    RUN(test_random_temporary_against_model);
    RUN(test_stats);
    RUN(test_stats_sizes_any_value);
    RUN(test_scan_pass);
    RUN(test_aggregated_scan);
    RUN(test_memory_peaks);
    RUN(test_other_passes);
    RUN(test_progress_can_stop_a_pass);
    cb_cleanup();
    DONE();
}
