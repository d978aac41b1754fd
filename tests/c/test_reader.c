/* test_reader.c: the decoder and the byte source on hand-built captures:
 * every record type decoded with exact fields and tables; bad headers,
 * corrupt records, overlong strings and out-of-range ids give the specified
 * errors; cut-off files and zero fill end cleanly at the last whole record;
 * zstd-compressed input reads identically; random bytes never crash. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capbuf.h"
#include "ctest.h"
#include "format.h"
#include "reader.h"
#include "source.h"

static char err[MR_READER_ERRLEN];

static mr_reader_t *open_bytes(const capbuf_t *b, size_t n, int *rc_out)
{
    mr_reader_t *r = NULL;
    const char *path = cb_save(b, n, "cap.bin");
    err[0] = '\0';
    int rc = mr_reader_open(&r, path, err, sizeof err);
    if (rc_out != NULL)
        *rc_out = rc;
    return rc == 0 ? r : NULL;
}

/* Reads every event; returns the final mr_reader_next code. */
static int drain(mr_reader_t *r, uint64_t *events)
{
    mr_event_t ev;
    int rc;
    uint64_t n = 0;
    while ((rc = mr_reader_next(r, &ev)) > 0)
        n++;
    if (events != NULL)
        *events = n;
    return rc;
}

/* A capture using every record type, native traces on. */
static void build_full(capbuf_t *b)
{
    cbstate_t s = {0};
    cb_header(b, MR_FLAG_NATIVE | MR_FLAG_PYALLOC);
    uint8_t maps_tag = MR_TAG(MR_REC_MAPPINGS, 0);
    cb_bytes(b, &maps_tag, 1);
    cb_uv(b, 1); /* generation */
    cb_uv(b, 2); /* objects */
    cb_str(b, "");
    cb_uv(b, 0x400000);
    cb_uv(b, 0x400000);
    cb_uv(b, 0x480000);
    cb_uv(b, 2);
    cb_bytes(b, "\xab\xcd", 2);
    cb_str(b, "/lib/libc.so.6");
    cb_uv(b, 0x7f0000000000);
    cb_uv(b, 0x7f0000001000);
    cb_uv(b, 0x7f0000200000);
    cb_uv(b, 0);
    cb_code(b, "outer", "a.py", 1);       /* code 1 */
    cb_code(b, "inner", "b.py", 10);      /* code 2 */
    cb_frame(b, 1, 5);                    /* frame 1 */
    cb_frame(b, 2, 12);                   /* frame 2 */
    cb_node(b, 0, 1, 1);                  /* node 1: outer:5 (entry) */
    cb_node(b, 1, 2, 0);                  /* node 2: inner:12 <- outer:5 */
    cb_native_node(b, 0, 0x400100);       /* native 1 */
    cb_native_node(b, 1, 0x7f0000001234); /* native 2 */
    cb_thread_name(b, 7, "MainThread");
    cb_alloc(b, &s, 7, MR_MALLOC, 0x1000, 100, 2, 2);
    cb_alloc(b, &s, 7, MR_PYMALLOC_MALLOC, 0x0800, 24, 1, 1);
    cb_memory(b, 5, 1 << 20, 0, 0);
    cb_thread_name(b, 9, "worker");
    cb_alloc(b, &s, 9, MR_MMAP, 0x7000000, 8192, 0, 0);
    cb_free(b, &s, 9, MR_MUNMAP, 0x7000000, 4096);
    cb_free(b, &s, 7, MR_FREE, 0x1000, 0);
    cb_thread_name(b, 9, "renamed");
    cb_memory(b, 15, 2 << 20, 1, 4242);
    cb_agg(b, 9, MR_CALLOC, 2, 1, 3, 300, 1, 100);
    cb_trailer(b, 20, 3, 8324, 0);
}

static void test_header_fields(void)
{
    capbuf_t b = {0};
    build_full(&b);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    const mr_header_t *h = mr_reader_header(r);
    CHECK_EQ(h->version, MR_FORMAT_VERSION);
    CHECK_EQ(h->flags, MR_FLAG_NATIVE | MR_FLAG_PYALLOC);
    CHECK_EQ(h->python_allocator, MR_PYALLOC_PYMALLOC);
    CHECK_EQ(h->pid, 4242);
    CHECK_EQ(h->parent_pid, 0); /* the reserved zero of older captures */
    CHECK_EQ(h->main_tid, 7);
    CHECK_EQ(h->start_ms, 1700000000000ull);
    CHECK_EQ(h->py_hexversion, 0x030B07F0);
    CHECK_EQ(h->interval_ms, 10);
    CHECK_EQ(h->command_line_len, 14);
    CHECK(strcmp(h->command_line, "python prog.py") == 0);
    CHECK_EQ(mr_reader_compressed(r), 0);
    mr_reader_close(r);
    free(b.d);
}

