/* live.c: the live reader. Owns the connection, the background thread that
 * decodes the stream (reader.c over the socket) and the live set it folds
 * allocations into (aggregate.c), and the lock that lets other threads look
 * at both while the stream goes on. Knows no byte layout, no Python. */
#define _GNU_SOURCE
#include "live.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "format.h"
#include "source.h"

/* Events decoded between two looks at whether another thread waits for the
 * lock: a few hundred microseconds of decoding. */
#define YIELD_EVERY 4096

struct mr_live {
    mr_reader_t *r; /* the decoder; its tables: lock */
    int fd;         /* the connection (owned by r's source); for shutdown */
    pthread_t thread;
    int thread_started; /* creator only */
    int closed;         /* creator only: mr_live_close ran */
    int stopping;       /* atomic: close asked the thread to stop */
    int waiters;        /* atomic: threads blocked in mr_live_lock */
    mr_mutex_t lock;

    /* Everything below: lock. */
    mr_agg_t *agg; /* the live set: allocations alive now, by location */
    int active;
    mr_end_t end;
    int error;
    char errbuf[MR_READER_ERRLEN];
    uint64_t rss, ms, n_allocs, n_frees;
};

int mr_live_connect(const char *host, unsigned port, int timeout_ms, int *out)
{
    if (port < 1 || port > 65535)
        return -EINVAL;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0)
        return gai == EAI_SYSTEM ? -errno : gai == EAI_MEMORY ? -ENOMEM : -EADDRNOTAVAIL;
    int rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        /* Non-blocking connect, so a host that drops packets cannot hold us
         * past timeout_ms. */
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        int err = 0;
        if (fd < 0) {
            err = errno;
        } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            if (err == EINPROGRESS) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                int n;
                do
                    n = poll(&pfd, 1, timeout_ms);
                while (n < 0 && errno == EINTR);
                socklen_t len = sizeof err;
                if (n < 0)
                    err = errno;
                else if (n == 0)
                    err = ETIMEDOUT;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                    err = errno;
            }
        }
        if (err == 0) {
            int flags = fcntl(fd, F_GETFL);
            if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
                err = errno;
            } else {
                freeaddrinfo(res);
                *out = fd;
                return 0;
            }
        }
        if (ai == res)
            rc = -err; /* the first address's reason: the one the user asked for */
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

static int set_recv_timeout(int fd, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ? -errno : 0;
}

/* The reader's source calls this around each read of the socket: the tables
 * are consistent then, and the read may wait for the program for long. */
static void wait_hook(void *ctx, int waiting)
{
    mr_live_t *l = ctx;
    if (waiting)
        mr_mutex_unlock(&l->lock);
    else
        mr_mutex_lock(&l->lock);
}

static void fail_locked(mr_live_t *l, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_locked(mr_live_t *l, int code, const char *fmt, ...)
{
    MR_ASSERT(mr_mutex_held(&l->lock));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->errbuf, sizeof l->errbuf, fmt, ap);
    va_end(ap);
    l->error = code;
}

static int fold_locked(mr_live_t *l, const mr_event_t *ev)
{
    MR_ASSERT(mr_mutex_held(&l->lock));
    switch (ev->type) {
    case MR_REC_ALLOC: {
        mr_loc_key_t key = {ev->tid, ev->allocator, ev->stack, ev->native};
        const mr_header_t *h = mr_reader_header(l->r);
        /* A sampled stream: each recorded block stands for its estimate. */
        uint64_t size = (h->flags & MR_FLAG_SAMPLED) && ev->allocator != MR_MMAP
                            ? mr_sample_weight(ev->size, h->sample_every)
                            : ev->size;
        l->n_allocs++;
        return mr_agg_alloc_gen(l->agg, &key, ev->addr, size, ev->generation);
    }
    case MR_REC_FREE:
        l->n_frees++;
        mr_agg_free(l->agg, ev->addr, ev->size, ev->allocator == MR_MUNMAP);
        return 0;
    case MR_REC_MEMORY:
        l->rss = ev->rss;
        l->ms = ev->ms;
        return 0;
    case MR_REC_TRAILER:
        l->ms = ev->ms;
        return 0;
    default:
        return 0;
    }
}

/* How the stream ended: a trailer (tracking stopped) or the end of the
 * connection between records (the program died, or its reader was cut off)
 * are endings; anything else is an error the user hears about. */
