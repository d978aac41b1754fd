/* test_socket_sink.c: the socket sink (listen, accept with a timeout, bytes
 * arriving whole and in order, flushing, a reader that went away) and the
 * live reader over it (writer -> socket -> live.c: the live set, stacks, the
 * end of the stream, and the bad inputs: a foreign peer, silence, a stream
 * cut mid-record). Everything runs over loopback inside this process. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "format.h"
#include "live.h"
#include "sink.h"
#include "writer.h"

/* A listener on a free loopback port and a client connected to it; the
 * connection completes in the kernel's backlog, so one thread can do both. */
typedef struct pair {
    int lfd;
    unsigned port;
    int client;
    mr_sink_t *sink;
} pair_t;

static int open_pair(pair_t *p)
{
    memset(p, 0, sizeof *p);
    if (mr_sink_socket_listen("127.0.0.1", 0, &p->lfd, &p->port) < 0)
        return -1;
    if (mr_live_connect("127.0.0.1", p->port, 2000, &p->client) < 0)
        return -1;
    return mr_sink_socket_accept(p->lfd, 2000, &p->sink);
}

static void close_pair(pair_t *p)
{
    if (p->client >= 0)
        close(p->client);
    close(p->lfd);
}

/* Reads exactly n bytes from fd, waiting at most 2 s for each chunk. */
static ssize_t read_n(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 2000) <= 0)
            break;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_accept_times_out_without_a_reader(void)
{
    int lfd;
    unsigned port = 0;
    CHECK_EQ(mr_sink_socket_listen("127.0.0.1", 0, &lfd, &port), 0);
    CHECK(port > 0);
    mr_sink_t *sink = NULL;
    CHECK_EQ(mr_sink_socket_accept(lfd, 50, &sink), -ETIMEDOUT);
    CHECK(sink == NULL);
    close(lfd);
}

static void test_port_in_use(void)
{
    int a, b;
    unsigned port = 0;
    CHECK_EQ(mr_sink_socket_listen("127.0.0.1", 0, &a, &port), 0);
    CHECK_EQ(mr_sink_socket_listen("127.0.0.1", port, &b, NULL), -EADDRINUSE);
    CHECK_EQ(mr_sink_socket_listen("no.such.host.invalid", port, &b, NULL), -EADDRNOTAVAIL);
    CHECK_EQ(mr_sink_socket_listen("127.0.0.1", 70000, &b, NULL), -EINVAL);
    close(a);
}

static void test_bytes_arrive_in_order_after_flush(void)
{
    pair_t p;
    CHECK_EQ(open_pair(&p), 0);
    CHECK(mr_sink_is_socket(p.sink));
    uint8_t rec[300];
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (uint8_t)(i * 7 + 1);
    CHECK_EQ(mr_sink_write(p.sink, rec, 100), 0);
    CHECK_EQ(mr_sink_write(p.sink, rec + 100, 200), 0);
    /* Buffered until flushed: nothing to read yet. */
    struct pollfd pfd = {.fd = p.client, .events = POLLIN};
    CHECK_EQ(poll(&pfd, 1, 50), 0);
    CHECK_EQ(mr_sink_flush(p.sink), 0);
    uint8_t got[300];
    CHECK_EQ(read_n(p.client, got, sizeof got), 300);
    CHECK(memcmp(got, rec, sizeof rec) == 0);
    CHECK_EQ(mr_sink_size(p.sink), 300);
    /* Close flushes the rest, then the reader sees the end. */
    CHECK_EQ(mr_sink_write(p.sink, rec, 10), 0);
    CHECK_EQ(mr_sink_close(p.sink), 0);
    CHECK_EQ(read_n(p.client, got, 10), 10);
    CHECK(memcmp(got, rec, 10) == 0);
    CHECK_EQ(read(p.client, got, 1), 0);
    close_pair(&p);
}

static void test_full_buffer_is_sent_without_flush(void)
{
    pair_t p;
    CHECK_EQ(open_pair(&p), 0);
    static uint8_t chunk[4096], got[1 << 20];
    memset(chunk, 0xAB, sizeof chunk);
    /* 512 KiB: more than the sink's buffer, less than loopback buffers. */
    for (int i = 0; i < 128; i++)
        CHECK_EQ(mr_sink_write(p.sink, chunk, sizeof chunk), 0);
    ssize_t n = read_n(p.client, got, 256 << 10);
    CHECK(n >= (ssize_t)(128 << 10));
    mr_sink_abandon(p.sink);
    close_pair(&p);
}