static void test_every_record_raw(void)
{
    capbuf_t b = {0};
    build_full(&b);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    mr_reader_set_raw(r, 1);
    mr_event_t ev;
    static const unsigned expect[] = {
        MR_REC_MAPPINGS,    MR_REC_CODE,        MR_REC_CODE,        MR_REC_FRAME,
        MR_REC_FRAME,       MR_REC_NODE,        MR_REC_NODE,        MR_REC_NATIVE_NODE,
        MR_REC_NATIVE_NODE, MR_REC_THREAD_NAME, MR_REC_THREAD,      MR_REC_ALLOC,
        MR_REC_ALLOC,       MR_REC_MEMORY,      MR_REC_THREAD_NAME, MR_REC_THREAD,
        MR_REC_ALLOC,       MR_REC_FREE,        MR_REC_THREAD,      MR_REC_FREE,
        MR_REC_THREAD_NAME, MR_REC_MEMORY,      MR_REC_AGG,         MR_REC_TRAILER,
    };
    size_t n = 0;
    int rc;
    while ((rc = mr_reader_next(r, &ev)) > 0) {
        CHECK(n < sizeof expect / sizeof *expect);
        if (n >= sizeof expect / sizeof *expect)
            break;
        CHECK_EQ(ev.type, expect[n]);
        switch (n) {
        case 0:
            CHECK_EQ(ev.id, 1);
            CHECK_EQ(ev.a, 2);
            CHECK_EQ(ev.offset, MR_HEADER_SIZE + 14);
            break;
        case 1:
            CHECK_EQ(ev.id, 1);
            break;
        case 4:
            CHECK_EQ(ev.id, 2);
            CHECK_EQ(ev.a, 2);
            CHECK_EQ(ev.b, 12);
            break;
        case 5:
            CHECK_EQ(ev.id, 1);
            CHECK_EQ(ev.arg, MR_NODE_ENTRY);
            break;
        case 6:
            CHECK_EQ(ev.id, 2);
            CHECK_EQ(ev.a, 1);
            CHECK_EQ(ev.b, 2);
            CHECK_EQ(ev.arg, 0);
            break;
        case 8:
            CHECK_EQ(ev.id, 2);
            CHECK_EQ(ev.a, 1);
            CHECK_EQ(ev.b, 0x7f0000001234);
            break;
        case 9:
            CHECK_EQ(ev.tid, 7);
            CHECK(ev.str_len == 10 && strcmp(ev.str, "MainThread") == 0);
            break;
        case 10:
            CHECK_EQ(ev.tid, 7);
            break;
        case 11:
            CHECK_EQ(ev.tid, 7);
            CHECK_EQ(ev.allocator, MR_MALLOC);
            CHECK_EQ(ev.addr, 0x1000);
            CHECK_EQ(ev.size, 100);
            CHECK_EQ(ev.stack, 2);
            CHECK_EQ(ev.native, 2);
            CHECK_EQ(ev.generation, 1);
            break;
        case 12:
            CHECK_EQ(ev.allocator, MR_PYMALLOC_MALLOC);
            CHECK_EQ(ev.addr, 0x800);
            CHECK_EQ(ev.size, 24);
            CHECK_EQ(ev.stack, 1);
            CHECK_EQ(ev.native, 1);
            break;
        case 13:
            CHECK_EQ(ev.ms, 5);
            CHECK_EQ(ev.rss, 1 << 20);
            CHECK_EQ(ev.has_heap, 0);
            break;
        case 16:
            CHECK_EQ(ev.tid, 9);
            CHECK_EQ(ev.allocator, MR_MMAP);
            CHECK_EQ(ev.addr, 0x7000000);
            CHECK_EQ(ev.size, 8192);
            CHECK_EQ(ev.stack, 0);
            CHECK_EQ(ev.native, 0);
            break;
        case 17:
            CHECK_EQ(ev.tid, 9);
            CHECK_EQ(ev.allocator, MR_MUNMAP);
            CHECK_EQ(ev.addr, 0x7000000);
            CHECK_EQ(ev.size, 4096);
            break;
        case 19:
            CHECK_EQ(ev.tid, 7);
            CHECK_EQ(ev.allocator, MR_FREE);
            CHECK_EQ(ev.addr, 0x1000);
            CHECK_EQ(ev.size, 0);
            break;
        case 21:
            CHECK_EQ(ev.has_heap, 1);
            CHECK_EQ(ev.heap, 4242);
            CHECK_EQ(ev.rss, 2 << 20);
            break;
        case 22:
            CHECK_EQ(ev.tid, 9);
            CHECK_EQ(ev.allocator, MR_CALLOC);
            CHECK_EQ(ev.stack, 2);
            CHECK_EQ(ev.native, 1);
            CHECK_EQ(ev.peak_n, 3);
            CHECK_EQ(ev.peak_bytes, 300);
            CHECK_EQ(ev.leak_n, 1);
            CHECK_EQ(ev.leak_bytes, 100);
            CHECK_EQ(ev.generation, 1);
            break;
        case 23:
            CHECK_EQ(ev.ms, 20);
            CHECK_EQ(ev.a, 3);
            CHECK_EQ(ev.b, 8324);
            CHECK_EQ(ev.flags, 0);
            break;
        }
        n++;
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(n, sizeof expect / sizeof *expect);
    CHECK_EQ(mr_reader_end(r), MR_END_TRAILER);
    CHECK_EQ(mr_reader_next(r, &ev), 0); /* stays ended */

    /* Tables. */
    const mr_code_t *c = mr_reader_code(r, 2);
    CHECK(c != NULL && strcmp(c->name, "inner") == 0 && strcmp(c->file, "b.py") == 0);
    CHECK(c != NULL && c->first_line == 10);
    CHECK(mr_reader_code(r, 0) == NULL);
    CHECK(mr_reader_code(r, 3) == NULL);
    uint64_t x, y;
    int entry;
    CHECK_EQ(mr_reader_frame(r, 2, &x, &y), 0);
    CHECK_EQ(x, 2);
    CHECK_EQ(y, 12);
    CHECK_EQ(mr_reader_frame(r, 3, &x, &y), -ENOENT);
    CHECK_EQ(mr_reader_node(r, 1, &x, &y, &entry), 0);
    CHECK_EQ(x, 0);
    CHECK_EQ(y, 1);
    CHECK_EQ(entry, 1);
    CHECK_EQ(mr_reader_native_node(r, 2, &x, &y), 0);
    CHECK_EQ(x, 1);
    CHECK_EQ(y, 0x7f0000001234);
    CHECK_EQ(mr_reader_native_node(r, 3, &x, &y), -ENOENT);

    mr_pyframe_loc_t st[8];
    size_t depth = mr_reader_stack(r, 2, st, 8);
    CHECK_EQ(depth, 2);
    CHECK(strcmp(st[0].function, "inner") == 0 && strcmp(st[0].file, "b.py") == 0);
    CHECK_EQ(st[0].line, 12);
    CHECK_EQ(st[0].entry, 0);
    CHECK(strcmp(st[1].function, "outer") == 0);
    CHECK_EQ(st[1].line, 5);
    CHECK_EQ(st[1].entry, 1);
    CHECK_EQ(mr_reader_stack(r, 2, st, 1), 1);
    CHECK_EQ(mr_reader_stack(r, 0, st, 8), 0);
    CHECK_EQ(mr_reader_stack_top_frame(r, 2), 2);
    CHECK_EQ(mr_reader_stack_top_frame(r, 0), 0);

    size_t len;
    const char *name = mr_reader_thread_name(r, 9, &len);
    CHECK(name != NULL && strcmp(name, "renamed") == 0 && len == 7);
    name = mr_reader_thread_name(r, 7, &len);
    CHECK(name != NULL && strcmp(name, "MainThread") == 0);
    CHECK(mr_reader_thread_name(r, 8, &len) == NULL);

    size_t nm;
    const mr_mapping_t *m = mr_reader_mappings(r, 1, &nm);
    CHECK_EQ(nm, 2);
    CHECK(m != NULL && m[0].path_len == 0 && m[0].bias == 0x400000 && m[0].lo == 0x400000);
    CHECK(m != NULL && m[0].hi == 0x480000 && m[0].build_id_len == 2 && m[0].build_id[0] == 0xab);
    CHECK(m != NULL && strcmp(m[1].path, "/lib/libc.so.6") == 0 && m[1].build_id_len == 0);
    CHECK(mr_reader_mappings(r, 2, &nm) == NULL);

    const mr_trailer_t *t = mr_reader_trailer(r);
    CHECK(t != NULL && t->ms == 20 && t->total_allocs == 3 && t->peak == 8324);
    CHECK_EQ(mr_reader_count(r, MR_REC_ALLOC), 3);
    CHECK_EQ(mr_reader_count(r, MR_REC_FREE), 2);
    CHECK_EQ(mr_reader_count(r, MR_REC_FRAME), 2);
    CHECK_EQ(mr_reader_count(r, MR_REC_THREAD_NAME), 3);
    CHECK_EQ(mr_reader_count(r, MR_REC_MEMORY), 2);
    CHECK_EQ(mr_reader_offset(r), b.len);
    mr_reader_close(r);
    free(b.d);
}

static void test_quiet_mode_returns_only_events(void)
{
    capbuf_t b = {0};
    build_full(&b);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    mr_event_t ev;
    unsigned seen[16] = {0};
    int rc;
    while ((rc = mr_reader_next(r, &ev)) > 0)
        seen[ev.type]++;
    CHECK_EQ(rc, 0);
    CHECK_EQ(seen[MR_REC_ALLOC], 3);
    CHECK_EQ(seen[MR_REC_FREE], 2);
    CHECK_EQ(seen[MR_REC_MEMORY], 2);
    CHECK_EQ(seen[MR_REC_AGG], 1);
    CHECK_EQ(seen[MR_REC_TRAILER], 1);
    CHECK_EQ(seen[MR_REC_CODE] + seen[MR_REC_FRAME] + seen[MR_REC_NODE] + seen[MR_REC_THREAD] +
                 seen[MR_REC_THREAD_NAME] + seen[MR_REC_NATIVE_NODE] + seen[MR_REC_MAPPINGS],
             0);
    mr_reader_close(r);
    free(b.d);
}

/* Opening b must fail with code and a message containing text. */
static void expect_open_error(const capbuf_t *b, size_t n, int code, const char *text)
{
    int rc;
    mr_reader_t *r = open_bytes(b, n, &rc);
    CHECK(r == NULL);
    CHECK_EQ(rc, code);
    if (strstr(err, text) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err, text);
        CHECK(0);
    }
    mr_reader_close(r);
}

