/* test_merge.c: merge.c on captures written by writer.c. Two processes with
 * the same thread id and the same block address, on clocks 5 ms apart: the
 * merged stream (to a file and streamed to a reader, byte for byte the same)
 * keeps them apart and interleaves them by sample time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "ctest.h"
#include "format.h"
#include "merge.h"
#include "reader.h"
#include "sink.h"
#include "writer.h"

static char dir[] = "/tmp/mr-test-merge-XXXXXX";

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* A capture of pid with one block of size at 0x1000 on thread 7, alive over
 * two samples (at 10 and 20 ms) and freed before the third (30 ms). */
static void write_capture(const char *name, uint32_t pid, uint64_t start_ms, uint64_t size,
                          uint16_t flags)
{
    char path[256];
    path_of(path, sizeof path, name);
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 1, 1, &sink), 0);
    mr_header_info_t info = {.flags = flags,
                             .pid = pid,
                             .main_tid = 7,
                             .start_ms = start_ms,
                             .interval_ms = 10,
                             .command_line = name,
                             .command_line_len = strlen(name)};
    mr_writer_t w;
    uint64_t code, frame, node;
    CHECK_EQ(mr_writer_init(&w, sink, &info), 0);
    CHECK_EQ(mr_writer_thread_name(&w, 7, "main", 4), 0);
    CHECK_EQ(mr_writer_code(&w, name, strlen(name), "f.py", 4, 1, &code), 0);
    CHECK_EQ(mr_writer_frame(&w, code, 2, &frame), 0);
    CHECK_EQ(mr_writer_node(&w, 0, frame, 1, &node), 0);
    if (flags & MR_FLAG_AGGREGATED) {
        CHECK_EQ(mr_writer_agg(&w, 7, MR_MALLOC, node, 0, 1, size, 0, 0), 0);
        CHECK_EQ(mr_writer_memory(&w, 10, 1000, 1, size), 0);
    } else {
        CHECK_EQ(mr_writer_alloc(&w, 7, MR_MALLOC, 0x1000, size, node, 0), 0);
        CHECK_EQ(mr_writer_memory(&w, 10, 1000, 1, size), 0);
        CHECK_EQ(mr_writer_memory(&w, 20, 1000, 1, size), 0);
        CHECK_EQ(mr_writer_free(&w, 7, MR_FREE, 0x1000, 0), 0);
        CHECK_EQ(mr_writer_memory(&w, 30, 1000, 1, 0), 0);
    }
    CHECK_EQ(mr_writer_trailer(&w, 30, 1, 0, 0), 0);
    CHECK_EQ(mr_writer_close(&w), 0);
}

static int open_inputs(mr_merge_t **m, const char *a, const char *b, char *err, size_t errlen)
{
    char pa[256], pb[256];
    path_of(pa, sizeof pa, a);
    path_of(pb, sizeof pb, b);
    int fds[2] = {open(pa, O_RDONLY | O_CLOEXEC), open(pb, O_RDONLY | O_CLOEXEC)};
    const char *names[2] = {a, b};
    return mr_merge_open(m, fds, names, 2, err, errlen);
}

/* Every record of r as text, one line each. */
static char *dump(mr_reader_t *r)
{
    size_t cap = 1 << 16, used = 0;
    char *out = calloc(1, cap);
    mr_reader_set_raw(r, 1);
    mr_event_t ev;
    int rc;
    while ((rc = mr_reader_next(r, &ev)) > 0) {
        char line[512];
        int n = mr_reader_format_event(r, &ev, line, sizeof line);
        if (used + (size_t)n + 2 < cap) {
            memcpy(out + used, line, (size_t)n);
            used += (size_t)n;
            out[used++] = '\n';
        }
    }
    CHECK_EQ(rc, 0);
    return out;
}

