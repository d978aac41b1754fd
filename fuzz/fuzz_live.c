/* fuzz_live.c: libFuzzer harness for the live reader (live.c), which decodes
 * a tracked program's record stream from a socket on a thread of its own.
 * Input: two control bytes, then the stream as the program would send it.
 * A writer thread sends the stream into one end of a socketpair in chunks
 * whose sizes the control bytes choose, waiting after each until the reader
 * has taken it, so a record, a varint or the header can be split anywhere;
 * meanwhile this thread asks what the TUI asks (status, rows with threads
 * apart and merged, each row's stack and thread name) until the stream ends,
 * or closes the reader early when the control bytes say so.
 *
 * Control bytes: c0 + 1 is the largest chunk before scaling (c0 = 0: the
 * whole stream at once); bits 0-2 of c1 scale it by 2^n; bit 3 closes the
 * reader after the first look instead of waiting for the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "fuzz_common.h"
#include "live.h"
#include "reader.h"

/* Chunks sent with a wait for the reader: beyond this the rest goes in one
 * send, which keeps an input of a thousand one-byte chunks fast. */
#define MAX_WAITED_CHUNKS 256
/* How long a wait for the reader to take a chunk may last (it may have
 * stopped reading: an error, or a close). */
#define DRAIN_WAIT_NS (2 * 1000 * 1000)

typedef struct writer {
    int fd;
    const uint8_t *data;
    size_t size;
    uint64_t rng;     /* chooses chunk sizes */
    size_t max_chunk; /* 0: everything at once */
} writer_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t next_chunk(writer_t *w, size_t left, unsigned sent)
{
    if (w->max_chunk == 0 || sent >= MAX_WAITED_CHUNKS)
        return left;
    w->rng ^= w->rng << 13; /* xorshift64 */
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    size_t n = 1 + (size_t)(w->rng % w->max_chunk);
    return n < left ? n : left;
}

/* Until the reader has read what was sent (nothing queued on our side), or a
 * short time passed. */
static void wait_drained(int fd)
{
    uint64_t deadline = now_ns() + DRAIN_WAIT_NS;
    int queued = 0;
    while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 && now_ns() < deadline)
        sched_yield();
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    size_t done = 0;
    for (unsigned sent = 0; done < w->size; sent++) {
        size_t n = next_chunk(w, w->size - done, sent);
        for (size_t off = 0; off < n;) {
            /* MSG_NOSIGNAL: once the reader closed, EPIPE, not a signal. */
            ssize_t k = send(w->fd, w->data + done + off, n - off, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                goto out;
            off += (size_t)k;
        }
        done += n;
        if (done < w->size && sent < MAX_WAITED_CHUNKS)
            wait_drained(w->fd);
    }
out:
    close(w->fd); /* the end of the stream */
    return NULL;
}

/* One look, as the TUI's refresh makes it: lock, status, rows, stacks. */
static int look(mr_live_t *l, int merge, uint64_t *h)
{
    mr_live_status_t st;
    char msg[MR_READER_ERRLEN];
    mr_live_lock(l);
    mr_live_status_locked(l, &st, msg, sizeof msg);
    if (memchr(msg, '\0', sizeof msg) == NULL || (st.error == 0) != (msg[0] == '\0'))
        abort(); /* a message exactly when there is an error */
    if (st.active && st.end != MR_END_NONE)
        abort();
    *h = fuzz_touch(*h, &st, sizeof st);
    mr_agg_row_t *rows = NULL;
    size_t n = 0;
    if (mr_live_rows_locked(l, merge, &rows, &n) == 0) {
        const mr_reader_t *r = mr_live_reader_locked(l);
        for (size_t i = 0; i < n; i++) {
            if (rows[i].leak_n == 0 && rows[i].leak_bytes == 0)
                abort(); /* the live view shows only what is alive */
            *h = fuzz_location(r, NULL, rows[i].key.tid, rows[i].key.stack, rows[i].key.native,
                               rows[i].generation, *h);
        }
        free(rows);
    }
    mr_live_unlock(l);
    return st.active;
}

/* The stream read whole from a file must give the same events as it did in
 * chunks from the socket: the decoder may not depend on where a read ended. */
static void same_as_file(mr_live_t *l, const uint8_t *data, size_t size)
{
    mr_live_status_t st;
    char msg[MR_READER_ERRLEN];
    mr_live_lock(l);
    mr_live_status_locked(l, &st, msg, sizeof msg);
    mr_live_unlock(l);
    int fd = memfd_create("fuzz-stream", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    mr_reader_t *r = NULL;
    char err[MR_READER_ERRLEN];
    if (mr_reader_open_fd(&r, fd, err, sizeof err) < 0)
        abort(); /* the live reader took this header */
    mr_event_t ev;
    uint64_t allocs = 0, frees = 0;
    int rc;
    while ((rc = mr_reader_next(r, &ev)) > 0) {
        allocs += ev.type == MR_REC_ALLOC;
        frees += ev.type == MR_REC_FREE;
    }
    if (allocs != st.n_allocs || frees != st.n_frees) {
        fprintf(stderr,
                "live and file readings differ: live %llu allocs %llu frees, error %d \"%s\";"
                " file %llu allocs %llu frees, rc %d \"%s\"\n",
                (unsigned long long)st.n_allocs, (unsigned long long)st.n_frees, st.error, msg,
                (unsigned long long)allocs, (unsigned long long)frees, rc,
                rc < 0 ? mr_reader_error(r) : "");
        abort();
    }
    mr_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned c0 = data[0], c1 = data[1];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    writer_t w = {
        .fd = sv[1],
        .data = data + 2,
        .size = size - 2,
        .rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)c0 << 8 | c1),
        .max_chunk = c0 == 0 ? 0 : (size_t)c0 << (c1 & 7),
    };
    pthread_t writer;
    if (pthread_create(&writer, NULL, writer_main, &w) != 0)
        abort();

    mr_live_t *l = NULL;
    char err[MR_READER_ERRLEN] = "";
    int rc = mr_live_open(&l, sv[0], 2000, err, sizeof err);
    if (rc < 0) {
        if (l != NULL || err[0] == '\0' || memchr(err, '\0', sizeof err) == NULL)
            abort();
    } else {
        uint64_t h = fuzz_touch_str(0, mr_live_header(l)->command_line);
        int close_early = (c1 & 8) != 0;
        for (int i = 0; look(l, i & 1, &h); i++) {
            if (close_early)
                break;
            /* A TUI refreshes now and then; looking back to back would only
             * keep the reader from the lock. */
            struct timespec pause = {0, 20 * 1000};
            nanosleep(&pause, NULL);
        }
        if (!close_early)
            same_as_file(l, data + 2, size - 2);
        mr_live_close(l); /* wakes a writer blocked on a full socket, too */
        look(l, 0, &h);   /* what was read stays available */
        look(l, 1, &h);
        mr_live_destroy(l);
        __asm__ volatile("" : : "r"(h));
    }
    pthread_join(writer, NULL);
    return 0;
}