static void finish_locked(mr_live_t *l, int rc)
{
    MR_ASSERT(mr_mutex_held(&l->lock));
    int stopping = __atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE);
    l->active = 0;
    l->end = mr_reader_end(l->r);
    if (stopping || l->error)
        return;
    if (rc < 0) {
        if (rc == -ECONNRESET) {
            l->end = MR_END_EOF;
            return;
        }
        fail_locked(l, rc, "%s", mr_reader_error(l->r));
        return;
    }
    if (l->end == MR_END_TRUNCATED)
        fail_locked(l, MR_ERR_CORRUPT,
                    "the stream was cut off in the middle of a record at byte %llu",
                    (unsigned long long)mr_reader_offset(l->r));
    else if (l->end == MR_END_ZERO)
        fail_locked(l, MR_ERR_CORRUPT, "corrupt stream at byte %llu: unexpected zero byte",
                    (unsigned long long)mr_reader_offset(l->r));
}

static void *live_main(void *arg)
{
    mr_live_t *l = arg;
    mr_source_set_wait_hook(wait_hook, l);
    mr_mutex_lock(&l->lock);
    int rc = 0;
    for (unsigned long n = 1;; n++) {
        if (__atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE))
            break;
        mr_event_t ev;
        rc = mr_reader_next(l->r, &ev);
        if (rc <= 0)
            break;
        int frc = fold_locked(l, &ev);
        if (frc < 0) {
            fail_locked(l, frc, "out of memory");
            break;
        }
        if (n % YIELD_EVERY == 0 && __atomic_load_n(&l->waiters, __ATOMIC_ACQUIRE) > 0) {
            /* A busy stream rarely waits for bytes: hand the lock over so a
             * snapshot is not starved. */
            mr_mutex_unlock(&l->lock);
            while (__atomic_load_n(&l->waiters, __ATOMIC_ACQUIRE) > 0)
                sched_yield();
            mr_mutex_lock(&l->lock);
        }
    }
    finish_locked(l, rc);
    mr_mutex_unlock(&l->lock);
    mr_source_set_wait_hook(NULL, NULL);
    return NULL;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Looks at the first bytes without taking them: a peer that speaks something
 * else (a banner, an HTTP reply) is told apart at once, instead of after the
 * reader waited for a whole header that will never come. */
