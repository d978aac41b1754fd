/* fuzz_reader.c: libFuzzer harness for the capture reader. The input is a
 * capture file, plain or zstd-compressed, as `memray run` leaves it. It is
 * put in a memfd (the reader takes descriptors; a memfd is seekable, so every
 * pass reads it with pread, as it reads a file) and goes through what the
 * reporters do: the raw dump of every record (`memray parse`) with every
 * table looked up, then each analysis pass on a reader of its own (scan:
 * peak and leaks; temporary allocations; lifetimes; temporal high water
 * mark; statistics), with the stacks of every location they return resolved
 * (Python, native, hybrid; symbols from symbolize_stub.c). The passes'
 * parameters (threshold, snapshot stride, threads merged or not) vary with
 * the input's length, so the fuzzer reaches them all without a format of its
 * own. A plain input is also compressed here (two zstd frames) and must read
 * exactly as it did plain. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include "analyze.h"
#include "format.h"
#include "fuzz_common.h"
#include "reader.h"
#include "stacks.h"
#include "symbolize.h"

/* What a raw pass saw, for comparing the plain and the compressed reading. */
typedef struct raw_result {
    int open_rc, rc;
    uint64_t events, offset, sum;
    uint64_t folded; /* records the analysis passes fold: ALLOC, FREE, MEMORY, AGG */
    mr_end_t end;
    char err[MR_READER_ERRLEN];
} raw_result_t;

static int mem_fd(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-capture", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            abort();
        done += (size_t)n;
    }
    return fd;
}

/* A reader of its own for one pass, on a dup of fd (the source owns and
 * closes the one it is given). NULL if the header is refused. */
static mr_reader_t *open_reader(int fd, int *rc_out, char *err)
{
    mr_reader_t *r = NULL;
    int dfd = dup(fd);
    if (dfd < 0)
        abort();
    err[0] = '\0';
    int rc = mr_reader_open_fd(&r, dfd, err, MR_READER_ERRLEN);
    if (rc_out != NULL)
        *rc_out = rc;
    if (memchr(err, '\0', MR_READER_ERRLEN) == NULL)
        abort(); /* an unterminated message */
    if (rc < 0) {
        if (r != NULL || err[0] == '\0')
            abort(); /* a failure leaves no reader and says why */
        return NULL;
    }
    return r;
}

/* Formats into a buffer of 128 bytes, as `memray parse` starts with a fixed
 * line buffer, and again into one of the size asked for when that was too
 * small (records with strings): both must agree and stay in bounds. */
static uint64_t format_checked(const mr_reader_t *r, const mr_event_t *ev, uint64_t h)
{
    char line[128];
    int need = ev ? mr_reader_format_event(r, ev, line, sizeof line)
                  : mr_reader_format_header(r, line, sizeof line);
    if (need < 0 || strlen(line) != ((size_t)need < sizeof line ? (size_t)need : sizeof line - 1))
        abort();
    if ((size_t)need < sizeof line)
        return fuzz_touch(h, line, (size_t)need);
    char *big = malloc((size_t)need + 1);
    if (big == NULL)
        abort();
    int got = ev ? mr_reader_format_event(r, ev, big, (size_t)need + 1)
                 : mr_reader_format_header(r, big, (size_t)need + 1);
    if (got != need || strlen(big) != (size_t)need || memcmp(big, line, sizeof line - 1) != 0)
        abort();
    h = fuzz_touch(h, big, (size_t)need);
    free(big);
    return h;
}

/* The raw pass: every record, definitions included, formatted; then every
 * table entry looked up, after the source is gone (reports resolve stacks
 * once the file is closed). */