static void test_reader_gone_fails_and_sticks(void)
{
    pair_t p;
    CHECK_EQ(open_pair(&p), 0);
    close(p.client);
    p.client = -1;
    uint8_t rec[64] = {1};
    int rc = 0;
    /* The first send after the peer closed may still succeed (it makes the
     * peer answer with a reset); the next ones fail, and keep failing. */
    for (int i = 0; i < 50 && rc == 0; i++) {
        CHECK_EQ(mr_sink_write(p.sink, rec, sizeof rec), 0);
        rc = mr_sink_flush(p.sink);
        if (rc == 0)
            sleep_ms(10);
    }
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    CHECK_EQ(mr_sink_flush(p.sink), rc);
    CHECK_EQ(mr_sink_write(p.sink, rec, sizeof rec), 0); /* buffered */
    CHECK_EQ(mr_sink_close(p.sink), rc);
    close_pair(&p);
}

/* ---- live reader ----------------------------------------------------------- */

/* A listener plus a live reader connected to it, and the tracked side's
 * writer on the accepted socket. The header is written and flushed before
 * the reader opens, as the tracker does. */
typedef struct live_pair {
    int lfd;
    mr_sink_t *sink;
    mr_writer_t w;
    int fd; /* the reader's connection, before mr_live_open takes it */
} live_pair_t;

static int open_live_pair(live_pair_t *p, uint16_t flags)
{
    unsigned port;
    memset(p, 0, sizeof *p);
    if (mr_sink_socket_listen("127.0.0.1", 0, &p->lfd, &port) < 0)
        return -1;
    if (mr_live_connect("127.0.0.1", port, 2000, &p->fd) < 0)
        return -1;
    if (mr_sink_socket_accept(p->lfd, 2000, &p->sink) < 0)
        return -1;
    mr_header_info_t info = {.flags = flags,
                             .pid = 4242,
                             .main_tid = 4242,
                             .command_line = "prog.py --flag",
                             .command_line_len = 14,
                             .interval_ms = 10};
    if (mr_writer_init(&p->w, p->sink, &info) < 0)
        return -1;
    return mr_sink_flush(p->sink);
}

/* Waits (at most 5 s) until the live reader has folded n allocations and
 * f frees, or has stopped. */
static void wait_for(mr_live_t *l, uint64_t n, uint64_t f)
{
    mr_live_status_t st;
    for (int i = 0; i < 500; i++) {
        mr_live_lock(l);
        mr_live_status_locked(l, &st, NULL, 0);
        mr_live_unlock(l);
        if ((st.n_allocs >= n && st.n_frees >= f) || !st.active)
            return;
        sleep_ms(10);
    }
}

static void wait_inactive(mr_live_t *l, mr_live_status_t *st, char *msg, size_t len)
{
    for (int i = 0; i < 500; i++) {
        mr_live_lock(l);
        mr_live_status_locked(l, st, msg, len);
        mr_live_unlock(l);
        if (!st->active)
            return;
        sleep_ms(10);
    }
}