static void test_bad_headers(void)
{
    capbuf_t b = {0};
    expect_open_error(&b, 0, MR_ERR_EMPTY, "capture file is empty");

    cb_bytes(&b, "hello world, this is not a capture file at all.........", 55);
    expect_open_error(&b, b.len, MR_ERR_NOT_CAPTURE, "not a memray capture file");
    b.len = 0;

    cb_header(&b, 0);
    expect_open_error(&b, 5, MR_ERR_NOT_CAPTURE, "truncated capture header (5 of 48");
    expect_open_error(&b, 20, MR_ERR_NOT_CAPTURE, "truncated capture header (20 of 48");
    expect_open_error(&b, MR_HEADER_SIZE + 3, MR_ERR_NOT_CAPTURE, "command line cut off");
    b.len = 0;

    cb_header_full(&b, MR_FORMAT_VERSION + 1, 0, "x");
    expect_open_error(&b, b.len, MR_ERR_NEWER, "written by a newer memray (format version 2)");
    b.len = 0;

    cb_header_full(&b, 0, 0, "x");
    expect_open_error(&b, b.len, MR_ERR_CORRUPT, "corrupt capture at byte 8: format version 0");
    b.len = 0;

    cb_header_full(&b, MR_FORMAT_VERSION, 0x40, "x");
    expect_open_error(&b, b.len, MR_ERR_NEWER, "unknown header flags 0x40");
    b.len = 0;

    cb_header(&b, 0);
    mr_put_u32(b.d + MR_HOFF_CMDLINE_LEN, MR_MAX_STRING + 1);
    expect_open_error(&b, b.len, MR_ERR_CORRUPT, "corrupt capture at byte 40: command line");

    /* A file of zero fill (a writer that died before its header). */
    b.len = 0;
    uint8_t zeros[4096] = {0};
    cb_bytes(&b, zeros, sizeof zeros);
    expect_open_error(&b, b.len, MR_ERR_NOT_CAPTURE, "not a memray capture file");

    int rc;
    mr_reader_t *r = NULL;
    CHECK_EQ(rc = mr_reader_open(&r, "/nonexistent/capture.bin", err, sizeof err), -ENOENT);
    CHECK(strstr(err, "No such file") != NULL);
    free(b.d);
}

/* A valid prefix, then the record under test; reading must fail at its
 * offset with text in the message. */
static void expect_corrupt(void (*add)(capbuf_t *b), const char *text)
{
    capbuf_t b = {0};
    cb_header(&b, 0);
    cb_code(&b, "f", "f.py", 1);
    cb_frame(&b, 1, 2);
    cb_node(&b, 0, 1, 0);
    size_t at = b.len;
    add(&b);
    cb_trailer(&b, 1, 0, 0, 0);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    uint64_t n;
    CHECK_EQ(drain(r, &n), MR_ERR_CORRUPT);
    char want[64];
    snprintf(want, sizeof want, "corrupt capture at byte %zu: ", at);
    const char *msg = mr_reader_error(r);
    if (strstr(msg, want) == NULL || strstr(msg, text) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\" / \"%s\"\n", msg, want, text);
        CHECK(0);
    }
    mr_event_t ev;
    CHECK_EQ(mr_reader_next(r, &ev), MR_ERR_CORRUPT); /* sticky */
    mr_reader_close(r);
    free(b.d);
}

