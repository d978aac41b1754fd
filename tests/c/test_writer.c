/* test_writer.c: the writer's bytes, exactly, for a hand-made event sequence;
 * the sink's growth, trimming and compression; failures surface as -errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctest.h"
#include "format.h"
#include "sink.h"
#include "writer.h"

static char dir[] = "/tmp/mr-test-writer-XXXXXX";

static size_t slurp(const char *path, uint8_t **out)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    *out = malloc((size_t)st.st_size + 1);
    size_t n = (size_t)read(fd, *out, (size_t)st.st_size);
    close(fd);
    return n;
}

static void write_sample(const char *path, int buffered)
{
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 0, buffered, &sink), 0);
    mr_writer_t w;
    mr_header_info_t info = {.flags = 0,
                             .python_allocator = MR_PYALLOC_PYMALLOC,
                             .pid = 0x1234,
                             .parent_pid = 0x1233,
                             .main_tid = 0x1235,
                             .start_ms = 1000,
                             .py_hexversion = 0x030B07F0,
                             .interval_ms = 10,
                             .command_line = "py x",
                             .command_line_len = 4};
    CHECK_EQ(mr_writer_init(&w, sink, &info), 0);
    uint64_t code, frame, node;
    CHECK_EQ(mr_writer_code(&w, "f", 1, "a.py", 4, 3, &code), 0);
    CHECK_EQ(code, 1);
    CHECK_EQ(mr_writer_frame(&w, code, 7, &frame), 0);
    CHECK_EQ(frame, 1);
    CHECK_EQ(mr_writer_node(&w, 0, frame, 1, &node), 0);
    CHECK_EQ(node, 1);
    CHECK_EQ(mr_writer_alloc(&w, 5, MR_MALLOC, 0x1000, 300, node, 0), 0);
    CHECK_EQ(mr_writer_alloc(&w, 5, MR_CALLOC, 0x0ff0, 16, node, 0), 0);
    CHECK_EQ(mr_writer_free(&w, 6, MR_FREE, 0x1000, 0), 0);
    CHECK_EQ(mr_writer_free(&w, 6, MR_MUNMAP, 0x2000, 4096), 0);
    CHECK_EQ(mr_writer_thread_name(&w, 6, "w1", 2), 0);
    CHECK_EQ(mr_writer_memory(&w, 12, 4096, 0, 0), 0);
    CHECK_EQ(mr_writer_trailer(&w, 20, 2, 0, 0), 0);
    CHECK_EQ(mr_sink_close(sink), 0);
}

static const uint8_t expected_records[] = {
    0x04, 1,    'f',  4,    'a',  '.',  'p', 'y', 3, /* CODE f a.py:3 -> 1 */
    0x05, 1,    7,                                   /* FRAME code 1 line 7 -> 1 */
    0x16, 0,    1,                                   /* NODE root, frame 1, entry -> 1 */
    0x03, 5,                                         /* THREAD 5 */
    0x61, 0x80, 0x40, 0xac, 0x02, 0x02,              /* ALLOC malloc +0x1000 300 stack +1 */
    0x81, 0x1f, 16,   0,                             /* ALLOC calloc -0x10 16 stack +0 */
    0x03, 6,                                         /* THREAD 6 */
    0x52, 0x20,                                      /* FREE +0x10 */
    0xf2, 0x80, 0x40, 0x80, 0x20,                    /* MUNMAP +0x1000 len 4096 */
    0x07, 6,    2,    'w',  '1',                     /* THREAD_NAME 6 w1 */
    0x08, 12,   0x80, 0x20,                          /* MEMORY 12 ms rss 4096 */
    0x0c, 20,   2,    0,    0,                       /* TRAILER */
};