static int check_magic(int fd, int timeout_ms, char *err, size_t errlen)
{
    uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        uint64_t now = now_ms();
        int wait = timeout_ms <= 0 ? -1 : now >= deadline ? 0 : (int)(deadline - now);
        struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
        int n = poll(&pfd, 1, wait);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "cannot wait for data: %s", strerror(errno));
            return -errno;
        }
        if (n == 0) {
            snprintf(err, errlen, "no memray header arrived within %d ms", timeout_ms);
            return -ETIMEDOUT;
        }
        uint8_t buf[MR_MAGIC_LEN];
        ssize_t got = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            int e = errno;
            snprintf(err, errlen, "cannot read: %s", strerror(e));
            return -e;
        }
        if (got == 0) {
            snprintf(err, errlen, "the connection was closed before any data arrived");
            return MR_ERR_EMPTY;
        }
        if (memcmp(buf, MR_MAGIC, (size_t)got) != 0) {
            snprintf(err, errlen, "the peer does not send a memray capture stream");
            return MR_ERR_NOT_CAPTURE;
        }
        if ((size_t)got == sizeof buf)
            return 0;
        /* A prefix of the magic: the rest is on its way, unless the peer has
         * closed or the time is up. The prefix keeps the socket readable, so
         * poll alone never times out here (found by fuzz/fuzz_live.c). */
        if (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR)) {
            snprintf(err, errlen, "the connection was closed before a whole memray header arrived");
            return MR_ERR_NOT_CAPTURE;
        }
        if (timeout_ms > 0 && now_ms() >= deadline) {
            snprintf(err, errlen, "no memray header arrived within %d ms", timeout_ms);
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int mr_live_open(mr_live_t **out, int fd, int timeout_ms, char *err, size_t errlen)
{
    int rc = check_magic(fd, timeout_ms, err, errlen);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    if (timeout_ms > 0 && (rc = set_recv_timeout(fd, timeout_ms)) < 0) {
        close(fd);
        snprintf(err, errlen, "cannot set a timeout on the connection: %s", strerror(-rc));
        return rc;
    }
    mr_live_t *l = calloc(1, sizeof *l);
    if (l == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->fd = fd;
    mr_mutex_init(&l->lock);
    char rerr[MR_READER_ERRLEN] = "";
    rc = mr_reader_open_fd(&l->r, fd, rerr, sizeof rerr);
    if (rc < 0) {
        l->r = NULL;
        if (rc == -EAGAIN || rc == -EWOULDBLOCK) {
            rc = -ETIMEDOUT;
            snprintf(err, errlen, "no memray header arrived within %d ms", timeout_ms);
        } else if (rc == MR_ERR_EMPTY) {
            snprintf(err, errlen, "the connection was closed before any data arrived");
        } else if (rc == MR_ERR_NOT_CAPTURE) {
            snprintf(err, errlen, "the peer does not send a memray capture stream (%s)", rerr);
        } else {
            snprintf(err, errlen, "%s", rerr);
        }
        goto fail;
    }
    const mr_header_t *h = mr_reader_header(l->r);
    if (h->flags & MR_FLAG_AGGREGATED) {
        rc = MR_ERR_NOT_CAPTURE;
        snprintf(err, errlen, "an aggregated capture cannot be followed live");
        goto fail;
    }
    /* From here on the reads may wait as long as the program runs; close()
     * wakes them with shutdown(). */
    if (timeout_ms > 0 && (rc = set_recv_timeout(fd, 0)) < 0) {
        snprintf(err, errlen, "cannot clear the connection's timeout: %s", strerror(-rc));
        goto fail;
    }
    if ((rc = mr_agg_new(&l->agg)) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    l->active = 1;
    /* Signals are for the interpreter's main thread, never for this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&l->thread, NULL, live_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        rc = -prc;
        snprintf(err, errlen, "cannot start the reading thread: %s", strerror(prc));
        goto fail;
    }
    l->thread_started = 1;
    *out = l;
    return 0;
fail:
    mr_live_destroy(l);
    return rc;
}

void mr_live_close(mr_live_t *l)
{
    if (l == NULL || l->closed)
        return;
    l->closed = 1;
    __atomic_store_n(&l->stopping, 1, __ATOMIC_RELEASE);
    if (l->thread_started) {
        /* Wakes a read blocked on the socket: it returns end of file. */
        shutdown(l->fd, SHUT_RDWR);
        pthread_join(l->thread, NULL);
        l->thread_started = 0;
    }
    mr_mutex_lock(&l->lock);
    l->active = 0;
    if (l->r != NULL)
        mr_reader_release_source(l->r); /* closes the socket; tables stay */
    mr_mutex_unlock(&l->lock);
}

void mr_live_destroy(mr_live_t *l)
{
    if (l == NULL)
        return;
    mr_live_close(l);
    mr_reader_close(l->r);
    mr_agg_destroy(l->agg);
    pthread_mutex_destroy(&l->lock.m);
    free(l);
}

void mr_live_lock(mr_live_t *l)
{
    __atomic_add_fetch(&l->waiters, 1, __ATOMIC_ACQ_REL);
    mr_mutex_lock(&l->lock);
    __atomic_sub_fetch(&l->waiters, 1, __ATOMIC_ACQ_REL);
}

void mr_live_unlock(mr_live_t *l)
{
    mr_mutex_unlock(&l->lock);
}

const mr_header_t *mr_live_header(const mr_live_t *l)
{
    return mr_reader_header(l->r);
}

const mr_reader_t *mr_live_reader_locked(const mr_live_t *l)
{
    MR_ASSERT(mr_mutex_held(&l->lock));
    return l->r;
}

void mr_live_status_locked(const mr_live_t *l, mr_live_status_t *st, char *msg, size_t msglen)
{
    MR_ASSERT(mr_mutex_held(&l->lock));
    *st = (mr_live_status_t){
        .active = l->active,
        .end = l->active ? MR_END_NONE : l->end,
        .error = l->error,
        .heap = mr_agg_heap(l->agg),
        .peak = mr_agg_peak(l->agg),
        .rss = l->rss,
        .ms = l->ms,
        .n_allocs = l->n_allocs,
        .n_frees = l->n_frees,
    };
    if (msg != NULL && msglen > 0)
        snprintf(msg, msglen, "%s", l->error ? l->errbuf : "");
}

int mr_live_rows_locked(mr_live_t *l, int merge_threads, mr_agg_row_t **rows, size_t *n)
{
    MR_ASSERT(mr_mutex_held(&l->lock));
    mr_agg_row_t *all;
    size_t count, k = 0;
    int rc = mr_agg_rows(l->agg, &all, &count);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < count; i++)
        if (all[i].leak_n > 0 || all[i].leak_bytes > 0)
            all[k++] = all[i];
    if (merge_threads && (rc = mr_agg_rows_merge_threads(all, &k)) < 0) {
        free(all);
        return rc;
    }
    *rows = all;
    *n = k;
    return 0;
}