static void add_unknown_tag(capbuf_t *b)
{
    cb_u8(b, 0x0e);
}
static void add_zero_type_with_arg(capbuf_t *b)
{
    cb_u8(b, 0x10);
}
static void add_alloc_bad_stack(capbuf_t *b)
{
    cbstate_t s = {0}; /* tid 0: no THREAD record before the ALLOC */
    cb_alloc(b, &s, 0, MR_MALLOC, 0x10, 8, 2, 0);
}
static void add_alloc_free_allocator(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_ALLOC, MR_FREE));
    cb_sv(b, 16);
    cb_uv(b, 8);
    cb_sv(b, 0);
}
static void add_free_alloc_allocator(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_FREE, MR_MALLOC));
    cb_sv(b, 16);
}
static void add_node_bad_parent(capbuf_t *b)
{
    cb_node(b, 5, 1, 0);
}
static void add_node_bad_frame(capbuf_t *b)
{
    cb_node(b, 1, 9, 0);
}
static void add_node_zero_frame(capbuf_t *b)
{
    cb_node(b, 0, 0, 0);
}
static void add_node_bad_arg(capbuf_t *b)
{
    cb_pair(b, MR_REC_NODE, 2, 0, 1);
}
static void add_frame_bad_code(capbuf_t *b)
{
    cb_frame(b, 2, 1);
}
static void add_native_bad_parent(capbuf_t *b)
{
    cb_native_node(b, 1, 0x1234);
}
static void add_overlong_string(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_CODE, 0));
    cb_uv(b, MR_MAX_STRING + 1);
    cb_bytes(b, "abc", 3);
}
static void add_overlong_thread_name(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_THREAD_NAME, 0));
    cb_uv(b, 1);
    cb_uv(b, (uint64_t)1 << 40);
}
static void add_bad_varint(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_THREAD, 0));
    for (int i = 0; i < 11; i++)
        cb_u8(b, 0x80);
    cb_u8(b, 0x01);
}
static void add_huge_tid(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_THREAD, 0));
    cb_uv(b, (uint64_t)1 << 33);
}
static void add_agg_bad_allocator(capbuf_t *b)
{
    cb_agg(b, 1, MR_MUNMAP, 0, 0, 1, 1, 1, 1);
}
static void add_agg_bad_stack(capbuf_t *b)
{
    cb_agg(b, 1, MR_MALLOC, 7, 0, 1, 1, 1, 1);
}
static void add_memory_bad_arg(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_MEMORY, 4)); /* bits 0x1 (heap) and 0x2 (split) only */
    cb_uv(b, 1);
    cb_uv(b, 1);
}
static void add_mappings_gen0(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_MAPPINGS, 0));
    cb_uv(b, 0);
    cb_uv(b, 0);
}
static void add_mappings_too_many(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_MAPPINGS, 0));
    cb_uv(b, 1);
    cb_uv(b, (uint64_t)1 << 30);
}
static void add_thread_with_arg(capbuf_t *b)
{
    cb_u8(b, MR_TAG(MR_REC_THREAD, 1));
    cb_uv(b, 1);
}

static void test_corrupt_records(void)
{
    expect_corrupt(add_unknown_tag, "unknown record tag 0x0e");
    expect_corrupt(add_zero_type_with_arg, "unknown record tag 0x10");
    expect_corrupt(add_alloc_bad_stack, "ALLOC with undefined stack 2");
    expect_corrupt(add_alloc_free_allocator, "unknown record tag 0x51");
    expect_corrupt(add_free_alloc_allocator, "unknown record tag 0x62");
    expect_corrupt(add_node_bad_parent, "NODE with undefined parent 5");
    expect_corrupt(add_node_bad_frame, "NODE with undefined frame 9");
    expect_corrupt(add_node_zero_frame, "NODE with undefined frame 0");
    expect_corrupt(add_node_bad_arg, "unknown record tag 0x26");
    expect_corrupt(add_frame_bad_code, "FRAME with undefined code 2");
    expect_corrupt(add_native_bad_parent, "NATIVE_NODE with undefined parent 1");
    expect_corrupt(add_overlong_string, "function name of 1048577 bytes");
    expect_corrupt(add_overlong_thread_name, "thread name of 1099511627776 bytes");
    expect_corrupt(add_bad_varint, "malformed varint");
    expect_corrupt(add_huge_tid, "thread id 8589934592 out of range");
    expect_corrupt(add_agg_bad_allocator, "AGG with allocator 15");
    expect_corrupt(add_agg_bad_stack, "AGG with undefined stack 7");
    expect_corrupt(add_memory_bad_arg, "unknown record tag 0x48");
    expect_corrupt(add_mappings_gen0, "MAPPINGS generation 0");
    expect_corrupt(add_mappings_too_many, "MAPPINGS of 1073741824 objects");
    expect_corrupt(add_thread_with_arg, "unknown record tag 0x13");
}

/* Which tags name a record, written out from format.h's table. */
static int tag_is_known(unsigned type, unsigned arg)
{
    switch (type) {
    case MR_REC_ALLOC:
        return arg != 0 && arg != MR_PYMALLOC_FREE && arg != MR_FREE && arg != MR_MUNMAP;
    case MR_REC_FREE:
        return arg == MR_PYMALLOC_FREE || arg == MR_FREE || arg == MR_MUNMAP;
    case MR_REC_NODE:
        return arg == 0 || arg == MR_NODE_ENTRY;
    case MR_REC_MEMORY:
        return (arg & ~(MR_MEMORY_HAS_HEAP | MR_MEMORY_HAS_SPLIT)) == 0;
    case MR_REC_ZERO:
    case MR_REC_THREAD:
    case MR_REC_CODE:
    case MR_REC_FRAME:
    case MR_REC_THREAD_NAME:
    case MR_REC_NATIVE_NODE:
    case MR_REC_MAPPINGS:
    case MR_REC_AGG:
    case MR_REC_PAD:
    case MR_REC_TRAILER:
        return arg == 0;
    case MR_REC_EXT:
        return arg != 0; /* kinds a reader does not know are skipped */
    case MR_REC_PROCESS: /* only in merged captures */
    default:
        return 0;
    }
}

/* Each of the 256 tag bytes, followed by zero bytes: an unknown one fails at
 * its offset as "unknown record tag", whatever kind its low nibble names; a
 * known one never does. */