static void raw_pass(int fd, raw_result_t *res)
{
    memset(res, 0, sizeof *res);
    mr_reader_t *r = open_reader(fd, &res->open_rc, res->err);
    if (r == NULL)
        return;
    uint64_t h = format_checked(r, NULL, 0);
    h ^= (uint64_t)mr_reader_compressed(r);
    mr_reader_set_raw(r, 1);
    mr_event_t ev;
    uint64_t gens[64]; /* the MAPPINGS generations seen, the first 64 */
    size_t n_gens = 0;
    while ((res->rc = mr_reader_next(r, &ev)) > 0) {
        res->events++;
        if (ev.type == MR_REC_ALLOC || ev.type == MR_REC_FREE || ev.type == MR_REC_MEMORY ||
            ev.type == MR_REC_AGG)
            res->folded++;
        h = format_checked(r, &ev, h);
        if (ev.type == MR_REC_THREAD_NAME && ev.str != NULL)
            h = fuzz_touch(h, ev.str, ev.str_len + 1);
        if (ev.type == MR_REC_MAPPINGS && n_gens < sizeof gens / sizeof gens[0])
            gens[n_gens++] = ev.id;
    }
    mr_event_t again;
    if (mr_reader_next(r, &again) != res->rc)
        abort(); /* after the end or an error it keeps returning the same */
    res->end = mr_reader_end(r);
    res->offset = mr_reader_offset(r);
    if (res->rc < 0)
        snprintf(res->err, sizeof res->err, "%s", mr_reader_error(r));
    else if (res->end == MR_END_NONE)
        abort();
    mr_reader_release_source(r);

    uint64_t n_code = mr_reader_count(r, MR_REC_CODE);
    uint64_t n_frame = mr_reader_count(r, MR_REC_FRAME);
    uint64_t n_node = mr_reader_count(r, MR_REC_NODE);
    uint64_t n_native = mr_reader_count(r, MR_REC_NATIVE_NODE);
    for (uint64_t id = 0; id <= n_code + 1; id++) {
        const mr_code_t *c = mr_reader_code(r, id);
        if (c == NULL)
            continue;
        h = fuzz_touch(h, c->name, (size_t)c->name_len + 1);
        h = fuzz_touch(h, c->file, (size_t)c->file_len + 1);
    }
    for (uint64_t id = 0; id <= n_frame + 1; id++) {
        uint64_t code = 0, line = 0;
        if (mr_reader_frame(r, id, &code, &line) == 0 && mr_reader_code(r, code) == NULL)
            abort(); /* a frame of a code object that does not exist */
        h ^= code + line;
    }
    for (uint64_t id = 0; id <= n_node + 1; id++) {
        uint64_t parent = 0, frame = 0, code, line;
        int entry = 0;
        /* The format promises parents come first and frames exist. */
        if (mr_reader_node(r, id, &parent, &frame, &entry) == 0 &&
            (parent >= id || mr_reader_frame(r, frame, &code, &line) < 0))
            abort();
        /* Every id, a few frames deep; whole stacks for the rows of the passes. */
        h = fuzz_python_stack(r, id, 4, h);
    }
    for (uint64_t id = 0; id <= n_native + 1; id++) {
        uint64_t parent = 0, ip = 0;
        if (mr_reader_native_node(r, id, &parent, &ip) == 0 && parent >= id)
            abort();
    }
    /* Each generation's objects, and generations never recorded. */
    for (size_t i = 0; i < n_gens; i++) {
        h = fuzz_location(r, NULL, 0, 0, 0, gens[i], h);
        h = fuzz_location(r, NULL, 0, 0, 0, gens[i] + 1, h);
    }
    h = fuzz_location(r, NULL, 0, 0, 0, 0, h);
    const mr_trailer_t *t = mr_reader_trailer(r);
    if (t != NULL)
        h ^= t->ms ^ t->total_allocs ^ t->peak ^ t->flags;
    if ((t != NULL) != (res->rc == 0 && res->end == MR_END_TRAILER))
        abort();
    res->sum = h;
    mr_reader_close(r);
}

static int progress(void *ctx, uint64_t events)
{
    *(uint64_t *)ctx = events;
    return 0;
}

/* Every pass a report makes, each on a fresh reader; rc < 0 is a refused
 * capture, which is fine: a crash, a leak or a sanitizer report is not. */
