/* writer.c: turns events into the records of format.h. Owns the delta state
 * and id counters; no locking (the caller's), no I/O beyond the sink. */
#include "writer.h"

#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "format.h"

/* Room for one fixed-size record: a tag and at most 8 varints. */
#define REC_MAX (1 + 8 * MR_VARINT_MAX)

int mr_writer_init(mr_writer_t *w, mr_sink_t *sink, const mr_header_info_t *info)
{
    uint8_t h[MR_HEADER_SIZE] = {0};
    *w = (mr_writer_t){.sink = sink, .flags = info->flags};
    memcpy(h + MR_HOFF_MAGIC, MR_MAGIC, MR_MAGIC_LEN);
    mr_put_u16(h + MR_HOFF_VERSION, MR_FORMAT_VERSION);
    mr_put_u16(h + MR_HOFF_FLAGS, info->flags);
    h[MR_HOFF_PYALLOC] = info->python_allocator;
    mr_put_u32(h + MR_HOFF_PID, info->pid);
    mr_put_u32(h + MR_HOFF_MAIN_TID, info->main_tid);
    mr_put_u64(h + MR_HOFF_START_MS, info->start_ms);
    mr_put_u32(h + MR_HOFF_PY_HEXVERSION, info->py_hexversion);
    mr_put_u32(h + MR_HOFF_INTERVAL_MS, info->interval_ms);
    mr_put_u32(h + MR_HOFF_CMDLINE_LEN, (uint32_t)info->command_line_len);
    mr_put_u32(h + MR_HOFF_PARENT_PID, info->parent_pid);
    int rc = mr_sink_write(sink, h, sizeof h);
    if (rc == 0 && info->command_line_len > 0)
        rc = mr_sink_write(sink, info->command_line, info->command_line_len);
    if (rc == 0 && (info->flags & MR_FLAG_SAMPLED)) {
        uint8_t body[MR_VARINT_MAX];
        size_t n = (size_t)(mr_put_uvarint(body, info->sample_every) - body);
        rc = mr_writer_ext(w, MR_EXT_SAMPLING, body, n);
    }
    return rc;
}

int mr_writer_is_open(const mr_writer_t *w)
{
    return w->sink != NULL;
}

uint64_t mr_writer_size(const mr_writer_t *w)
{
    return w->sink != NULL ? mr_sink_size(w->sink) : 0;
}

int mr_writer_flush(mr_writer_t *w)
{
    return w->sink != NULL ? mr_sink_flush(w->sink) : 0;
}

int mr_writer_close(mr_writer_t *w)
{
    int rc = w->sink != NULL ? mr_sink_close(w->sink) : 0;
    w->sink = NULL;
    return rc;
}

void mr_writer_abandon(mr_writer_t *w)
{
    if (w->sink != NULL)
        mr_sink_abandon(w->sink);
    w->sink = NULL;
}

/* Every record leaves through here, whole, in one sink write. Checked: the
 * owner's lock is held, the record fits the buffer it was encoded in, and it
 * starts with a tag of a known kind (a zero byte would end the stream for a
 * reader). */
static int emit(mr_writer_t *w, const uint8_t *rec, size_t n, size_t cap)
{
    MR_ASSERT(w->lock == NULL || mr_mutex_held(w->lock));
    MR_ASSERT(w->sink != NULL);
    MR_ASSERT(n >= 1 && n <= cap);
    MR_ASSERT(MR_TAG_TYPE(rec[0]) != MR_REC_ZERO && MR_TAG_TYPE(rec[0]) <= MR_REC_LAST);
    return mr_sink_write(w->sink, rec, n);
}

static uint8_t *put_thread_switch(mr_writer_t *w, uint8_t *p, uint32_t tid)
{
    if (tid != w->tid) {
        *p++ = MR_TAG(MR_REC_THREAD, 0);
        p = mr_put_uvarint(p, tid);
        w->tid = tid;
    }
    return p;
}

/* The thread switch and the event go out in two sink writes, each a whole
 * record, so a killed writer never leaves half of either. */
int mr_writer_alloc(mr_writer_t *w, uint32_t tid, unsigned allocator, uint64_t addr, uint64_t size,
                    uint64_t stack, uint64_t native)
{
    uint8_t buf[REC_MAX + 1 + MR_VARINT_MAX];
    uint8_t *p = buf;
    if (tid != w->tid) {
        p = put_thread_switch(w, p, tid);
        int rc = emit(w, buf, (size_t)(p - buf), sizeof buf);
        if (rc < 0)
            return rc;
        p = buf;
    }
    *p++ = MR_TAG(MR_REC_ALLOC, allocator);
    p = mr_put_svarint(p, (int64_t)(addr - w->addr));
    p = mr_put_uvarint(p, size);
    p = mr_put_svarint(p, (int64_t)(stack - w->stack));
    if (w->flags & MR_FLAG_NATIVE) {
        p = mr_put_svarint(p, (int64_t)(native - w->native));
        w->native = native;
    }
    w->addr = addr;
    w->stack = stack;
    w->n_allocs++;
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}