static void test_every_tag_byte(void)
{
    int refused = 0;
    for (unsigned tag = 0; tag < 256; tag++) {
        capbuf_t b = {0};
        cb_header(&b, MR_FLAG_NATIVE);
        cb_code(&b, "f", "f.py", 1);
        cb_frame(&b, 1, 2);
        cb_node(&b, 0, 1, 0);
        size_t at = b.len;
        cb_u8(&b, (uint8_t)tag);
        for (int i = 0; i < 16; i++)
            cb_u8(&b, 0);
        mr_reader_t *r = open_bytes(&b, b.len, NULL);
        CHECK(r != NULL);
        if (r == NULL)
            continue;
        int rc = drain(r, NULL);
        char want[96];
        snprintf(want, sizeof want, "corrupt capture at byte %zu: unknown record tag 0x%02x", at,
                 tag);
        int unknown = rc == MR_ERR_CORRUPT && strcmp(mr_reader_error(r), want) == 0;
        if (unknown == tag_is_known(MR_TAG_TYPE(tag), MR_TAG_ARG(tag))) {
            fprintf(stderr, "tag 0x%02x: rc %d, \"%s\"\n", tag, rc, mr_reader_error(r));
            CHECK(0);
        }
        refused += unknown;
        mr_reader_close(r);
        free(b.d);
    }
    /* 16 allocators: ALLOC takes 12, FREE 3; NODE 2; MEMORY 4 (heap, split,
     * both, neither); ten kinds take 0 only; EXT takes every kind but 0;
     * PROCESS belongs to merged captures only. */
    CHECK_EQ(refused, 256 - (12 + 3 + 2 + 4 + 10 + 15));
}

/* Many threads named, some renamed, with tids across the whole 32 bits:
 * each name found exactly, unnamed tids not at all. */
static void test_many_thread_names(void)
{
    enum { N = 3000 };
    capbuf_t b = {0};
    cb_header(&b, 0);
    char name[32];
    for (uint32_t i = 0; i < N; i++) {
        snprintf(name, sizeof name, "t%u", i);
        cb_thread_name(&b, i * 2654435761u, name); /* distinct: an odd multiplier */
    }
    for (uint32_t i = 0; i < N; i += 3) {
        snprintf(name, sizeof name, "renamed %u", i);
        cb_thread_name(&b, i * 2654435761u, name);
    }
    cb_trailer(&b, 1, 0, 0, 0);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    CHECK_EQ(drain(r, NULL), 0);
    CHECK_EQ(mr_reader_count(r, MR_REC_THREAD_NAME), N + N / 3);
    int exact = 1;
    for (uint32_t i = 0; i < N; i++) {
        snprintf(name, sizeof name, i % 3 == 0 ? "renamed %u" : "t%u", i);
        size_t len = 0;
        const char *got = mr_reader_thread_name(r, i * 2654435761u, &len);
        exact &= got != NULL && strcmp(got, name) == 0 && len == strlen(name);
        exact &= mr_reader_thread_name(r, i * 2654435761u + 1, &len) == NULL;
    }
    CHECK(exact);
    mr_reader_close(r);
    free(b.d);
}

static void cb_mapping(capbuf_t *b, const char *path, uint64_t lo, const char *build_id)
{
    cb_str(b, path);
    cb_uv(b, 0);
    cb_uv(b, lo);
    cb_uv(b, lo + 0x1000);
    cb_str(b, build_id);
}

/* Paths and build ids repeated across MAPPINGS records are kept once: equal
 * strings share their copy, different ones (also a prefix of another, or
 * one with a zero byte) keep their own. */
static void test_mapping_strings_shared(void)
{
    static const char *const paths[] = {"/lib/a.so", "/lib/a.so.1", "/lib/b.so", "", "/lib/a.s"};
    capbuf_t b = {0};
    cb_header(&b, MR_FLAG_NATIVE);
    for (uint64_t gen = 1; gen <= 3; gen++) {
        cb_u8(&b, MR_TAG(MR_REC_MAPPINGS, 0));
        cb_uv(&b, gen);
        cb_uv(&b, 6);
        for (int i = 0; i < 5; i++)
            cb_mapping(&b, paths[i], 0x10000 * (uint64_t)(i + 1), i == 2 ? "id" : "");
        /* A build id with a zero byte in it, then its prefix. */
        cb_uv(&b, 0);
        cb_uv(&b, 0);
        cb_uv(&b, 0x90000);
        cb_uv(&b, 0x91000);
        cb_uv(&b, gen == 2 ? 2 : 3);
        cb_bytes(&b, "i\0d", gen == 2 ? 2 : 3);
    }
    cb_trailer(&b, 1, 0, 0, 0);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    CHECK_EQ(drain(r, NULL), 0);
    size_t n1, n2, n3;
    const mr_mapping_t *m1 = mr_reader_mappings(r, 1, &n1);
    const mr_mapping_t *m2 = mr_reader_mappings(r, 2, &n2);
    const mr_mapping_t *m3 = mr_reader_mappings(r, 3, &n3);
    CHECK(n1 == 6 && n2 == 6 && n3 == 6);
    if (n1 == 6 && n2 == 6 && n3 == 6) {
        for (int i = 0; i < 5; i++) { /* sorted by lo: the order written */
            CHECK(strcmp(m1[i].path, paths[i]) == 0 && m1[i].path_len == strlen(paths[i]));
            CHECK(m1[i].path == m2[i].path && m2[i].path == m3[i].path);
            CHECK(m1[i].build_id_len == (i == 2 ? 2u : 0u));
        }
        CHECK(memcmp(m1[2].build_id, "id", 2) == 0 && m1[2].build_id == m3[2].build_id);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < i; j++)
                CHECK(m1[i].path != m1[j].path);
        CHECK(m1[5].build_id_len == 3 && memcmp(m1[5].build_id, "i\0d", 3) == 0);
        CHECK(m2[5].build_id_len == 2 && memcmp(m2[5].build_id, "i\0", 2) == 0);
        CHECK(m1[5].build_id == m3[5].build_id);
    }
    mr_reader_close(r);
    free(b.d);
}