static void test_merge_file_and_stream(void)
{
    write_capture("a.bin", 101, 1000, 300, 0);
    write_capture("b.bin", 202, 1005, 4000, 0);
    mr_merge_t *m;
    char err[256] = "";
    CHECK_EQ(open_inputs(&m, "a.bin", "b.bin", err, sizeof err), 0);
    char out[256];
    path_of(out, sizeof out, "all.bin");
    CHECK_EQ(mr_merge_write(m, out, 1, err, sizeof err), 0);

    mr_reader_t *file, *stream;
    CHECK_EQ(mr_reader_open(&file, out, err, sizeof err), 0);
    CHECK_EQ(mr_merge_reader(m, &stream, err, sizeof err), 0);
    mr_merge_release(m); /* the streaming reader keeps it */
    const mr_header_t *h = mr_reader_header(file);
    CHECK_EQ(h->flags, MR_FLAG_MERGED);
    CHECK_EQ(h->pid, 101);
    CHECK_EQ(h->start_ms, 1000);
    char *text = dump(file), *streamed = dump(stream);
    CHECK(strcmp(text, streamed) == 0);
    const char *expected =
        "PROCESS number=1 pid=101 parent_pid=0 start_offset_ms=0 python=0x00000000 "
        "command_line=\"a.bin\"\n"
        "THREAD_NAME tid=7 name=\"main\"\n"
        "CODE id=1 function=\"a.bin\" file=\"f.py\" first_line=1\n"
        "FRAME id=1 code=1 line=2\n"
        "NODE id=1 parent=0 frame=1 entry=1\n"
        "THREAD tid=7\n"
        "ALLOC tid=7 allocator=malloc address=0x1000000001000 size=300 stack=1\n"
        "MEMORY ms=10 rss=1000 heap=300\n"
        /* b's first sample is at 15 ms on a's clock: after a's 10 ms. */
        "PROCESS number=2 pid=202 parent_pid=0 start_offset_ms=5 python=0x00000000 "
        "command_line=\"b.bin\"\n"
        "THREAD_NAME tid=1073741824 name=\"main\"\n"
        "CODE id=2 function=\"b.bin\" file=\"f.py\" first_line=1\n"
        "FRAME id=2 code=2 line=2\n"
        "NODE id=2 parent=0 frame=2 entry=1\n"
        "THREAD tid=1073741824\n"
        "ALLOC tid=1073741824 allocator=malloc address=0x2000000001000 size=4000 stack=2\n"
        "MEMORY ms=15 rss=2000 heap=4300\n"
        "PROCESS number=1\n"
        "MEMORY ms=20 rss=2000 heap=4300\n"
        "PROCESS number=2\n"
        "MEMORY ms=25 rss=2000 heap=4300\n"
        "PROCESS number=1\n"
        "THREAD tid=7\n"
        "FREE tid=7 allocator=free address=0x1000000001000\n"
        "MEMORY ms=30 rss=2000 heap=4000\n"
        /* a ended: its blocks leave the heap, the sum goes on without it */
        "PROCESS number=1 exit\n"
        "MEMORY ms=30 rss=1000 heap=4000\n"
        "PROCESS number=2\n"
        "THREAD tid=1073741824\n"
        "FREE tid=1073741824 allocator=free address=0x2000000001000\n"
        "MEMORY ms=35 rss=1000 heap=0\n"
        "TRAILER ms=35 total_allocations=2 peak_bytes=0 flags=0x0\n";
    if (strcmp(text, expected) != 0)
        fprintf(stderr, "merged:\n%s", text);
    CHECK(strcmp(text, expected) == 0);
    CHECK_EQ(mr_reader_n_processes(file), 2);
    CHECK_EQ(mr_reader_thread_process(file, 7), 1);
    CHECK_EQ(mr_reader_thread_process(file, 1u << 30), 2);
    CHECK_EQ(mr_reader_process(file, 2)->pid, 202);
    free(text);
    free(streamed);
    mr_reader_close(file);
    mr_reader_close(stream);
}

/* A capture of pid with samples at 10 and 20 ms, each with the split
 * (anon + k, file, shmem, mapped) unless split is 0. */
static void write_split_capture(const char *name, uint32_t pid, uint64_t anon, int split)
{
    char path[256];
    path_of(path, sizeof path, name);
    mr_sink_t *sink;
    CHECK_EQ(mr_sink_open_file(path, 1, 1, &sink), 0);
    mr_header_info_t info = {.pid = pid, .main_tid = 7, .start_ms = 1000, .interval_ms = 10};
    mr_writer_t w;
    CHECK_EQ(mr_writer_init(&w, sink, &info), 0);
    for (uint64_t k = 0; k < 2; k++) {
        mr_mem_split_t sp = {.anon = anon + k, .file = 20, .shmem = 3, .mapped = 7};
        CHECK_EQ(mr_writer_memory_split(&w, 10 * (k + 1), anon + k + 23, 0, 0, split ? &sp : NULL),
                 0);
    }
    CHECK_EQ(mr_writer_trailer(&w, 30, 0, 0, 0), 0);
    CHECK_EQ(mr_writer_close(&w), 0);
}