static void check_sample(const char *path)
{
    uint8_t *b;
    size_t n = slurp(path, &b);
    CHECK_EQ(n, MR_HEADER_SIZE + 4 + sizeof expected_records);
    CHECK(memcmp(b, MR_MAGIC, MR_MAGIC_LEN) == 0);
    CHECK_EQ(mr_get_u16(b + MR_HOFF_VERSION), MR_FORMAT_VERSION);
    CHECK_EQ(mr_get_u32(b + MR_HOFF_PID), 0x1234);
    CHECK_EQ(mr_get_u32(b + MR_HOFF_PARENT_PID), 0x1233);
    CHECK_EQ(mr_get_u32(b + MR_HOFF_MAIN_TID), 0x1235);
    CHECK_EQ(mr_get_u64(b + MR_HOFF_START_MS), 1000);
    CHECK_EQ(mr_get_u32(b + MR_HOFF_CMDLINE_LEN), 4);
    CHECK(memcmp(b + MR_HEADER_SIZE, "py x", 4) == 0);
    if (n == MR_HEADER_SIZE + 4 + sizeof expected_records) {
        const uint8_t *r = b + MR_HEADER_SIZE + 4;
        for (size_t i = 0; i < sizeof expected_records; i++) {
            if (r[i] != expected_records[i]) {
                fprintf(stderr, "byte %zu: %02x != %02x\n", i, r[i], expected_records[i]);
                CHECK(0);
                break;
            }
        }
    }
    free(b);
}

static void test_mapped_bytes(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/mapped.bin", dir);
    write_sample(path, 0);
    check_sample(path);
}

static void test_buffered_bytes(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/buffered.bin", dir);
    write_sample(path, 1);
    check_sample(path);
}

static void test_exclusive_create(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/mapped.bin", dir);
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 0, 0, &sink), -EEXIST);
    CHECK_EQ(mr_sink_open_file(path, 1, 0, &sink), 0);
    CHECK_EQ(mr_sink_close(sink), 0);
    struct stat st;
    stat(path, &st);
    CHECK_EQ(st.st_size, 0);
    CHECK_EQ(mr_sink_open_file("/nonexistent-dir/x.bin", 0, 0, &sink), -ENOENT);
}

static void test_growth_across_steps(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/big.bin", dir);
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 0, 0, &sink), 0);
    uint8_t rec[100];
    for (int i = 0; i < 100; i++)
        rec[i] = (uint8_t)(i + 1);
    /* 5 MiB in 100-byte records: crosses the first steps of the mapping. */
    for (int i = 0; i < 52429; i++)
        CHECK_EQ(mr_sink_write(sink, rec, sizeof rec), 0);
    CHECK_EQ(mr_sink_size(sink), 5242900);
    CHECK_EQ(mr_sink_close(sink), 0);
    uint8_t *b;
    size_t n = slurp(path, &b);
    CHECK_EQ(n, 5242900);
    CHECK(b[0] == 1 && b[99] == 100 && b[5242800] == 1 && b[5242899] == 100);
    free(b);
    /* Compression replaces the file by one zstd frame. */
    CHECK_EQ(mr_sink_compress_file(path), 0);
    n = slurp(path, &b);
    CHECK(n > 4 && n < 100000);
    CHECK(memcmp(b, MR_ZSTD_MAGIC, 4) == 0);
    free(b);
}

static void test_file_size_limit_fails_cleanly(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/limited.bin", dir);
    struct rlimit old, lim = {1 << 20, 1 << 20};
    getrlimit(RLIMIT_FSIZE, &old);
    lim.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 0, 0, &sink), 0);
    uint8_t rec[64] = {1};
    int rc = 0;
    size_t written = 0;
    while (rc == 0 && written < (4u << 20)) {
        rc = mr_sink_write(sink, rec, sizeof rec);
        if (rc == 0)
            written += sizeof rec;
    }
    CHECK_EQ(rc, -EFBIG);
    CHECK_EQ(written, 1 << 20);
    CHECK_EQ(mr_sink_close(sink), 0);
    setrlimit(RLIMIT_FSIZE, &old);
}

/* A MAPPINGS record and a NATIVE_NODE, byte for byte: the map is one record
 * however long its paths (the checked build asserts it fits its buffer). */