static void test_native_id_checked_only_with_flag(void)
{
    /* Without MR_FLAG_NATIVE an ALLOC has no native field at all. */
    capbuf_t b = {0};
    cbstate_t s = {0};
    cb_header(&b, MR_FLAG_NATIVE);
    cb_alloc(&b, &s, 1, MR_MALLOC, 0x10, 8, 0, 3); /* native 3 undefined */
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    CHECK_EQ(drain(r, NULL), MR_ERR_CORRUPT);
    CHECK(strstr(mr_reader_error(r), "undefined native stack 3") != NULL);
    mr_reader_close(r);
    free(b.d);
}

/* Every prefix of a valid capture reads without error, up to its last whole
 * record; the events seen only grow with the prefix. */
static void test_every_truncation_ends_cleanly(void)
{
    capbuf_t b = {0};
    build_full(&b);
    uint64_t prev = 0;
    size_t start = MR_HEADER_SIZE + 14;
    for (size_t n = start; n <= b.len; n++) {
        mr_reader_t *r = open_bytes(&b, n, NULL);
        CHECK(r != NULL);
        if (r == NULL)
            continue;
        mr_reader_set_raw(r, 1);
        uint64_t events;
        int rc = drain(r, &events);
        CHECK_EQ(rc, 0);
        CHECK(events >= prev);
        prev = events;
        mr_end_t end = mr_reader_end(r);
        CHECK(n == b.len ? end == MR_END_TRAILER : (end == MR_END_EOF || end == MR_END_TRUNCATED));
        /* Ended exactly at the boundary of the last whole record. */
        CHECK(mr_reader_offset(r) <= n);
        mr_reader_close(r);
    }
    CHECK_EQ(prev, 24);
    free(b.d);
}