/* The MEMORY lines of the merge of a and b. */
static char *merged_memory(const char *a, const char *b)
{
    mr_merge_t *m;
    char err[256] = "";
    CHECK_EQ(open_inputs(&m, a, b, err, sizeof err), 0);
    mr_reader_t *r;
    CHECK_EQ(mr_merge_reader(m, &r, err, sizeof err), 0);
    mr_merge_release(m);
    char *text = dump(r);
    mr_reader_close(r);
    char *out = calloc(1, strlen(text) + 1), *o = out;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strncmp(line, "MEMORY", 6) == 0)
            o += sprintf(o, "%s\n", line);
    free(text);
    return out;
}

/* Merged samples carry the sums of the split, as long as every process
 * adding to the sum recorded one. */
static void test_merge_sums_split(void)
{
    write_split_capture("s1.bin", 11, 1000, 1);
    write_split_capture("s2.bin", 12, 5000, 1);
    write_split_capture("n.bin", 13, 5000, 0);
    char *both = merged_memory("s1.bin", "s2.bin");
    const char *want = "MEMORY ms=10 rss=1023 anon=1000 file=20 shmem=3 mapped=7\n"
                       "MEMORY ms=10 rss=6046 anon=6000 file=40 shmem=6 mapped=14\n"
                       "MEMORY ms=20 rss=6047 anon=6001 file=40 shmem=6 mapped=14\n"
                       "MEMORY ms=20 rss=6048 anon=6002 file=40 shmem=6 mapped=14\n"
                       /* s1 ended: the sum of s2 alone */
                       "MEMORY ms=30 rss=5024 anon=5001 file=20 shmem=3 mapped=7\n";
    if (strcmp(both, want) != 0)
        fprintf(stderr, "merged:\n%s", both);
    CHECK(strcmp(both, want) == 0);
    char *mixed = merged_memory("s1.bin", "n.bin");
    want = "MEMORY ms=10 rss=1023 anon=1000 file=20 shmem=3 mapped=7\n"
           "MEMORY ms=10 rss=6046\n"
           "MEMORY ms=20 rss=6047\n"
           "MEMORY ms=20 rss=6048\n"
           "MEMORY ms=30 rss=5024\n";
    if (strcmp(mixed, want) != 0)
        fprintf(stderr, "merged:\n%s", mixed);
    CHECK(strcmp(mixed, want) == 0);
    free(both);
    free(mixed);
}

static void test_merge_refuses(void)
{
    write_capture("a.bin", 101, 1000, 300, 0);
    write_capture("agg.bin", 303, 1000, 300, MR_FLAG_AGGREGATED);
    mr_merge_t *m = NULL;
    char err[256] = "";
    CHECK_EQ(open_inputs(&m, "a.bin", "agg.bin", err, sizeof err), -EINVAL);
    CHECK(strcmp(err, "agg.bin is an aggregated capture and a.bin is not: merge captures of one "
                      "file format") == 0);
    CHECK_EQ(open_inputs(&m, "a.bin", "a.bin", err, sizeof err), -EINVAL);
    CHECK(strcmp(err, "a.bin is given twice (also as a.bin)") == 0);
    char pa[256];
    path_of(pa, sizeof pa, "a.bin");
    int fds[1] = {open(pa, O_RDONLY | O_CLOEXEC)};
    const char *names[1] = {"a.bin"};
    CHECK_EQ(mr_merge_open(&m, fds, names, 0, err, sizeof err), -EINVAL);
    CHECK(strcmp(err, "no captures to merge") == 0);
    close(fds[0]);
}

int main(void)
{
    if (mkdtemp(dir) == NULL)
        return 2;
    RUN(test_merge_file_and_stream);
    RUN(test_merge_refuses);
    RUN(test_merge_sums_split);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 2;
    DONE();
}