static void test_live_set_follows_the_stream(void)
{
    live_pair_t p;
    CHECK_EQ(open_live_pair(&p, 0), 0);
    mr_live_t *l = NULL;
    char err[MR_READER_ERRLEN] = "";
    CHECK_EQ(mr_live_open(&l, p.fd, 2000, err, sizeof err), 0);
    if (l == NULL)
        return;
    CHECK_EQ(mr_live_header(l)->pid, 4242);
    CHECK(strcmp(mr_live_header(l)->command_line, "prog.py --flag") == 0);

    uint64_t code, frame_f, frame_main, outer, inner;
    CHECK_EQ(mr_writer_code(&p.w, "main", 4, "prog.py", 7, 1, &code), 0);
    CHECK_EQ(mr_writer_frame(&p.w, code, 10, &frame_main), 0);
    CHECK_EQ(mr_writer_frame(&p.w, code, 20, &frame_f), 0);
    CHECK_EQ(mr_writer_node(&p.w, 0, frame_main, 0, &outer), 0);
    CHECK_EQ(mr_writer_node(&p.w, outer, frame_f, 0, &inner), 0);
    CHECK_EQ(mr_writer_alloc(&p.w, 1, MR_MALLOC, 0x1000, 1234, inner, 0), 0);
    CHECK_EQ(mr_writer_alloc(&p.w, 1, MR_MALLOC, 0x2000, 1000, inner, 0), 0);
    CHECK_EQ(mr_writer_alloc(&p.w, 2, MR_CALLOC, 0x3000, 77, outer, 0), 0);
    CHECK_EQ(mr_writer_free(&p.w, 1, MR_FREE, 0x2000, 0), 0);
    CHECK_EQ(mr_writer_memory(&p.w, 5, 1 << 20, 0, 0), 0);
    CHECK_EQ(mr_sink_flush(p.sink), 0);
    /* The decoder looks 96 bytes ahead (or to the end): more samples push
     * the records above through, as the tracker's sampler does. */
    for (int i = 0; i < 20; i++)
        CHECK_EQ(mr_writer_memory(&p.w, 10 + (uint64_t)i, 1 << 20, 0, 0), 0);
    CHECK_EQ(mr_sink_flush(p.sink), 0);
    wait_for(l, 3, 1);

    mr_live_lock(l);
    mr_live_status_t st;
    mr_live_status_locked(l, &st, NULL, 0);
    CHECK(st.active);
    CHECK_EQ(st.heap, 1234 + 77);
    CHECK_EQ(st.peak, 1234 + 1000 + 77);
    CHECK_EQ(st.rss, 1 << 20);
    mr_agg_row_t *rows = NULL;
    size_t n = 0;
    CHECK_EQ(mr_live_rows_locked(l, 0, &rows, &n), 0);
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (rows[i].key.tid == 1) {
            CHECK_EQ(rows[i].key.allocator, MR_MALLOC);
            CHECK_EQ(rows[i].leak_n, 1);
            CHECK_EQ(rows[i].leak_bytes, 1234);
            CHECK_EQ(rows[i].key.stack, inner);
        } else {
            CHECK_EQ(rows[i].key.tid, 2);
            CHECK_EQ(rows[i].leak_bytes, 77);
        }
    }
    free(rows);
    mr_pyframe_loc_t frames[4];
    size_t depth = mr_reader_stack(mr_live_reader_locked(l), inner, frames, 4);
    CHECK_EQ(depth, 2);
    CHECK_EQ(frames[0].line, 20);
    CHECK_EQ(frames[1].line, 10);
    CHECK(strcmp(frames[0].function, "main") == 0 && strcmp(frames[0].file, "prog.py") == 0);
    mr_live_unlock(l);

    /* A trailer, and the stream ends cleanly: what was alive stays. */
    CHECK_EQ(mr_writer_trailer(&p.w, 99, 3, 2311, 0), 0);
    CHECK_EQ(mr_sink_close(p.sink), 0);
    char msg[MR_READER_ERRLEN];
    wait_inactive(l, &st, msg, sizeof msg);
    CHECK(!st.active);
    CHECK_EQ(st.end, MR_END_TRAILER);
    CHECK_EQ(st.error, 0);
    CHECK(msg[0] == '\0');
    mr_live_lock(l);
    CHECK_EQ(mr_live_rows_locked(l, 1, &rows, &n), 0);
    mr_live_unlock(l);
    CHECK_EQ(n, 2); /* merged: two stacks */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(rows[i].key.tid, 0);
        total += rows[i].leak_bytes;
    }
    CHECK_EQ(total, 1234 + 77);
    free(rows);
    mr_live_destroy(l);
    close(p.lfd);
}

static void test_live_close_wakes_the_reading_thread(void)
{
    live_pair_t p;
    CHECK_EQ(open_live_pair(&p, 0), 0);
    mr_live_t *l = NULL;
    char err[MR_READER_ERRLEN];
    CHECK_EQ(mr_live_open(&l, p.fd, 2000, err, sizeof err), 0);
    /* The program is silent; closing must not wait for it. */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    mr_live_close(l);
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK(b.tv_sec - a.tv_sec < 2);
    mr_live_status_t st;
    mr_live_lock(l);
    mr_live_status_locked(l, &st, NULL, 0);
    mr_live_unlock(l);
    CHECK(!st.active);
    CHECK_EQ(st.error, 0);
    mr_live_destroy(l);
    /* The tracked side now finds its reader gone. */
    uint8_t rec[64] = {1};
    int rc = 0;
    for (int i = 0; i < 50 && rc == 0; i++) {
        mr_sink_write(p.sink, rec, sizeof rec);
        if ((rc = mr_sink_flush(p.sink)) == 0)
            sleep_ms(10);
    }
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    mr_sink_abandon(p.sink);
    close(p.lfd);
}