static void test_zero_fill_is_end_of_data(void)
{
    capbuf_t b = {0};
    cbstate_t s = {0};
    cb_header(&b, 0);
    cb_alloc(&b, &s, 1, MR_MALLOC, 0x10, 8, 0, 0);
    uint8_t zeros[1000] = {0};
    cb_bytes(&b, zeros, sizeof zeros);
    cb_alloc(&b, &s, 1, MR_MALLOC, 0x20, 8, 0, 0); /* never reached */
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    uint64_t n;
    CHECK_EQ(drain(r, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(mr_reader_end(r), MR_END_ZERO);
    CHECK(mr_reader_trailer(r) == NULL);
    mr_reader_close(r);
    free(b.d);
}

/* PAD records carry nothing and are skipped, whatever their bytes. */
static void test_pad_is_skipped(void)
{
    capbuf_t b = {0};
    cbstate_t s = {0};
    cb_header(&b, 0);
    cb_alloc(&b, &s, 1, MR_MALLOC, 0x10, 8, 0, 0);
    cb_u8(&b, MR_TAG(MR_REC_PAD, 0));
    cb_uv(&b, 200);
    uint8_t junk[200];
    memset(junk, 0xC4, sizeof junk);
    cb_bytes(&b, junk, sizeof junk);
    cb_alloc(&b, &s, 1, MR_MALLOC, 0x20, 16, 0, 0);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    uint64_t n;
    CHECK_EQ(drain(r, &n), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(mr_reader_end(r), MR_END_EOF);
    mr_reader_close(r);
    free(b.d);
}

static void test_nothing_after_trailer(void)
{
    capbuf_t b = {0};
    cb_header(&b, 0);
    cb_trailer(&b, 1, 0, 0, MR_TRAILER_FAILED);
    cb_bytes(&b, "garbage after the trailer", 25);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    uint64_t n;
    CHECK_EQ(drain(r, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(mr_reader_trailer(r)->flags, MR_TRAILER_FAILED);
    mr_reader_close(r);
    free(b.d);
}

/* Formats every event of a reader into one string, for comparisons. */
static char *dump_all(mr_reader_t *r, int *rc_out)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    char line[4096];
    len = (size_t)mr_reader_format_header(r, out, cap);
    mr_reader_set_raw(r, 1);
    mr_event_t ev;
    int rc;
    while ((rc = mr_reader_next(r, &ev)) > 0) {
        int n = mr_reader_format_event(r, &ev, line, sizeof line);
        while (len + (size_t)n + 2 > cap)
            out = realloc(out, cap *= 2);
        out[len++] = '\n';
        memcpy(out + len, line, (size_t)n);
        len += (size_t)n;
        out[len] = '\0';
    }
    *rc_out = rc;
    return out;
}

static void test_zstd_reads_identically(void)
{
    capbuf_t b = {0};
    build_full(&b);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    int rc1, rc2;
    char *plain = dump_all(r, &rc1);
    mr_reader_close(r);

    const char *zpath;
    size_t zn = cb_save_zstd(&b, b.len, "cap.zst", &zpath);
    CHECK_EQ(mr_reader_open(&r, zpath, err, sizeof err), 0);
    CHECK_EQ(mr_reader_compressed(r), 1);
    char *comp = dump_all(r, &rc2);
    mr_reader_close(r);
    CHECK_EQ(rc1, 0);
    CHECK_EQ(rc2, 0);
    /* Identical but for the compressed= field of the header line. */
    char *p1 = strstr(plain, "compressed=0"), *p2 = strstr(comp, "compressed=1");
    CHECK(p1 != NULL && p2 != NULL);
    if (p1 && p2) {
        p2[11] = '0';
        CHECK(strcmp(plain, comp) == 0);
    }
    free(plain);
    free(comp);

    /* A compressed file cut short reads up to what it still holds. */
    uint8_t *z = malloc(zn);
    FILE *f = fopen(zpath, "rb");
    CHECK_EQ(fread(z, 1, zn, f), zn);
    fclose(f);
    for (size_t cut = 4; cut < zn; cut += 3) {
        cb_write_file(zpath, z, cut);
        int rc = mr_reader_open(&r, zpath, err, sizeof err);
        if (rc == 0) {
            CHECK_EQ(drain(r, NULL), 0);
            mr_reader_close(r);
        } else {
            CHECK(rc == MR_ERR_NOT_CAPTURE || rc == MR_ERR_EMPTY);
        }
    }
    /* Corrupted compressed bytes: an error or a clean end, never a crash. */
    for (size_t i = 8; i < zn; i += 5) {
        uint8_t save = z[i];
        z[i] ^= 0x5a;
        cb_write_file(zpath, z, zn);
        int rc = mr_reader_open(&r, zpath, err, sizeof err);
        if (rc == 0) {
            rc = drain(r, NULL);
            CHECK(rc == 0 || rc == MR_ERR_CORRUPT);
            mr_reader_close(r);
        }
        z[i] = save;
    }
    free(z);
    free(b.d);
}

/* Many events, well past every buffer size, read the same plain and
 * compressed, and through a pipe. */
static void test_large_streams(void)
{
    capbuf_t b = {0};
    cbstate_t s = {0};
    cb_header(&b, 0);
    cb_code(&b, "f", "f.py", 1);
    cb_frame(&b, 1, 1);
    cb_node(&b, 0, 1, 0);
    const uint64_t n = 400000;
    uint64_t want_bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        cb_alloc(&b, &s, 1 + (uint32_t)(i % 3), MR_MALLOC, 0x10000 + i * 64, i % 1000, 1, 0);
        want_bytes += i % 1000;
        if (i % 1000 == 0)
            cb_memory(&b, i, i, 0, 0);
        if (i % 2)
            cb_free(&b, &s, 1, MR_FREE, 0x10000 + (i - 1) * 64, 0);
    }
    cb_trailer(&b, 1, n, 0, 0);

    const char *paths[2];
    paths[0] = cb_save(&b, b.len, "big.bin");
    cb_save_zstd(&b, b.len, "big.zst", &paths[1]);
    for (int k = 0; k < 3; k++) {
        mr_reader_t *r;
        if (k < 2) {
            CHECK_EQ(mr_reader_open(&r, paths[k], err, sizeof err), 0);
        } else {
            int fds[2];
            CHECK_EQ(pipe(fds), 0);
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                size_t off = 0;
                while (off < b.len) {
                    ssize_t w = write(fds[1], b.d + off, b.len - off);
                    if (w <= 0)
                        _exit(1);
                    off += (size_t)w;
                }
                _exit(0);
            }
            close(fds[1]);
            CHECK_EQ(mr_reader_open_fd(&r, fds[0], err, sizeof err), 0);
        }
        mr_event_t ev;
        uint64_t allocs = 0, frees = 0, mem = 0, bytes = 0;
        int rc;
        while ((rc = mr_reader_next(r, &ev)) > 0) {
            if (ev.type == MR_REC_ALLOC) {
                CHECK_EQ(ev.addr, 0x10000 + allocs * 64);
                bytes += ev.size;
                allocs++;
            } else if (ev.type == MR_REC_FREE) {
                frees++;
            } else if (ev.type == MR_REC_MEMORY) {
                mem++;
            }
        }
        CHECK_EQ(rc, 0);
        CHECK_EQ(allocs, n);
        CHECK_EQ(frees, n / 2);
        CHECK_EQ(mem, n / 1000);
        CHECK_EQ(bytes, want_bytes);
        CHECK_EQ(mr_reader_end(r), MR_END_TRAILER);
        mr_reader_close(r);
    }
    free(b.d);
}

static void test_longest_strings(void)
{
    capbuf_t b = {0};
    cb_header(&b, 0);
    char *big = malloc(MR_MAX_STRING + 1);
    memset(big, 'n', MR_MAX_STRING);
    big[MR_MAX_STRING] = '\0';
    cb_code(&b, big, big, 3);
    cb_thread_name(&b, 1, big);
    cb_trailer(&b, 1, 0, 0, 0);
    free(big);
    for (int z = 0; z < 2; z++) {
        mr_reader_t *r;
        const char *path;
        if (z)
            cb_save_zstd(&b, b.len, "long.zst", &path);
        else
            path = cb_save(&b, b.len, "long.bin");
        CHECK_EQ(mr_reader_open(&r, path, err, sizeof err), 0);
        CHECK_EQ(drain(r, NULL), 0);
        const mr_code_t *c = mr_reader_code(r, 1);
        CHECK(c != NULL && c->name_len == MR_MAX_STRING && c->file_len == MR_MAX_STRING);
        CHECK(c != NULL && c->name[0] == 'n' && c->file[MR_MAX_STRING - 1] == 'n');
        CHECK(c != NULL && c->first_line == 3);
        size_t len;
        CHECK(mr_reader_thread_name(r, 1, &len) != NULL && len == MR_MAX_STRING);
        mr_reader_close(r);
    }
    free(b.d);
}

static void test_format_escapes_strings(void)
{
    capbuf_t b = {0};
    cbstate_t s = {0};
    cb_header_full(&b, MR_FORMAT_VERSION, 0, "run \"x\"");
    cb_code(&b, "evil\nALLOC", "f\\.py", 1);
    cb_alloc(&b, &s, 3, MR_CALLOC, 0xabc, 32, 0, 0);
    cb_free(&b, &s, 3, MR_MUNMAP, 0xabc, 4096);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    int rc;
    char *text = dump_all(r, &rc);
    CHECK_EQ(rc, 0);
    CHECK(strstr(text, "command_line=\"run \\\"x\\\"\"") != NULL);
    CHECK(
        strstr(text, "\nCODE id=1 function=\"evil\\x0aALLOC\" file=\"f\\\\.py\" first_line=1\n") !=
        NULL);
    CHECK(strstr(text, "\nALLOC tid=3 allocator=calloc address=0xabc size=32 stack=0\n") != NULL);
    CHECK(strstr(text, "\nFREE tid=3 allocator=munmap address=0xabc length=4096") != NULL);
    free(text);
    mr_reader_close(r);
    free(b.d);
}

/* MEMORY records with and without the heap and the split of RSS: each
 * field where the tag says, zeros where it has none; the dump shows them. */
static void test_memory_split(void)
{
    capbuf_t b = {0};
    cb_header(&b, 0);
    cb_memory(&b, 1, 1000, 0, 0);
    cb_memory(&b, 2, 2000, 1, 500);
    cb_memory_split(&b, 3, 3000, 0, 0, 1800, 1000, 200, 0);
    cb_memory_split(&b, 4, UINT64_MAX, 1, 700, UINT64_MAX - 1, 1, 0, 4096);
    mr_reader_t *r = open_bytes(&b, b.len, NULL);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    mr_event_t ev;
    int n = 0;
    while (mr_reader_next(r, &ev) > 0) {
        CHECK_EQ(ev.type, MR_REC_MEMORY);
        CHECK_EQ(ev.ms, n + 1);
        CHECK_EQ(ev.has_heap, n == 1 || n == 3);
        CHECK_EQ(ev.has_split, n >= 2);
        if (n < 2) {
            CHECK_EQ(ev.split.anon + ev.split.file + ev.split.shmem + ev.split.mapped, 0);
        } else if (n == 2) {
            CHECK_EQ(ev.rss, 3000);
            CHECK_EQ(ev.split.anon, 1800);
            CHECK_EQ(ev.split.file, 1000);
            CHECK_EQ(ev.split.shmem, 200);
            CHECK_EQ(ev.split.mapped, 0);
        } else {
            CHECK(ev.rss == UINT64_MAX);
            CHECK_EQ(ev.heap, 700);
            CHECK(ev.split.anon == UINT64_MAX - 1);
            CHECK_EQ(ev.split.file, 1);
            CHECK_EQ(ev.split.mapped, 4096);
        }
        n++;
    }
    CHECK_EQ(n, 4);
    mr_reader_close(r);
    r = open_bytes(&b, b.len, NULL);
    int rc;
    char *text = dump_all(r, &rc);
    CHECK_EQ(rc, 0);
    CHECK(strstr(text, "\nMEMORY ms=1 rss=1000\n") != NULL);
    CHECK(strstr(text, "\nMEMORY ms=2 rss=2000 heap=500\n") != NULL);
    CHECK(strstr(text, "\nMEMORY ms=3 rss=3000 anon=1800 file=1000 shmem=200 mapped=0\n") != NULL);
    CHECK(strstr(text, " heap=700 anon=18446744073709551614 file=1 shmem=0 mapped=4096") != NULL);
    free(text);
    mr_reader_close(r);
    /* Cut anywhere in the last two records: what is cut off is dropped,
     * cleanly. */
    size_t whole = b.len;
    for (size_t cut = whole - 1; cut > whole - 40 && cut > MR_HEADER_SIZE; cut--) {
        r = open_bytes(&b, cut, NULL);
        CHECK(r != NULL);
        if (r == NULL)
            break;
        uint64_t events;
        CHECK_EQ(drain(r, &events), 0);
        CHECK(events <= 3);
        mr_reader_close(r);
    }
    free(b.d);
}

static void test_source_rewind_and_peek(void)
{
    capbuf_t b = {0};
    for (int i = 0; i < 3000000; i++)
        cb_u8(&b, (uint8_t)(i * 7));
    for (int z = 0; z < 2; z++) {
        const char *path;
        if (z)
            cb_save_zstd(&b, b.len, "raw.zst", &path);
        else
            path = cb_save(&b, b.len, "raw.bin");
        mr_source_t *s;
        CHECK_EQ(mr_source_open(&s, path), 0);
        for (int pass = 0; pass < 2; pass++) {
            const uint8_t *p;
            size_t total = 0;
            int ok = 1;
            for (;;) {
                ssize_t got = mr_source_peek(s, 100000, &p);
                CHECK(got >= 0);
                if (got <= 0)
                    break;
                for (ssize_t i = 0; i < got; i += 997)
                    ok &= p[i] == (uint8_t)((total + (size_t)i) * 7);
                size_t take = (size_t)got < 77777 ? (size_t)got : 77777;
                mr_source_consume(s, take);
                total += take;
            }
            CHECK(ok);
            CHECK_EQ(total, b.len);
            CHECK_EQ(mr_source_offset(s), b.len);
            CHECK_EQ(mr_source_compressed(s), z);
            CHECK_EQ(mr_source_rewind(s), 0);
        }
        const uint8_t *p;
        CHECK_EQ(mr_source_peek(s, MR_SOURCE_MAX_PEEK + 1, &p), -EFBIG);
        mr_source_close(s);
    }
    free(b.d);
}

/* Random bytes after a valid header and a few definitions: whatever the
 * reader returns, it returns, and all tables stay walkable. */
static void test_random_bytes_never_crash(void)
{
    srand(12345);
    for (int iter = 0; iter < 3000; iter++) {
        capbuf_t b = {0};
        cb_header(&b, (uint16_t)(iter % 2 ? MR_FLAG_NATIVE : 0));
        cb_code(&b, "f", "f.py", 1);
        cb_frame(&b, 1, 1);
        cb_node(&b, 0, 1, 0);
        int n = rand() % 200;
        for (int i = 0; i < n; i++) {
            /* Bias towards plausible tags so decoding goes deep. */
            uint8_t v = (uint8_t)rand();
            if (i % 7 == 0)
                v = (uint8_t)((rand() % 3) << 4 | (rand() % 13));
            cb_u8(&b, v);
        }
        const char *path = cb_save(&b, b.len, "fuzz.bin");
        mr_reader_t *r;
        if (mr_reader_open(&r, path, err, sizeof err) != 0)
            continue;
        mr_reader_set_raw(r, iter % 3 == 0);
        mr_event_t ev;
        char line[8192];
        int rc;
        while ((rc = mr_reader_next(r, &ev)) > 0) {
            mr_reader_format_event(r, &ev, line, sizeof line);
            if (ev.type == MR_REC_ALLOC) {
                mr_pyframe_loc_t st[64];
                mr_reader_stack(r, ev.stack, st, 64);
            }
        }
        CHECK(rc == 0 || rc == MR_ERR_CORRUPT || rc == -ENOMEM);
        mr_reader_close(r);
        free(b.d);
    }
}

int main(void)
{
    RUN(test_header_fields);
    RUN(test_every_record_raw);
    RUN(test_quiet_mode_returns_only_events);
    RUN(test_bad_headers);
    RUN(test_corrupt_records);
    RUN(test_every_tag_byte);
    RUN(test_many_thread_names);
    RUN(test_mapping_strings_shared);
    RUN(test_native_id_checked_only_with_flag);
    RUN(test_every_truncation_ends_cleanly);
    RUN(test_zero_fill_is_end_of_data);
    RUN(test_pad_is_skipped);
    RUN(test_nothing_after_trailer);
    RUN(test_zstd_reads_identically);
    RUN(test_large_streams);
    RUN(test_longest_strings);
    RUN(test_format_escapes_strings);
    RUN(test_memory_split);
    RUN(test_source_rewind_and_peek);
    RUN(test_random_bytes_never_crash);
    cb_cleanup();
    DONE();
}