int mr_writer_free(mr_writer_t *w, uint32_t tid, unsigned allocator, uint64_t addr, uint64_t len)
{
    uint8_t buf[REC_MAX];
    uint8_t *p = buf;
    if (tid != w->tid) {
        p = put_thread_switch(w, p, tid);
        int rc = emit(w, buf, (size_t)(p - buf), sizeof buf);
        if (rc < 0)
            return rc;
        p = buf;
    }
    *p++ = MR_TAG(MR_REC_FREE, allocator);
    p = mr_put_svarint(p, (int64_t)(addr - w->addr));
    if (allocator == MR_MUNMAP)
        p = mr_put_uvarint(p, len);
    w->addr = addr;
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}

/* Writes a record made of a small head followed by strings: one sink write,
 * so the record is whole or absent. Strings longer than fit are cut: a record
 * is at most this big (names and paths are far shorter in practice). */
#define STR_REC_MAX 8192

static size_t put_string(uint8_t *p, const char *s, size_t len, size_t room)
{
    if (len > room - MR_VARINT_MAX)
        len = room - MR_VARINT_MAX;
    uint8_t *q = mr_put_uvarint(p, len);
    memcpy(q, s, len);
    return (size_t)(q - p) + len;
}

int mr_writer_code(mr_writer_t *w, const char *name, size_t name_len, const char *file,
                   size_t file_len, uint32_t first_line, uint64_t *id)
{
    uint8_t buf[STR_REC_MAX];
    size_t n = 0;
    buf[n++] = MR_TAG(MR_REC_CODE, 0);
    n += put_string(buf + n, name, name_len, (STR_REC_MAX - 2 * MR_VARINT_MAX) / 2);
    n += put_string(buf + n, file, file_len, STR_REC_MAX - n - MR_VARINT_MAX);
    n = (size_t)(mr_put_uvarint(buf + n, first_line) - buf);
    int rc = emit(w, buf, n, sizeof buf);
    if (rc == 0)
        *id = ++w->n_codes;
    return rc;
}

static int write_pair(mr_writer_t *w, unsigned type, unsigned arg, uint64_t a, uint64_t b)
{
    uint8_t buf[1 + 2 * MR_VARINT_MAX];
    uint8_t *p = buf;
    *p++ = MR_TAG(type, arg);
    p = mr_put_uvarint(p, a);
    p = mr_put_uvarint(p, b);
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}

int mr_writer_frame(mr_writer_t *w, uint64_t code, uint32_t line, uint64_t *id)
{
    int rc = write_pair(w, MR_REC_FRAME, 0, code, line);
    if (rc == 0)
        *id = ++w->n_frames;
    return rc;
}

int mr_writer_node(mr_writer_t *w, uint64_t parent, uint64_t frame, int entry, uint64_t *id)
{
    int rc = write_pair(w, MR_REC_NODE, entry ? MR_NODE_ENTRY : 0, parent, frame);
    if (rc == 0)
        *id = ++w->n_nodes;
    return rc;
}

int mr_writer_native_node(mr_writer_t *w, uint64_t parent, uint64_t ip, uint64_t *id)
{
    int rc = write_pair(w, MR_REC_NATIVE_NODE, 0, parent, ip);
    if (rc == 0)
        *id = ++w->n_native_nodes;
    return rc;
}

int mr_writer_mappings(mr_writer_t *w, uint64_t generation, const mr_mapping_entry_t *entries,
                       size_t n)
{
    /* One sink write for the whole map: it is whole or absent. */
    size_t cap = 1 + 2 * MR_VARINT_MAX;
    for (size_t i = 0; i < n; i++)
        cap += 6 * MR_VARINT_MAX + entries[i].path_len + entries[i].build_id_len;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    uint8_t *p = buf;
    *p++ = MR_TAG(MR_REC_MAPPINGS, 0);
    p = mr_put_uvarint(p, generation);
    p = mr_put_uvarint(p, n);
    for (size_t i = 0; i < n; i++) {
        const mr_mapping_entry_t *e = &entries[i];
        p = mr_put_uvarint(p, e->path_len);
        memcpy(p, e->path, e->path_len);
        p += e->path_len;
        p = mr_put_uvarint(p, e->bias);
        p = mr_put_uvarint(p, e->lo);
        p = mr_put_uvarint(p, e->hi);
        p = mr_put_uvarint(p, e->build_id_len);
        if (e->build_id_len)
            memcpy(p, e->build_id, e->build_id_len);
        p += e->build_id_len;
    }
    int rc = emit(w, buf, (size_t)(p - buf), cap);
    free(buf);
    return rc;
}

int mr_writer_thread_name(mr_writer_t *w, uint32_t tid, const char *name, size_t len)
{
    uint8_t buf[1 + 2 * MR_VARINT_MAX + 256];
    uint8_t *p = buf;
    *p++ = MR_TAG(MR_REC_THREAD_NAME, 0);
    p = mr_put_uvarint(p, tid);
    p += put_string(p, name, len, 256 + MR_VARINT_MAX);
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}