static void test_mappings_and_native_node_bytes(void)
{
    char path[64];
    snprintf(path, sizeof path, "%s/maps.bin", dir);
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 0, 1, &sink), 0);
    mr_writer_t w;
    mr_header_info_t info = {.flags = MR_FLAG_NATIVE, .pid = 1, .main_tid = 1};
    CHECK_EQ(mr_writer_init(&w, sink, &info), 0);
    char long_path[300];
    memset(long_path, 'p', sizeof long_path);
    long_path[0] = '/';
    const uint8_t id[2] = {0xab, 0xcd};
    mr_mapping_entry_t e[2] = {
        {.path = "/l.so",
         .path_len = 5,
         .bias = 0x1000,
         .lo = 0x1000,
         .hi = 0x2000,
         .build_id = id,
         .build_id_len = 2},
        {.path = long_path, .path_len = sizeof long_path, .bias = 0, .lo = 1, .hi = 2},
    };
    CHECK_EQ(mr_writer_mappings(&w, 1, e, 2), 0);
    uint64_t node;
    CHECK_EQ(mr_writer_native_node(&w, 0, 0x1234, &node), 0);
    CHECK_EQ(node, 1);
    CHECK_EQ(mr_sink_close(sink), 0);
    uint8_t *b;
    size_t n = slurp(path, &b);
    static const uint8_t head[] = {0x0a, 1,    2,    5,    '/', 'l',  '.',  's',  'o',  0x80, 0x20,
                                   0x80, 0x20, 0x80, 0x40, 2,   0xab, 0xcd, 0xac, 0x02, '/'};
    static const uint8_t tail[] = {0, 1, 2, 0, 0x09, 0, 0xb4, 0x24};
    size_t body = sizeof head + (sizeof long_path - 1) + sizeof tail;
    CHECK_EQ(n, MR_HEADER_SIZE + body);
    if (n == MR_HEADER_SIZE + body) {
        const uint8_t *r = b + MR_HEADER_SIZE;
        CHECK(memcmp(r, head, sizeof head) == 0);
        CHECK(memcmp(r + sizeof head, long_path + 1, sizeof long_path - 1) == 0);
        CHECK(memcmp(r + sizeof head + sizeof long_path - 1, tail, sizeof tail) == 0);
    }
    free(b);
    unlink(path);
}

/* MEMORY records with the split of RSS, byte for byte: the tag's argument
 * says which fields follow, in the order of docs/format.md. */
static void test_memory_split_bytes(void)
{
    char path[64];
    snprintf(path, sizeof path, "%s/memory.bin", dir);
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 0, 1, &sink), 0);
    mr_writer_t w;
    mr_header_info_t info = {.pid = 1, .main_tid = 1};
    CHECK_EQ(mr_writer_init(&w, sink, &info), 0);
    mr_mem_split_t split = {.anon = 3000, .file = 1500, .shmem = 500, .mapped = 0};
    CHECK_EQ(mr_writer_memory_split(&w, 12, 5000, 0, 0, &split), 0);
    split.mapped = 128;
    CHECK_EQ(mr_writer_memory_split(&w, 13, 5000, 1, 300, &split), 0);
    CHECK_EQ(mr_writer_memory_split(&w, 14, 5000, 1, 300, NULL), 0);
    CHECK_EQ(mr_sink_close(sink), 0);
    uint8_t *b;
    size_t n = slurp(path, &b);
    static const uint8_t want[] = {
        0x28, 12,   0x88, 0x27, 0xb8, 0x17, 0xdc, 0x0b, 0xf4, 0x03, 0, /* split */
        0x38, 13,   0x88, 0x27, 0xac, 0x02, 0xb8, 0x17, 0xdc, 0x0b, 0xf4,
        0x03, 0x80, 0x01, 0x18, 14,   0x88, 0x27, 0xac, 0x02, /* heap only */
    };
    CHECK_EQ(n, MR_HEADER_SIZE + sizeof want);
    if (n == MR_HEADER_SIZE + sizeof want)
        CHECK(memcmp(b + MR_HEADER_SIZE, want, sizeof want) == 0);
    free(b);
    unlink(path);
}

int main(void)
{
    if (mkdtemp(dir) == NULL)
        return 2;
    RUN(test_mapped_bytes);
    RUN(test_buffered_bytes);
    RUN(test_exclusive_create);
    RUN(test_growth_across_steps);
    RUN(test_file_size_limit_fails_cleanly);
    RUN(test_mappings_and_native_node_bytes);
    RUN(test_memory_split_bytes);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 2;
    DONE();
}
