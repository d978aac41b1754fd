/* merge.c: merging captures of several processes into one (merge.h). A plan
 * (mr_merge_t) holds the inputs and what the first reading learnt of them; a
 * run (merge_run_t) reads them again and writes the merged records through a
 * writer, to a file or, through a callback sink and a generated source, to a
 * reader. */
#define _GNU_SOURCE
#include "merge.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "hashmap.h"
#include "sink.h"
#include "source.h"
#include "util.h"
#include "writer.h"

/* Thread ids given to a process's thread whose id another process used. */
#define SYNTHETIC_TID_BASE (1u << 30)

typedef struct input {
    int fd;
    char *name;
    mr_header_t hdr;     /* command_line: a malloc'd copy */
    uint64_t offset_ms;  /* from the merged start to this input's start */
    uint64_t *sample_ms; /* its MEMORY records' times, in order */
    size_t n_samples;
    uint64_t end_ms; /* its last time: trailer, else last sample */
    uint64_t total_allocs;
    uint64_t trailer_flags;
} input_t;

struct mr_merge {
    int refs; /* atomic: the caller and every streaming reader */
    input_t *in;
    size_t n;
    size_t root;    /* the input that started first: the header's */
    uint16_t flags; /* of the merged header */
    uint32_t interval_ms;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void merge_free(mr_merge_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->in[i].fd >= 0)
            close(m->in[i].fd);
        free(m->in[i].name);
        free(m->in[i].hdr.command_line);
        free(m->in[i].sample_ms);
    }
    free(m->in);
    free(m);
}

void mr_merge_release(mr_merge_t *m)
{
    if (m != NULL && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        merge_free(m);
}

/* A reader of input i from its first byte, on a descriptor of its own. */
static int open_input(const input_t *in, mr_reader_t **out, char *err, size_t errlen)
{
    int fd = fcntl(in->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errlen, "%s: %s", in->name, strerror(errno));
        return -errno;
    }
    char msg[MR_READER_ERRLEN];
    int rc = mr_reader_open_fd(out, fd, msg, sizeof msg);
    if (rc < 0)
        set_err(err, errlen, "%s: %s", in->name, msg);
    return rc;
}