int mr_writer_memory(mr_writer_t *w, uint64_t ms, uint64_t rss, int has_heap, uint64_t heap)
{
    return mr_writer_memory_split(w, ms, rss, has_heap, heap, NULL);
}

int mr_writer_memory_split(mr_writer_t *w, uint64_t ms, uint64_t rss, int has_heap, uint64_t heap,
                           const mr_mem_split_t *split)
{
    uint8_t buf[1 + 7 * MR_VARINT_MAX];
    uint8_t *p = buf;
    unsigned arg = (has_heap ? MR_MEMORY_HAS_HEAP : 0) | (split ? MR_MEMORY_HAS_SPLIT : 0);
    *p++ = MR_TAG(MR_REC_MEMORY, arg);
    p = mr_put_uvarint(p, ms);
    p = mr_put_uvarint(p, rss);
    if (has_heap)
        p = mr_put_uvarint(p, heap);
    if (split) {
        p = mr_put_uvarint(p, split->anon);
        p = mr_put_uvarint(p, split->file);
        p = mr_put_uvarint(p, split->shmem);
        p = mr_put_uvarint(p, split->mapped);
    }
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}

int mr_writer_agg(mr_writer_t *w, uint32_t tid, unsigned allocator, uint64_t stack, uint64_t native,
                  uint64_t peak_n, uint64_t peak_bytes, uint64_t leak_n, uint64_t leak_bytes)
{
    uint8_t buf[REC_MAX];
    uint8_t *p = buf;
    *p++ = MR_TAG(MR_REC_AGG, 0);
    p = mr_put_uvarint(p, tid);
    p = mr_put_uvarint(p, allocator);
    p = mr_put_uvarint(p, stack);
    p = mr_put_uvarint(p, native);
    p = mr_put_uvarint(p, peak_n);
    p = mr_put_uvarint(p, peak_bytes);
    p = mr_put_uvarint(p, leak_n);
    p = mr_put_uvarint(p, leak_bytes);
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}

int mr_writer_ext(mr_writer_t *w, unsigned kind, const uint8_t *body, size_t len)
{
    uint8_t head[1 + MR_VARINT_MAX];
    size_t cap = sizeof head + len;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    uint8_t *p = buf;
    *p++ = MR_TAG(MR_REC_EXT, kind);
    p = mr_put_uvarint(p, len);
    if (len > 0)
        memcpy(p, body, len);
    p += len;
    int rc = emit(w, buf, (size_t)(p - buf), cap);
    free(buf);
    return rc;
}

int mr_writer_pad(mr_writer_t *w, size_t n)
{
    uint8_t buf[256] = {0};
    if (n < 2)
        n = 2;
    if (n > sizeof buf)
        n = sizeof buf;
    /* tag + one-byte length + body: the body length fits one varint byte. */
    buf[0] = MR_TAG(MR_REC_PAD, 0);
    buf[1] = (uint8_t)(n - 2);
    return emit(w, buf, n, sizeof buf);
}

int mr_writer_process(mr_writer_t *w, uint32_t number, const mr_process_info_t *define)
{
    size_t cmd_len = define != NULL ? define->command_line_len : 0;
    if (cmd_len > MR_MAX_STRING)
        cmd_len = MR_MAX_STRING;
    size_t cap = 1 + 6 * MR_VARINT_MAX + cmd_len;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    uint8_t *p = buf;
    if (define != NULL) {
        *p++ = MR_TAG(MR_REC_PROCESS, MR_PROCESS_DEFINE);
        p = mr_put_uvarint(p, define->pid);
        p = mr_put_uvarint(p, define->parent_pid);
        p = mr_put_uvarint(p, define->start_offset_ms);
        p = mr_put_uvarint(p, define->py_hexversion);
        p = mr_put_uvarint(p, cmd_len);
        memcpy(p, define->command_line, cmd_len);
        p += cmd_len;
    } else {
        *p++ = MR_TAG(MR_REC_PROCESS, 0);
        p = mr_put_uvarint(p, number);
    }
    int rc = emit(w, buf, (size_t)(p - buf), cap);
    free(buf);
    if (rc == 0)
        w->tid = 0; /* a reader resets its thread on a switch */
    return rc;
}

int mr_writer_process_exit(mr_writer_t *w, uint32_t number)
{
    uint8_t buf[1 + MR_VARINT_MAX];
    uint8_t *p = buf;
    *p++ = MR_TAG(MR_REC_PROCESS, MR_PROCESS_EXIT);
    p = mr_put_uvarint(p, number);
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}

int mr_writer_trailer(mr_writer_t *w, uint64_t ms, uint64_t total_allocs, uint64_t peak,
                      unsigned flags)
{
    uint8_t buf[1 + 4 * MR_VARINT_MAX];
    uint8_t *p = buf;
    *p++ = MR_TAG(MR_REC_TRAILER, 0);
    p = mr_put_uvarint(p, ms);
    p = mr_put_uvarint(p, total_allocs);
    p = mr_put_uvarint(p, peak);
    p = mr_put_uvarint(p, flags);
    return emit(w, buf, (size_t)(p - buf), sizeof buf);
}