static void analysis_passes(int fd, size_t size)
{
    char err[MR_READER_ERRLEN];
    uint64_t seen = 0, h = 0;
    mr_progress_t p = {progress, &seen};
    mr_symbolizer_t *sym = NULL;
    if (mr_sym_new(&sym) < 0)
        abort();
    /* Thresholds and strides the CLI accepts, varied with the input. */
    uint64_t threshold = size % 5;
    uint64_t stride = 1 + size % 3;
    int merge = (size >> 1) & 1;

    mr_reader_t *r = open_reader(fd, NULL, err);
    if (r == NULL)
        goto out;
    mr_scan_t scan;
    if (mr_analyze_scan(r, &scan, &p) == 0) {
        for (size_t i = 0; i < scan.n_rows; i++) {
            const mr_agg_row_t *row = &scan.rows[i];
            h = fuzz_location(r, sym, row->key.tid, row->key.stack, row->key.native,
                              row->generation, h);
        }
        for (size_t i = 0; i < scan.n_snapshots; i++)
            h ^= scan.snapshots[i].heap;
        /* The reports' merge_threads=True view of the same rows. */
        mr_agg_row_t *copy = malloc((scan.n_rows + 1) * sizeof *copy);
        size_t n = scan.n_rows;
        if (copy == NULL)
            abort();
        memcpy(copy, scan.rows, n * sizeof *copy);
        if (mr_agg_rows_merge_threads(copy, &n) == 0 && n > scan.n_rows)
            abort();
        free(copy);
        mr_scan_free(&scan);
    }
    mr_reader_close(r);

    mr_count_row_t *crows = NULL;
    size_t n = 0;
    if ((r = open_reader(fd, NULL, err)) == NULL)
        goto out;
    if (mr_analyze_temporary(r, merge, threshold, &crows, &n, &p) == 0) {
        for (size_t i = 0; i < n; i++)
            h = fuzz_location(r, sym, crows[i].key.tid, crows[i].key.stack, crows[i].key.native,
                              crows[i].generation, h);
        free(crows);
    }
    mr_reader_close(r);

    mr_interval_row_t *irows = NULL;
    if ((r = open_reader(fd, NULL, err)) == NULL)
        goto out;
    if (mr_analyze_lifetimes(r, merge, stride, &irows, &n, &p) == 0) {
        for (size_t i = 0; i < n; i++)
            h = fuzz_location(r, sym, irows[i].key.tid, irows[i].key.stack, irows[i].key.native,
                              irows[i].generation, h);
        free(irows);
    }
    mr_reader_close(r);

    uint64_t *hwm = NULL;
    size_t n_hwm = 0;
    if ((r = open_reader(fd, NULL, err)) == NULL)
        goto out;
    if (mr_analyze_temporal_hwm(r, !merge, stride, &irows, &n, &hwm, &n_hwm, &p) == 0) {
        for (size_t i = 0; i < n; i++)
            h = fuzz_location(r, sym, irows[i].key.tid, irows[i].key.stack, irows[i].key.native,
                              irows[i].generation, h);
        h = fuzz_touch(h, hwm, n_hwm * sizeof *hwm);
        free(irows);
        free(hwm);
    }
    mr_reader_close(r);

    mr_stats_t *st = NULL;
    uint64_t end_ms = 0;
    if ((r = open_reader(fd, NULL, err)) == NULL)
        goto out;
    if (mr_analyze_stats(r, &st, &end_ms, NULL, &p) == 0) {
        mr_stats_summary_t sum;
        mr_stats_summary(st, &sum);
        h ^= sum.total_allocs ^ sum.total_bytes ^ sum.peak;
        mr_size_count_t *sizes = NULL;
        mr_frame_total_t *frames = NULL;
        if (mr_stats_sizes(st, &sizes, &n) == 0) {
            h = fuzz_touch(h, sizes, n * sizeof *sizes);
            free(sizes);
        }
        if (mr_stats_frames(st, &frames, &n) == 0) {
            for (size_t i = 0; i < n; i++) {
                uint64_t code = 0, line = 0;
                if (frames[i].frame != 0 && mr_reader_frame(r, frames[i].frame, &code, &line) == 0)
                    h = fuzz_touch_str(h, mr_reader_code(r, code)->name);
            }
            free(frames);
        }
        if (mr_stats_locs(st, &crows, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                h = fuzz_location(r, sym, 0, crows[i].key.stack, crows[i].key.native,
                                  crows[i].generation, h);
            free(crows);
        }
        mr_stats_destroy(st);
    }
    mr_reader_close(r);
out:
    mr_sym_destroy(sym);
    /* Keeps h alive without printing: the reads above must happen. */
    __asm__ volatile("" : : "r"(h));
}

/* A plain capture compressed (in two frames when it is large enough, as
 * concatenated frames must read as one stream) must decode exactly as it
 * did plain: same records, same ending, same error at the same offset. */
static void compressed_matches_plain(const uint8_t *data, size_t size, const raw_result_t *plain)
{
    size_t cut = size > 64 ? size / 2 : size;
    size_t cap = ZSTD_compressBound(cut) + ZSTD_compressBound(size - cut);
    uint8_t *z = malloc(cap);
    if (z == NULL)
        abort();
    size_t a = ZSTD_compress(z, cap, data, cut, 1);
    if (ZSTD_isError(a))
        abort();
    size_t b = 0;
    if (cut < size) {
        b = ZSTD_compress(z + a, cap - a, data + cut, size - cut, 1);
        if (ZSTD_isError(b))
            abort();
    }
    int zfd = mem_fd(z, a + b);
    free(z);
    raw_result_t packed;
    raw_pass(zfd, &packed);
    close(zfd);
    if (packed.open_rc != plain->open_rc || packed.rc != plain->rc ||
        packed.events != plain->events || packed.end != plain->end ||
        packed.offset != plain->offset || strcmp(packed.err, plain->err) != 0) {
        fprintf(stderr,
                "compressed and plain readings differ:\n"
                " plain:      open %d rc %d events %llu end %d offset %llu \"%s\"\n"
                " compressed: open %d rc %d events %llu end %d offset %llu \"%s\"\n",
                plain->open_rc, plain->rc, (unsigned long long)plain->events, plain->end,
                (unsigned long long)plain->offset, plain->err, packed.open_rc, packed.rc,
                (unsigned long long)packed.events, packed.end, (unsigned long long)packed.offset,
                packed.err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = mem_fd(data, size);
    raw_result_t plain;
    raw_pass(fd, &plain);
    /* Without a record to fold, the passes would only decode again what the
     * raw pass decoded: most mutated inputs end that early. */
    if (plain.open_rc == 0 && plain.folded > 0)
        analysis_passes(fd, size);
    close(fd);
    if (size < 4 || memcmp(data, MR_ZSTD_MAGIC, 4) != 0)
        compressed_matches_plain(data, size, &plain);
    return 0;
}