static void test_live_stream_cut_mid_record_is_an_error(void)
{
    live_pair_t p;
    CHECK_EQ(open_live_pair(&p, 0), 0);
    mr_live_t *l = NULL;
    char err[MR_READER_ERRLEN];
    CHECK_EQ(mr_live_open(&l, p.fd, 2000, err, sizeof err), 0);
    uint64_t code;
    CHECK_EQ(mr_writer_code(&p.w, "f", 1, "x.py", 4, 1, &code), 0);
    /* Half of a CODE record: its tag and a name length, then nothing. */
    uint8_t half[] = {MR_TAG(MR_REC_CODE, 0), 50, 'a', 'b'};
    CHECK_EQ(mr_sink_write(p.sink, half, sizeof half), 0);
    CHECK_EQ(mr_sink_close(p.sink), 0);
    mr_live_status_t st;
    char msg[MR_READER_ERRLEN] = "";
    wait_inactive(l, &st, msg, sizeof msg);
    CHECK(!st.active);
    CHECK_EQ(st.end, MR_END_TRUNCATED);
    CHECK_EQ(st.error, MR_ERR_CORRUPT);
    CHECK(strstr(msg, "cut off in the middle of a record") != NULL);
    mr_live_destroy(l);
    close(p.lfd);
}

static void test_live_end_between_records_is_not_an_error(void)
{
    live_pair_t p;
    CHECK_EQ(open_live_pair(&p, 0), 0);
    mr_live_t *l = NULL;
    char err[MR_READER_ERRLEN];
    CHECK_EQ(mr_live_open(&l, p.fd, 2000, err, sizeof err), 0);
    CHECK_EQ(mr_writer_alloc(&p.w, 1, MR_MALLOC, 0x1000, 10, 0, 0), 0);
    CHECK_EQ(mr_sink_close(p.sink), 0); /* a killed program: no trailer */
    mr_live_status_t st;
    char msg[MR_READER_ERRLEN];
    wait_inactive(l, &st, msg, sizeof msg);
    CHECK_EQ(st.end, MR_END_EOF);
    CHECK_EQ(st.error, 0);
    CHECK_EQ(st.heap, 10);
    mr_live_destroy(l);
    close(p.lfd);
}

static void test_live_rejects_a_foreign_peer(void)
{
    pair_t p;
    CHECK_EQ(open_pair(&p), 0);
    const char *http = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    CHECK_EQ(mr_sink_write(p.sink, http, strlen(http)), 0);
    CHECK_EQ(mr_sink_flush(p.sink), 0);
    mr_live_t *l = NULL;
    char err[MR_READER_ERRLEN] = "";
    CHECK_EQ(mr_live_open(&l, p.client, 2000, err, sizeof err), MR_ERR_NOT_CAPTURE);
    CHECK(strstr(err, "does not send a memray capture stream") != NULL);
    p.client = -1; /* closed by mr_live_open */
    mr_sink_abandon(p.sink);
    close_pair(&p);
}

static void test_live_times_out_on_a_silent_peer(void)
{
    pair_t p;
    CHECK_EQ(open_pair(&p), 0);
    mr_live_t *l = NULL;
    char err[MR_READER_ERRLEN] = "";
    CHECK_EQ(mr_live_open(&l, p.client, 100, err, sizeof err), -ETIMEDOUT);
    CHECK(strstr(err, "no memray header") != NULL);
    p.client = -1;
    mr_sink_abandon(p.sink);
    close_pair(&p);
}

static void test_live_connect_refused(void)
{
    int lfd, fd = -1;
    unsigned port;
    CHECK_EQ(mr_sink_socket_listen("127.0.0.1", 0, &lfd, &port), 0);
    close(lfd); /* the port is free again: nothing listens */
    CHECK_EQ(mr_live_connect("127.0.0.1", port, 1000, &fd), -ECONNREFUSED);
    CHECK_EQ(mr_live_connect("127.0.0.1", 0, 1000, &fd), -EINVAL);
}

int main(void)
{
    RUN(test_accept_times_out_without_a_reader);
    RUN(test_port_in_use);
    RUN(test_bytes_arrive_in_order_after_flush);
    RUN(test_full_buffer_is_sent_without_flush);
    RUN(test_reader_gone_fails_and_sticks);
    RUN(test_live_set_follows_the_stream);
    RUN(test_live_close_wakes_the_reading_thread);
    RUN(test_live_stream_cut_mid_record_is_an_error);
    RUN(test_live_end_between_records_is_not_an_error);
    RUN(test_live_rejects_a_foreign_peer);
    RUN(test_live_times_out_on_a_silent_peer);
    RUN(test_live_connect_refused);
    DONE();
}