/* The first reading: the input's header, sample times and end. */
static int scan_input(input_t *in, char *err, size_t errlen)
{
    mr_reader_t *r;
    int rc = open_input(in, &r, err, errlen);
    if (rc < 0)
        return rc;
    const mr_header_t *h = mr_reader_header(r);
    in->hdr = *h;
    in->hdr.command_line = strdup(h->command_line != NULL ? h->command_line : "");
    if (in->hdr.command_line == NULL) {
        mr_reader_close(r);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t cap = 0;
    mr_event_t ev;
    while ((rc = mr_reader_next(r, &ev)) > 0) {
        if (ev.type == MR_REC_MEMORY) {
            if (mr_grow_array((void **)&in->sample_ms, &cap, in->n_samples + 1,
                              sizeof *in->sample_ms) < 0) {
                rc = -ENOMEM;
                break;
            }
            /* A clock that went back is held where it was. */
            uint64_t last = in->n_samples ? in->sample_ms[in->n_samples - 1] : 0;
            in->sample_ms[in->n_samples++] = ev.ms > last ? ev.ms : last;
        } else if (ev.type == MR_REC_TRAILER) {
            in->end_ms = ev.ms;
            in->total_allocs = ev.a;
            in->trailer_flags = ev.flags;
        }
    }
    if (rc == -ENOMEM)
        set_err(err, errlen, "out of memory");
    else if (rc < 0)
        set_err(err, errlen, "%s: %s", in->name, mr_reader_error(r));
    if (in->n_samples > 0 && in->sample_ms[in->n_samples - 1] > in->end_ms)
        in->end_ms = in->sample_ms[in->n_samples - 1];
    if (rc == 0 && !mr_reader_trailer(r) && (h->flags & MR_FLAG_AGGREGATED) == 0)
        in->total_allocs = mr_reader_count(r, MR_REC_ALLOC);
    mr_reader_close(r);
    return rc;
}

int mr_merge_open(mr_merge_t **out, const int *fds, const char *const *names, size_t n, char *err,
                  size_t errlen)
{
    mr_merge_t *m = calloc(1, sizeof *m);
    input_t *in = m != NULL ? calloc(n ? n : 1, sizeof *in) : NULL;
    if (in == NULL) {
        free(m);
        for (size_t i = 0; i < n; i++)
            close(fds[i]);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    m->refs = 1;
    m->in = in;
    m->n = n;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        in[i].fd = fds[i];
        in[i].name = strdup(names[i]);
        if (in[i].name == NULL)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    if (n == 0 || n > MR_MERGE_MAX_INPUTS) {
        set_err(err, errlen, n == 0 ? "no captures to merge" : "more than %u captures to merge",
                MR_MERGE_MAX_INPUTS);
        rc = -EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (fstat(in[i].fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            set_err(err, errlen, "%s: not a regular file", in[i].name);
            rc = -EINVAL;
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            struct stat sj;
            if (fstat(in[j].fd, &sj) == 0 && sj.st_dev == st.st_dev && sj.st_ino == st.st_ino) {
                set_err(err, errlen, "%s is given twice (also as %s)", in[i].name, in[j].name);
                rc = -EINVAL;
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = scan_input(&in[i], err, errlen)) < 0)
            goto fail;
        const mr_header_t *h = &in[i].hdr;
        if (h->flags & MR_FLAG_MERGED) {
            set_err(err, errlen, "%s is already a merge of several captures: merge its inputs",
                    in[i].name);
            rc = -EINVAL;
            goto fail;
        }
        if (h->sample_every != in[0].hdr.sample_every) {
            set_err(err, errlen,
                    "%s and %s were sampled differently (every %" PRIu64 " and %" PRIu64
                    " bytes; 0: not sampled): merge captures sampled alike",
                    in[0].name, in[i].name, in[0].hdr.sample_every, h->sample_every);
            rc = -EINVAL;
            goto fail;
        }
        if ((h->flags ^ in[0].hdr.flags) & MR_FLAG_AGGREGATED) {
            size_t agg = h->flags & MR_FLAG_AGGREGATED ? i : 0, all = agg == i ? 0 : i;
            set_err(err, errlen,
                    "%s is an aggregated capture and %s is not: merge captures of one file format",
                    in[agg].name, in[all].name);
            rc = -EINVAL;
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            if (in[j].hdr.pid == h->pid && in[j].hdr.start_ms == h->start_ms) {
                set_err(err, errlen, "%s and %s are captures of the same run (pid %" PRIu32 ")",
                        in[j].name, in[i].name, h->pid);
                rc = -EINVAL;
                goto fail;
            }
        }
        if (h->start_ms < in[m->root].hdr.start_ms)
            m->root = i;
        m->flags |=
            h->flags & (MR_FLAG_NATIVE | MR_FLAG_PYALLOC | MR_FLAG_AGGREGATED | MR_FLAG_SAMPLED);
        if (i == 0 || h->interval_ms < m->interval_ms)
            m->interval_ms = h->interval_ms;
    }
    m->flags |= MR_FLAG_MERGED;
    for (size_t i = 0; i < n; i++)
        in[i].offset_ms = in[i].hdr.start_ms - in[m->root].hdr.start_ms;
    *out = m;
    return 0;
fail:
    merge_free(m);
    return rc;
}

/* ---- a run ---------------------------------------------------------------- */

/* What a run keeps per input. Maps from the input's ids to the merged ones
 * are arrays indexed by input id (ids are dense, from 1). */
typedef struct run_input {
    mr_reader_t *r;
    size_t chunk; /* chunks done: the next ends at sample_ms[chunk], or at the end */
    int done;
    uint32_t number; /* process number in the merged capture, 0 = not yet */
    uint64_t *codes, *frames, *nodes, *natives;
    size_t cap_codes, cap_frames, cap_nodes, cap_natives;
    uint64_t rss, heap; /* latest sample */
    int has_heap;
    mr_mem_split_t split; /* of the latest sample, when has_split */
    int has_split;
} run_input_t;

typedef struct merge_run {
    mr_merge_t *m;
    run_input_t *in;
    mr_writer_t w;
    uint32_t process;   /* current, 0 = none */
    uint32_t n_defined; /* processes defined so far */
    uint64_t n_gens;
    uint64_t last_ms; /* of the last MEMORY written */
    uint64_t peak_heap;
    int any_heap;
    size_t n_done;
    int finished;      /* trailer written */
    mr_hm_t tids;      /* (input << 32 | tid) -> merged tid */
    mr_hm_t tid_owner; /* merged tid -> input + 1 */
    uint32_t next_synthetic;
    char err[MR_READER_ERRLEN + 64];
    /* streaming: bytes made, not yet read */
    uint8_t *stage;
    size_t stage_pos, stage_len, stage_cap;
} merge_run_t;

static int run_error(merge_run_t *run, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->err, sizeof run->err, fmt, ap);
    va_end(ap);
    return rc;
}

static void run_free(merge_run_t *run)
{
    if (run == NULL)
        return;
    for (size_t i = 0; run->in != NULL && i < run->m->n; i++) {
        run_input_t *ri = &run->in[i];
        mr_reader_close(ri->r);
        free(ri->codes);
        free(ri->frames);
        free(ri->nodes);
        free(ri->natives);
    }
    free(run->in);
    mr_hm_destroy(&run->tids);
    mr_hm_destroy(&run->tid_owner);
    free(run->stage);
    free(run);
}

static int run_new(mr_merge_t *m, merge_run_t **out, char *err, size_t errlen)
{
    merge_run_t *run = calloc(1, sizeof *run);
    if (run == NULL || (run->in = calloc(m->n, sizeof *run->in)) == NULL) {
        free(run);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    run->m = m;
    run->next_synthetic = SYNTHETIC_TID_BASE;
    for (size_t i = 0; i < m->n; i++) {
        int rc = open_input(&m->in[i], &run->in[i].r, err, errlen);
        if (rc < 0) {
            run_free(run);
            return rc;
        }
        mr_reader_set_raw(run->in[i].r, 1);
    }
    *out = run;
    return 0;
}

static int run_start(merge_run_t *run, mr_sink_t *sink)
{
    const input_t *root = &run->m->in[run->m->root];
    mr_header_info_t info = {.flags = run->m->flags,
                             .python_allocator = root->hdr.python_allocator,
                             .pid = root->hdr.pid,
                             .parent_pid = root->hdr.parent_pid,
                             .main_tid = root->hdr.main_tid,
                             .start_ms = root->hdr.start_ms,
                             .py_hexversion = root->hdr.py_hexversion,
                             .interval_ms = run->m->interval_ms,
                             .command_line = root->hdr.command_line,
                             .command_line_len = root->hdr.command_line_len,
                             .sample_every = root->hdr.sample_every};
    int rc = mr_writer_init(&run->w, sink, &info);
    return rc < 0 ? run_error(run, rc, "writing the merged capture: %s", strerror(-rc)) : 0;
}

/* When input i's next chunk ends, on the merged clock. */
static uint64_t chunk_end(const merge_run_t *run, size_t i)
{
    const input_t *in = &run->m->in[i];
    size_t k = run->in[i].chunk;
    return in->offset_ms + (k < in->n_samples ? in->sample_ms[k] : in->end_ms);
}

/* Input id -> merged id maps. */
static int map_set(uint64_t **arr, size_t *cap, uint64_t id, uint64_t value)
{
    if (mr_grow_array((void **)arr, cap, (size_t)id + 1, sizeof **arr) < 0)
        return -ENOMEM;
    (*arr)[id] = value;
    return 0;
}

static uint64_t map_get(const uint64_t *arr, size_t cap, uint64_t id)
{
    return id != 0 && id < cap ? arr[id] : 0;
}

/* The merged thread id of input i's tid: its own unless another process had
 * it first. 0 stays 0 (no thread recorded). */
static int map_tid(merge_run_t *run, size_t i, uint32_t tid, uint32_t *out)
{
    if (tid == 0) {
        *out = 0;
        return 0;
    }
    uint64_t key = (uint64_t)i << 32 | tid, got;
    if (mr_hm_get(&run->tids, key, &got)) {
        *out = (uint32_t)got;
        return 0;
    }
    uint32_t merged = tid;
    while (mr_hm_get(&run->tid_owner, merged, &got))
        merged = run->next_synthetic++;
    if (mr_hm_put(&run->tids, key, merged) < 0 || mr_hm_put(&run->tid_owner, merged, i + 1) < 0)
        return -ENOMEM;
    *out = merged;
    return 0;
}

/* Makes input i the current process, defining it on first use. */
static int switch_to(merge_run_t *run, size_t i)
{
    run_input_t *ri = &run->in[i];
    const input_t *in = &run->m->in[i];
    int rc;
    if (ri->number == 0) {
        mr_process_info_t info = {.pid = in->hdr.pid,
                                  .parent_pid = in->hdr.parent_pid,
                                  .start_offset_ms = in->offset_ms,
                                  .py_hexversion = in->hdr.py_hexversion,
                                  .command_line = in->hdr.command_line,
                                  .command_line_len = in->hdr.command_line_len};
        ri->number = ++run->n_defined;
        rc = mr_writer_process(&run->w, ri->number, &info);
    } else {
        rc = mr_writer_process(&run->w, ri->number, NULL);
    }
    run->process = ri->number;
    return rc;
}

/* A MEMORY record of the sums, at ms on the merged clock. */
static int write_sum(merge_run_t *run, uint64_t ms)
{
    uint64_t rss = 0, heap = 0;
    int has_heap = 0;
    /* The split of the sum, as long as every process that adds to it has
     * one (its parts then add up to rss). */
    mr_mem_split_t split = {0};
    int has_split = 1, any_split = 0;
    for (size_t i = 0; i < run->m->n; i++) {
        const run_input_t *ri = &run->in[i];
        rss += ri->rss;
        heap += ri->heap;
        has_heap |= ri->has_heap;
        if (ri->has_split) {
            any_split = 1;
            split.anon += ri->split.anon;
            split.file += ri->split.file;
            split.shmem += ri->split.shmem;
            split.mapped += ri->split.mapped;
        } else if (ri->rss != 0) {
            has_split = 0;
        }
    }
    if (ms < run->last_ms)
        ms = run->last_ms;
    run->last_ms = ms;
    if (has_heap && heap > run->peak_heap)
        run->peak_heap = heap;
    run->any_heap |= has_heap;
    return mr_writer_memory_split(&run->w, ms, rss, has_heap, heap,
                                  has_split && any_split ? &split : NULL);
}

static int copy_mappings(merge_run_t *run, run_input_t *ri, uint64_t gen)
{
    size_t count;
    const mr_mapping_t *maps = mr_reader_mappings(ri->r, gen, &count);
    mr_mapping_entry_t *e = calloc(count ? count : 1, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    for (size_t k = 0; k < count; k++)
        e[k] = (mr_mapping_entry_t){.path = maps[k].path,
                                    .path_len = maps[k].path_len,
                                    .bias = maps[k].bias,
                                    .lo = maps[k].lo,
                                    .hi = maps[k].hi,
                                    .build_id = maps[k].build_id,
                                    .build_id_len = maps[k].build_id_len};
    int rc = mr_writer_mappings(&run->w, ++run->n_gens, e, count);
    free(e);
    return rc;
}

/* Copies one record of input i. 1: its chunk goes on; 0: the chunk (or the
 * input) ended; <0: error (message in run->err). */
static int copy_record(merge_run_t *run, size_t i)
{
    run_input_t *ri = &run->in[i];
    const input_t *in = &run->m->in[i];
    mr_event_t ev;
    int rc = mr_reader_next(ri->r, &ev);
    if (rc < 0)
        return run_error(run, rc, "%s: %s", in->name, mr_reader_error(ri->r));
    if (rc == 0) {
        ri->done = 1;
        run->n_done++;
        ri->rss = ri->heap = 0;
        ri->has_heap = 0;
        ri->split = (mr_mem_split_t){0};
        ri->has_split = 0;
        if (run->n_done < run->m->n && (rc = mr_writer_process_exit(&run->w, ri->number)) < 0)
            return run_error(run, rc, "writing the merged capture: %s", strerror(-rc));
        /* The sum drops when a process ends while others go on. */
        if (run->n_done < run->m->n && in->n_samples > 0 &&
            (rc = write_sum(run, in->offset_ms + in->end_ms)) < 0)
            return run_error(run, rc, "writing the merged capture: %s", strerror(-rc));
        return 0;
    }
    const uint64_t tag = (uint64_t)ri->number << MR_MERGE_ADDR_BITS;
    uint64_t id = 0;
    uint32_t tid = 0;
    switch (ev.type) {
    case MR_REC_CODE: {
        const mr_code_t *c = mr_reader_code(ri->r, ev.id);
        rc = mr_writer_code(&run->w, c->name, c->name_len, c->file, c->file_len,
                            (uint32_t)c->first_line, &id);
        if (rc == 0)
            rc = map_set(&ri->codes, &ri->cap_codes, ev.id, id);
        break;
    }
    case MR_REC_FRAME:
        rc = mr_writer_frame(&run->w, map_get(ri->codes, ri->cap_codes, ev.a), (uint32_t)ev.b, &id);
        if (rc == 0)
            rc = map_set(&ri->frames, &ri->cap_frames, ev.id, id);
        break;
    case MR_REC_NODE:
        rc = mr_writer_node(&run->w, map_get(ri->nodes, ri->cap_nodes, ev.a),
                            map_get(ri->frames, ri->cap_frames, ev.b),
                            (ev.arg & MR_NODE_ENTRY) != 0, &id);
        if (rc == 0)
            rc = map_set(&ri->nodes, &ri->cap_nodes, ev.id, id);
        break;
    case MR_REC_NATIVE_NODE:
        rc = mr_writer_native_node(&run->w, map_get(ri->natives, ri->cap_natives, ev.a), ev.b, &id);
        if (rc == 0)
            rc = map_set(&ri->natives, &ri->cap_natives, ev.id, id);
        break;
    case MR_REC_MAPPINGS:
        rc = copy_mappings(run, ri, ev.id);
        break;
    case MR_REC_THREAD_NAME:
        if ((rc = map_tid(run, i, ev.tid, &tid)) == 0)
            rc = mr_writer_thread_name(&run->w, tid, ev.str, ev.str_len);
        break;
    case MR_REC_ALLOC:
        if (ev.addr >> MR_MERGE_ADDR_BITS)
            return run_error(run, -ERANGE,
                             "%s: address 0x%" PRIx64 " is above 2^48: cannot merge it", in->name,
                             ev.addr);
        if ((rc = map_tid(run, i, ev.tid, &tid)) == 0)
            rc = mr_writer_alloc(&run->w, tid, ev.allocator, ev.addr | tag, ev.size,
                                 map_get(ri->nodes, ri->cap_nodes, ev.stack),
                                 map_get(ri->natives, ri->cap_natives, ev.native));
        break;
    case MR_REC_FREE:
        if (ev.addr >> MR_MERGE_ADDR_BITS)
            return run_error(run, -ERANGE,
                             "%s: address 0x%" PRIx64 " is above 2^48: cannot merge it", in->name,
                             ev.addr);
        if ((rc = map_tid(run, i, ev.tid, &tid)) == 0)
            rc = mr_writer_free(&run->w, tid, ev.allocator, ev.addr | tag, ev.size);
        break;
    case MR_REC_AGG:
        if ((rc = map_tid(run, i, ev.tid, &tid)) == 0)
            rc = mr_writer_agg(&run->w, tid, ev.allocator,
                               map_get(ri->nodes, ri->cap_nodes, ev.stack),
                               map_get(ri->natives, ri->cap_natives, ev.native), ev.peak_n,
                               ev.peak_bytes, ev.leak_n, ev.leak_bytes);
        break;
    case MR_REC_MEMORY:
        ri->rss = ev.rss;
        ri->heap = ev.heap;
        ri->has_heap = ev.has_heap;
        ri->split = ev.split;
        ri->has_split = ev.has_split;
        ri->chunk++;
        rc = write_sum(run, in->offset_ms + ev.ms);
        if (rc == 0)
            return 0;
        break;
    default: /* THREAD (ALLOC and FREE carry it), TRAILER (ends it) */
        break;
    }
    if (rc < 0)
        return run_error(run, rc,
                         rc == -ENOMEM ? "out of memory" : "writing the merged capture: %s",
                         strerror(-rc));
    return 1;
}

/* Copies the next chunk, or writes the trailer once every input ended.
 * 1: more to do, 0: finished, <0: error. */
static int run_step(merge_run_t *run)
{
    if (run->finished)
        return 0;
    size_t best = run->m->n;
    for (size_t i = 0; i < run->m->n; i++)
        if (!run->in[i].done && (best == run->m->n || chunk_end(run, i) < chunk_end(run, best)))
            best = i;
    int rc;
    if (best == run->m->n) {
        uint64_t end = 0, total = 0, flags = 0, peak = 0;
        for (size_t i = 0; i < run->m->n; i++) {
            const input_t *in = &run->m->in[i];
            if (in->offset_ms + in->end_ms > end)
                end = in->offset_ms + in->end_ms;
            total += in->total_allocs;
            flags |= in->trailer_flags;
        }
        /* Aggregated: the peak of the summed heap (the reader cannot
         * compute it); full captures: the reader computes it. */
        if (run->m->flags & MR_FLAG_AGGREGATED)
            peak = run->peak_heap;
        rc = mr_writer_trailer(&run->w, end, total, peak, (unsigned)flags);
        if (rc < 0)
            return run_error(run, rc, "writing the merged capture: %s", strerror(-rc));
        run->finished = 1;
        return 0;
    }
    if (run->process != run->in[best].number || run->process == 0) {
        if ((rc = switch_to(run, best)) < 0)
            return run_error(run, rc, "writing the merged capture: %s", strerror(-rc));
    }
    while ((rc = copy_record(run, best)) > 0)
        ;
    return rc < 0 ? rc : 1;
}

int mr_merge_write(mr_merge_t *m, const char *path, int overwrite, char *err, size_t errlen)
{
    merge_run_t *run;
    int rc = run_new(m, &run, err, errlen);
    if (rc < 0)
        return rc;
    mr_sink_t *sink;
    if ((rc = mr_sink_open_file(path, overwrite, 1, &sink)) < 0) {
        set_err(err, errlen, "cannot write %s: %s", path, strerror(-rc));
        run_free(run);
        return rc;
    }
    if ((rc = run_start(run, sink)) < 0) { /* the writer owns the sink either way */
        mr_writer_abandon(&run->w);
        goto out;
    }
    while ((rc = run_step(run)) > 0)
        ;
    int crc = mr_writer_close(&run->w);
    if (rc == 0 && crc < 0)
        rc = run_error(run, crc, "writing %s: %s", path, strerror(-crc));
out:
    if (rc < 0) {
        set_err(err, errlen, "%s", run->err);
        unlink(path);
    }
    run_free(run);
    return rc;
}

/* ---- streaming ------------------------------------------------------------ */

static int stage_put(void *ctx, const uint8_t *p, size_t n)
{
    merge_run_t *run = ctx;
    if (run->stage_pos > 0 && run->stage_pos == run->stage_len)
        run->stage_pos = run->stage_len = 0;
    if (mr_grow_array((void **)&run->stage, &run->stage_cap, run->stage_len + n, 1) < 0)
        return -ENOMEM;
    memcpy(run->stage + run->stage_len, p, n);
    run->stage_len += n;
    return 0;
}

static ssize_t stream_gen(void *ctx, uint8_t *dst, size_t len, char *detail, size_t detail_len)
{
    merge_run_t *run = ctx;
    while (run->stage_len == run->stage_pos && mr_writer_is_open(&run->w)) {
        int rc = run_step(run);
        if (rc == 0)
            rc = mr_writer_close(&run->w); /* hands the last bytes on */
        else if (rc > 0)
            rc = mr_writer_flush(&run->w);
        if (rc < 0) {
            if (run->err[0] == '\0')
                run_error(run, rc, "merging: %s", strerror(-rc));
            snprintf(detail, detail_len, "%s", run->err);
            mr_writer_abandon(&run->w);
            return -EBADMSG;
        }
    }
    size_t n = run->stage_len - run->stage_pos;
    if (n > len)
        n = len;
    memcpy(dst, run->stage + run->stage_pos, n);
    run->stage_pos += n;
    return (ssize_t)n;
}

static void stream_free(void *ctx)
{
    merge_run_t *run = ctx;
    mr_merge_t *m = run->m;
    mr_writer_abandon(&run->w);
    run_free(run);
    mr_merge_release(m);
}

int mr_merge_reader(mr_merge_t *m, mr_reader_t **out, char *err, size_t errlen)
{
    merge_run_t *run;
    int rc = run_new(m, &run, err, errlen);
    if (rc < 0)
        return rc;
    mr_sink_t *sink;
    if ((rc = mr_sink_open_callback(stage_put, run, &sink)) < 0) {
        set_err(err, errlen, "out of memory");
        run_free(run);
        return rc;
    }
    if ((rc = run_start(run, sink)) < 0) { /* the writer owns the sink either way */
        set_err(err, errlen, "%s", run->err);
        mr_writer_abandon(&run->w);
        run_free(run);
        return rc;
    }
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_ACQ_REL);
    mr_source_t *src;
    if ((rc = mr_source_open_gen(&src, stream_gen, stream_free, run)) < 0) {
        set_err(err, errlen, "out of memory");
        return rc;
    }
    return mr_reader_open_source(out, src, err, errlen);
}
