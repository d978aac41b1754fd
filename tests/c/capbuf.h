/* capbuf.h: building capture bytes by hand for the reader and aggregate
 * tests, record by record with format.h's helpers, and writing them to a
 * temporary file (plain or as one zstd frame). Test-only; aborts on OOM. */
#ifndef MR_TEST_CAPBUF_H
#define MR_TEST_CAPBUF_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "format.h"

typedef struct capbuf {
    uint8_t *d;
    size_t len, cap;
    uint16_t flags;
} capbuf_t;

static inline void cb_reserve(capbuf_t *b, size_t n)
{
    if (b->len + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    b->d = realloc(b->d, cap);
    if (b->d == NULL)
        abort();
    b->cap = cap;
}

static inline void cb_bytes(capbuf_t *b, const void *p, size_t n)
{
    cb_reserve(b, n);
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

static inline void cb_u8(capbuf_t *b, uint8_t v)
{
    cb_bytes(b, &v, 1);
}

static inline void cb_uv(capbuf_t *b, uint64_t v)
{
    cb_reserve(b, MR_VARINT_MAX);
    b->len = (size_t)(mr_put_uvarint(b->d + b->len, v) - b->d);
}

static inline void cb_sv(capbuf_t *b, int64_t v)
{
    cb_reserve(b, MR_VARINT_MAX);
    b->len = (size_t)(mr_put_svarint(b->d + b->len, v) - b->d);
}

static inline void cb_str(capbuf_t *b, const char *s)
{
    cb_uv(b, strlen(s));
    cb_bytes(b, s, strlen(s));
}

/* A header like the writer's; version and the reserved field as given. */
static inline void cb_header_full(capbuf_t *b, uint16_t version, uint16_t flags, const char *cmd)
{
    uint8_t h[MR_HEADER_SIZE] = {0};
    memcpy(h + MR_HOFF_MAGIC, MR_MAGIC, MR_MAGIC_LEN);
    mr_put_u16(h + MR_HOFF_VERSION, version);
    mr_put_u16(h + MR_HOFF_FLAGS, flags);
    h[MR_HOFF_PYALLOC] = MR_PYALLOC_PYMALLOC;
    mr_put_u32(h + MR_HOFF_PID, 4242);
    mr_put_u32(h + MR_HOFF_MAIN_TID, 7);
    mr_put_u64(h + MR_HOFF_START_MS, 1700000000000ull);
    mr_put_u32(h + MR_HOFF_PY_HEXVERSION, 0x030B07F0);
    mr_put_u32(h + MR_HOFF_INTERVAL_MS, 10);
    mr_put_u32(h + MR_HOFF_CMDLINE_LEN, (uint32_t)strlen(cmd));
    cb_bytes(b, h, sizeof h);
    cb_bytes(b, cmd, strlen(cmd));
    b->flags = flags;
}

static inline void cb_header(capbuf_t *b, uint16_t flags)
{
    cb_header_full(b, MR_FORMAT_VERSION, flags, "python prog.py");
}

/* Records. Deltas are the caller's business in cb_alloc_raw; the stateful
 * helpers below keep the stream's previous address/stack/native. */
typedef struct cbstate {
    uint64_t addr, stack, native;
    uint32_t tid;
} cbstate_t;

static inline void cb_thread(capbuf_t *b, cbstate_t *s, uint32_t tid)
{
    cb_u8(b, MR_TAG(MR_REC_THREAD, 0));
    cb_uv(b, tid);
    s->tid = tid;
}

static inline void cb_alloc(capbuf_t *b, cbstate_t *s, uint32_t tid, unsigned allocator,
                            uint64_t addr, uint64_t size, uint64_t stack, uint64_t native)
{
    if (tid != s->tid)
        cb_thread(b, s, tid);
    cb_u8(b, MR_TAG(MR_REC_ALLOC, allocator));
    cb_sv(b, (int64_t)(addr - s->addr));
    cb_uv(b, size);
    cb_sv(b, (int64_t)(stack - s->stack));
    if (b->flags & MR_FLAG_NATIVE) {
        cb_sv(b, (int64_t)(native - s->native));
        s->native = native;
    }
    s->addr = addr;
    s->stack = stack;
}

static inline void cb_free(capbuf_t *b, cbstate_t *s, uint32_t tid, unsigned allocator,
                           uint64_t addr, uint64_t len)
{
    if (tid != s->tid)
        cb_thread(b, s, tid);
    cb_u8(b, MR_TAG(MR_REC_FREE, allocator));
    cb_sv(b, (int64_t)(addr - s->addr));
    if (allocator == MR_MUNMAP)
        cb_uv(b, len);
    s->addr = addr;
}

static inline void cb_code(capbuf_t *b, const char *name, const char *file, uint64_t first_line)
{
    cb_u8(b, MR_TAG(MR_REC_CODE, 0));
    cb_str(b, name);
    cb_str(b, file);
    cb_uv(b, first_line);
}

static inline void cb_pair(capbuf_t *b, unsigned type, unsigned arg, uint64_t x, uint64_t y)
{
    cb_u8(b, MR_TAG(type, arg));
    cb_uv(b, x);
    cb_uv(b, y);
}

static inline void cb_frame(capbuf_t *b, uint64_t code, uint64_t line)
{
    cb_pair(b, MR_REC_FRAME, 0, code, line);
}

static inline void cb_node(capbuf_t *b, uint64_t parent, uint64_t frame, int entry)
{
    cb_pair(b, MR_REC_NODE, entry ? MR_NODE_ENTRY : 0, parent, frame);
}

static inline void cb_native_node(capbuf_t *b, uint64_t parent, uint64_t ip)
{
    cb_pair(b, MR_REC_NATIVE_NODE, 0, parent, ip);
}

static inline void cb_thread_name(capbuf_t *b, uint32_t tid, const char *name)
{
    cb_u8(b, MR_TAG(MR_REC_THREAD_NAME, 0));
    cb_uv(b, tid);
    cb_str(b, name);
}

static inline void cb_memory(capbuf_t *b, uint64_t ms, uint64_t rss, int has_heap, uint64_t heap)
{
    cb_u8(b, MR_TAG(MR_REC_MEMORY, has_heap ? MR_MEMORY_HAS_HEAP : 0));
    cb_uv(b, ms);
    cb_uv(b, rss);
    if (has_heap)
        cb_uv(b, heap);
}

/* MEMORY with MR_MEMORY_HAS_SPLIT: anon, file, shmem, mapped (and the heap
 * when has_heap). */
static inline void cb_memory_split(capbuf_t *b, uint64_t ms, uint64_t rss, int has_heap,
                                   uint64_t heap, uint64_t anon, uint64_t file, uint64_t shmem,
                                   uint64_t mapped)
{
    cb_u8(b, MR_TAG(MR_REC_MEMORY, (has_heap ? MR_MEMORY_HAS_HEAP : 0) | MR_MEMORY_HAS_SPLIT));
    cb_uv(b, ms);
    cb_uv(b, rss);
    if (has_heap)
        cb_uv(b, heap);
    cb_uv(b, anon);
    cb_uv(b, file);
    cb_uv(b, shmem);
    cb_uv(b, mapped);
}

static inline void cb_agg(capbuf_t *b, uint32_t tid, unsigned allocator, uint64_t stack,
                          uint64_t native, uint64_t pn, uint64_t pb, uint64_t ln, uint64_t lb)
{
    cb_u8(b, MR_TAG(MR_REC_AGG, 0));
    uint64_t v[8] = {tid, allocator, stack, native, pn, pb, ln, lb};
    for (int i = 0; i < 8; i++)
        cb_uv(b, v[i]);
}

static inline void cb_trailer(capbuf_t *b, uint64_t ms, uint64_t total, uint64_t peak,
                              uint64_t flags)
{
    cb_u8(b, MR_TAG(MR_REC_TRAILER, 0));
    cb_uv(b, ms);
    cb_uv(b, total);
    cb_uv(b, peak);
    cb_uv(b, flags);
}

static char cb_dir[64];

static inline const char *cb_path(const char *name)
{
    /* A few rotating buffers, so two paths can be in use at once. */
    static char paths[4][256];
    static unsigned next;
    char *path = paths[next++ % 4];
    if (cb_dir[0] == '\0') {
        strcpy(cb_dir, "/tmp/mr-test-capture-XXXXXX");
        if (mkdtemp(cb_dir) == NULL)
            abort();
    }
    snprintf(path, 256, "%s/%s", cb_dir, name);
    return path;
}

static inline void cb_write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || (n > 0 && fwrite(d, 1, n, f) != n))
        abort();
    fclose(f);
}

/* Writes the first n bytes of b to a file in the test directory; returns its path. */
static inline const char *cb_save(const capbuf_t *b, size_t n, const char *name)
{
    const char *path = cb_path(name);
    cb_write_file(path, b->d, n);
    return path;
}

/* The same bytes as one zstd frame; returns the compressed size. */
static inline size_t cb_save_zstd(const capbuf_t *b, size_t n, const char *name,
                                  const char **path_out)
{
    size_t bound = ZSTD_compressBound(n);
    void *z = malloc(bound);
    size_t zn = ZSTD_compress(z, bound, b->d, n, 3);
    if (ZSTD_isError(zn))
        abort();
    *path_out = cb_path(name);
    cb_write_file(*path_out, z, zn);
    free(z);
    return zn;
}

static inline void cb_cleanup(void)
{
    if (cb_dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", cb_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", cb_dir);
    }
}

#endif
