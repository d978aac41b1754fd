/* test_procmem.c: the /proc parsers of procmem.c on recorded and made-up
 * text (lines split across reads, odd spacing, missing and malformed
 * fields), and one live read of this process. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctest.h"
#include "procmem.h"

/* /proc/self/status of a Linux 6.18 process (the lines the parser looks at
 * sit among some thirty others). */
static const char status_text[] = "Name:\tcat\n"
                                  "Umask:\t0022\n"
                                  "State:\tR (running)\n"
                                  "Groups:\t4 24 27 30 46 100 118 1000 \n"
                                  "VmPeak:\t    8324 kB\n"
                                  "VmSize:\t    8324 kB\n"
                                  "VmHWM:\t    1964 kB\n"
                                  "VmRSS:\t    1964 kB\n"
                                  "RssAnon:\t     148 kB\n"
                                  "RssFile:\t    1816 kB\n"
                                  "RssShmem:\t       0 kB\n"
                                  "VmData:\t     360 kB\n"
                                  "Threads:\t1\n"
                                  "voluntary_ctxt_switches:\t0\n";

static void test_status_whole(void)
{
    mr_status_fields_t acc = {0};
    size_t used = mr_procmem_parse_status(status_text, sizeof status_text - 1, 0, &acc);
    CHECK_EQ(used, sizeof status_text - 1);
    CHECK_EQ(acc.found, MR_STATUS_ALL);
    CHECK_EQ(acc.anon_kb, 148);
    CHECK_EQ(acc.file_kb, 1816);
    CHECK_EQ(acc.shmem_kb, 0);
}

/* Read in pieces of every size, as a short pread would hand them over: the
 * caller resumes after the last complete line, and the result is the same. */
static void test_status_in_pieces(void)
{
    size_t len = sizeof status_text - 1;
    for (size_t piece = 8; piece <= len; piece++) {
        mr_status_fields_t acc = {0};
        size_t off = 0;
        int mid_line = 0, guard = 0;
        while (off < len && guard++ < 1000) {
            size_t n = len - off < piece ? len - off : piece;
            size_t used = mr_procmem_parse_status(status_text + off, n, mid_line, &acc);
            if (used == 0) {
                mid_line = 1; /* a line longer than the piece: skipped */
                off += n;
            } else {
                mid_line = 0;
                off += used;
            }
        }
        /* A piece shorter than the longest of our lines may skip it. */
        if (piece >= sizeof "RssShmem:\t       0 kB\n" - 1) {
            CHECK_EQ(acc.found, MR_STATUS_ALL);
            CHECK_EQ(acc.anon_kb, 148);
            CHECK_EQ(acc.file_kb, 1816);
        }
    }
}

static void test_status_odd_input(void)
{
    mr_status_fields_t acc = {0};
    /* No newline after the last line: it is not complete, so not read. */
    static const char cut[] = "RssAnon:\t12 kB\nRssFile:\t34";
    CHECK_EQ(mr_procmem_parse_status(cut, sizeof cut - 1, 0, &acc), 15);
    CHECK_EQ(acc.found, MR_STATUS_ANON);
    CHECK_EQ(acc.anon_kb, 12);
    /* Spaces instead of tabs, no unit, a missing value, an overflow, a
     * prefix that is not ours, a line that starts mid-piece. */
    static const char odd[] = "tail of a long line RssShmem: 1 kB\n"
                              "RssFile:    34\n"
                              "RssShmem:\n"
                              "RssAnon:\t99999999999999999999999 kB\n"
                              "RssAnonymous:\t7 kB\n"
                              "RssShmemX:\t5 kB\n";
    acc = (mr_status_fields_t){0};
    CHECK_EQ(mr_procmem_parse_status(odd, sizeof odd - 1, 1, &acc), sizeof odd - 1);
    CHECK_EQ(acc.found & MR_STATUS_FILE, MR_STATUS_FILE);
    CHECK_EQ(acc.file_kb, 34);
    CHECK_EQ(acc.found & MR_STATUS_ANON, 0);
    CHECK_EQ(acc.found & MR_STATUS_SHMEM, 0);
    /* Empty input. */
    acc = (mr_status_fields_t){0};
    CHECK_EQ(mr_procmem_parse_status("", 0, 0, &acc), 0);
    CHECK_EQ(acc.found, 0);
}

static void test_statm(void)
{
    uint64_t resident = 0, shared = 0;
    static const char text[] = "2081 491 454 23 0 90 0\n";
    CHECK_EQ(mr_procmem_parse_statm(text, sizeof text - 1, &resident, &shared), 0);
    CHECK_EQ(resident, 491);
    CHECK_EQ(shared, 454);
    CHECK_EQ(mr_procmem_parse_statm("2081 491", 8, &resident, &shared), -EINVAL);
    CHECK_EQ(mr_procmem_parse_statm("", 0, &resident, &shared), -EINVAL);
    CHECK_EQ(mr_procmem_parse_statm("a b c", 5, &resident, &shared), -EINVAL);
}

/* This process: the parts add up to rss, and 64 MiB made resident show up
 * in the anonymous part (give or take what else the test touches). */
static void test_live(void)
{
    mr_procmem_t pm = MR_PROCMEM_INIT;
    CHECK_EQ(mr_procmem_open(&pm), 0);
    mr_procmem_sample_t before, after;
    mr_procmem_read(&pm, &before);
    CHECK(before.rss > 0);
    CHECK(before.has_split);
    CHECK_EQ(before.split.anon + before.split.file + before.split.shmem, before.rss);
    CHECK_EQ(before.split.mapped, 0);
    size_t n = 64 << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 1;
    mr_procmem_read(&pm, &after);
    int64_t grew = (int64_t)(after.split.anon - before.split.anon);
    CHECK(grew >= (int64_t)n && grew < (int64_t)n + (1 << 20));
    munmap(p, n);
    mr_procmem_close(&pm);
    CHECK_EQ(pm.status_fd, -1);
    CHECK_EQ(pm.statm_fd, -1);
    /* Closed: reads say nothing, and do not fail. */
    mr_procmem_read(&pm, &after);
    CHECK_EQ(after.rss, 0);
    CHECK_EQ(after.has_split, 0);
}

int main(void)
{
    RUN(test_status_whole);
    RUN(test_status_in_pieces);
    RUN(test_status_odd_input);
    RUN(test_statm);
    RUN(test_live);
    DONE();
}
