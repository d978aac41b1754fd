/* sink.c: sinks for capture bytes (a mapped file, a buffered file, a socket
 * to one live reader) and compression on exit. Owns the descriptor, the
 * mapping and the buffer; knows no record layout beyond "the first byte of a
 * record is its tag". */
#define _GNU_SOURCE
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "check.h"

/* The file is preallocated in steps starting at MAP_FIRST and doubling up to
 * MAP_STEP: a short capture reserves little disk before it is trimmed at
 * close, a long one extends the file once per 32 MiB of records. Only a
 * window of at most MAP_WINDOW bytes around the write position is mapped:
 * written pages leave the process's RSS (they stay in the page cache, so a
 * killed process still leaves them on disk) instead of the whole capture
 * staying resident. 1 MiB: a 4 MiB window held 2.7 MiB of RSS on the
 * deep_stack benchmark; remapping once per MiB written costs microseconds. */
#define MAP_FIRST ((size_t)1 << 20)
#define MAP_STEP ((size_t)32 << 20)
#define MAP_WINDOW ((size_t)1 << 20)
/* Buffered sink: one write(2) per this many bytes. */
#define BUF_SIZE ((size_t)1 << 20)
/* Socket sink: smaller, so that a flush forced by a full buffer (made under
 * the writer lock) stays a short copy into the kernel's socket buffer. */
#define SOCK_BUF_SIZE ((size_t)128 << 10)
#define MR_UNLIKELY_SINK(x) __builtin_expect(!!(x), 0)

enum { KIND_MAPPED, KIND_BUFFERED, KIND_SOCKET, KIND_CALLBACK };
/* Callback sink: handed on in pieces of this size. */
#define CB_BUF_SIZE ((size_t)64 << 10)

struct mr_sink {
    int fd;
    int buffered;     /* buffered or socket: records go through buf */
    int kind;         /* KIND_* */
    int failed;       /* socket: the -errno of the first failed send, then sticky */
    uint64_t written; /* bytes of records handed to the sink */
    /* mapped sink */
    uint8_t *map;     /* shared mapping of the window [map_off, map_off + map_len) */
    uint64_t map_off; /* file offset of the window, page-aligned */
    size_t map_len;
    uint64_t file_len; /* bytes preallocated on disk */
    /* callback sink */
    mr_sink_write_fn cb;
    void *cb_ctx;
    /* buffered sink */
    uint8_t *buf;
    size_t buf_size;
    size_t buf_used;
};

/* send(2) until done. MSG_NOSIGNAL: a reader that went away must give EPIPE,
 * not a SIGPIPE that would kill the tracked program. SO_SNDTIMEO (set at
 * accept) bounds each call that makes no progress. */
static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mr_sink_open_file(const char *path, int overwrite, int buffered, mr_sink_t **out)
{
    int flags = O_RDWR | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
    mr_sink_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->fd = open(path, flags, 0644);
    if (s->fd < 0) {
        int err = -errno;
        free(s);
        return err;
    }
    s->buffered = buffered;
    s->kind = buffered ? KIND_BUFFERED : KIND_MAPPED;
    s->buf_size = BUF_SIZE;
    if (buffered) {
        s->buf = malloc(BUF_SIZE);
        if (s->buf == NULL) {
            close(s->fd);
            free(s);
            return -ENOMEM;
        }
    }
    *out = s;
    return 0;
}

int mr_sink_open_callback(mr_sink_write_fn fn, void *ctx, mr_sink_t **out)
{
    mr_sink_t *s = calloc(1, sizeof *s);
    if (s == NULL || (s->buf = malloc(CB_BUF_SIZE)) == NULL) {
        free(s);
        return -ENOMEM;
    }
    s->fd = -1;
    s->buffered = 1;
    s->kind = KIND_CALLBACK;
    s->buf_size = CB_BUF_SIZE;
    s->cb = fn;
    s->cb_ctx = ctx;
    *out = s;
    return 0;
}

/* Makes [written, written + n) writable: extends the file if needed and moves
 * the window to start at the page holding `written`. */
static int remap_window(mr_sink_t *s, size_t n)
{
    uint64_t end = s->written + n;
    if (end > s->file_len) {
        uint64_t step = s->file_len == 0         ? MAP_FIRST
                        : s->file_len < MAP_STEP ? s->file_len
                                                 : MAP_STEP;
        while (s->file_len + step < end)
            step += MAP_STEP;
        /* Reserve the blocks now: a write to a mapped page the filesystem
         * cannot back raises SIGBUS, which would kill the tracked program. */
        int rc = posix_fallocate(s->fd, (off_t)s->file_len, (off_t)step);
        if (rc == EOPNOTSUPP || rc == EINVAL)
            rc = ftruncate(s->fd, (off_t)(s->file_len + step)) < 0 ? errno : 0;
        if (rc != 0)
            return -rc;
        s->file_len += step;
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t off = s->written & ~(page - 1);
    uint64_t len = s->file_len - off;
    if (len > MAP_WINDOW && end - off <= MAP_WINDOW)
        len = MAP_WINDOW;
    if (s->map != NULL && munmap(s->map, s->map_len) < 0)
        return -errno;
    s->map = NULL;
    void *m = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, (off_t)off);
    if (m == MAP_FAILED)
        return -errno;
    s->map = m;
    s->map_off = off;
    s->map_len = (size_t)len;
    return 0;
}

/* Writes n bytes at p straight to the descriptor. */
static int put_direct(mr_sink_t *s, const uint8_t *p, size_t n)
{
    if (s->kind == KIND_CALLBACK)
        return n > 0 ? s->cb(s->cb_ctx, p, n) : 0;
    if (s->kind != KIND_SOCKET)
        return write_all(s->fd, p, n);
    if (s->failed)
        return s->failed;
    int rc = send_all(s->fd, p, n);
    if (rc < 0)
        s->failed = rc;
    return rc;
}

static int flush_buffer(mr_sink_t *s)
{
    int rc = put_direct(s, s->buf, s->buf_used);
    s->buf_used = 0;
    return rc;
}

/* Writes left before injected failures start; 0 = not armed. Armed only by
 * tests, through _memray._test_fail_writes_after (no environment variable
 * or option a user could set reaches it); disarmed when tracking stops. */
static uint64_t fail_countdown;

void mr_sink_inject_failure(uint64_t n)
{
    fail_countdown = n;
}

int mr_sink_write(mr_sink_t *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (n == 0)
        return 0;
    if (MR_UNLIKELY_SINK(fail_countdown != 0) && --fail_countdown == 0) {
        fail_countdown = 1; /* stays failed */
        return -EIO;
    }
    if (s->buffered) {
        if (s->buf_used + n > s->buf_size) {
            int rc = flush_buffer(s);
            if (rc < 0)
                return rc;
            if (n > s->buf_size) {
                if ((rc = put_direct(s, p, n)) < 0)
                    return rc;
                s->written += n;
                return 0;
            }
        }
        MR_ASSERT(s->buf_used + n <= s->buf_size);
        memcpy(s->buf + s->buf_used, p, n);
        s->buf_used += n;
        s->written += n;
        return 0;
    }
    if (s->map == NULL || s->written + n > s->map_off + s->map_len) {
        int rc = remap_window(s, n);
        if (rc < 0)
            return rc;
    }
    MR_ASSERT(s->written >= s->map_off && s->written + n <= s->map_off + s->map_len);
    MR_ASSERT(s->map_off + s->map_len <= s->file_len);
    uint8_t *dst = s->map + (s->written - s->map_off);
    memcpy(dst + 1, p + 1, n - 1);
    /* The tag last: a reader of a killed writer's file must never see a tag
     * whose body is still zero fill. */
    __atomic_store_n(dst, p[0], __ATOMIC_RELEASE);
    s->written += n;
    return 0;
}

uint64_t mr_sink_size(const mr_sink_t *s)
{
    return s->written;
}

int mr_sink_flush(mr_sink_t *s)
{
    if (s->kind == KIND_CALLBACK)
        return flush_buffer(s);
    if (s->kind != KIND_SOCKET)
        return 0;
    if (s->failed)
        return s->failed;
    return s->buf_used > 0 ? flush_buffer(s) : 0;
}

int mr_sink_is_socket(const mr_sink_t *s)
{
    return s->kind == KIND_SOCKET;
}

int mr_sink_socket_listen(const char *address, unsigned port, int *listen_fd, unsigned *bound_port)
{
    if (port > 65535)
        return -EINVAL;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
    };
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(address, service, &hints, &res);
    if (gai != 0)
        return gai == EAI_SYSTEM ? -errno : gai == EAI_MEMORY ? -ENOMEM : -EADDRNOTAVAIL;
    /* The first address that binds wins; the error kept is the first one,
     * which is what the user asked for (127.0.0.1 before ::1). */
    int rc = -EADDRNOTAVAIL, fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            if (rc == -EADDRNOTAVAIL)
                rc = -errno;
            continue;
        }
        int one = 1;
        /* A previous run's connection in TIME_WAIT must not keep the port. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0) {
            rc = 0;
            break;
        }
        if (rc == -EADDRNOTAVAIL || ai == res)
            rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return rc;
    if (bound_port != NULL) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    *listen_fd = fd;
    return 0;
}

int mr_sink_socket_accept(int listen_fd, int timeout_ms, mr_sink_t **out)
{
    struct pollfd pfd = {.fd = listen_fd, .events = POLLIN};
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ETIMEDOUT;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return errno == EAGAIN || errno == ECONNABORTED ? -ETIMEDOUT : -errno;
    struct timeval tv = {
        .tv_sec = MR_SINK_SOCKET_SEND_TIMEOUT_MS / 1000,
        .tv_usec = (MR_SINK_SOCKET_SEND_TIMEOUT_MS % 1000) * 1000,
    };
    int one = 1;
    /* We batch records ourselves; Nagle would only delay the periodic
     * flushes a live view waits for. */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    mr_sink_t *s = calloc(1, sizeof *s);
    if (s != NULL)
        s->buf = malloc(SOCK_BUF_SIZE);
    if (s == NULL || s->buf == NULL) {
        free(s);
        close(fd);
        return -ENOMEM;
    }
    s->fd = fd;
    s->buffered = 1;
    s->kind = KIND_SOCKET;
    s->buf_size = SOCK_BUF_SIZE;
    *out = s;
    return 0;
}

int mr_sink_open_socket(const char *address, unsigned port, mr_sink_t **out)
{
    int lfd;
    int rc = mr_sink_socket_listen(address, port, &lfd, NULL);
    if (rc < 0)
        return rc;
    do
        rc = mr_sink_socket_accept(lfd, -1, out);
    while (rc == -ETIMEDOUT || rc == -EINTR);
    close(lfd);
    return rc;
}

int mr_sink_close(mr_sink_t *s)
{
    int rc = 0;
    if (s->buffered) {
        rc = s->kind == KIND_SOCKET && s->failed ? s->failed : flush_buffer(s);
        free(s->buf);
    } else {
        if (s->map != NULL && munmap(s->map, s->map_len) < 0 && rc == 0)
            rc = -errno;
        if (ftruncate(s->fd, (off_t)s->written) < 0 && rc == 0)
            rc = -errno;
    }
    if (s->fd >= 0 && close(s->fd) < 0 && rc == 0)
        rc = -errno;
    free(s);
    return rc;
}

void mr_sink_abandon(mr_sink_t *s)
{
    if (s == NULL)
        return;
    if (s->map != NULL)
        munmap(s->map, s->map_len);
    free(s->buf);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

/* zstd level 3, measured on the alloc_loop benchmark's 14.7 MB capture:
 * level 1 gives 7.7 MB in 0.09 s, level 3 6.5 MB in 0.10 s, level 5 6.3 MB
 * in 0.20 s; lz4 9.8 MB in 0.04 s. Compression runs while the user waits,
 * so the knee of the curve. */
#define ZSTD_LEVEL 3

int mr_sink_compress_file(const char *path)
{
    int rc = 0;
    int in = -1, out = -1;
    char *tmp = NULL;
    ZSTD_CCtx *cctx = NULL;
    /* Read in chunks rather than mapping the capture: it may be far larger
     * than the memory the tracked program should be charged for. */
    size_t ibuf_len = ZSTD_CStreamInSize() * 8, obuf_len = ZSTD_CStreamOutSize();
    uint8_t *ibuf = NULL, *obuf = NULL;

    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    struct stat st;
    if (fstat(in, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if (st.st_size == 0)
        goto out;
    size_t plen = strlen(path);
    tmp = malloc(plen + 16);
    ibuf = malloc(ibuf_len);
    obuf = malloc(obuf_len);
    cctx = ZSTD_createCCtx();
    if (tmp == NULL || ibuf == NULL || obuf == NULL || cctx == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(tmp, plen + 16, "%s.zst-tmp", path);
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
    if (out < 0) {
        rc = -errno;
        goto out;
    }
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    /* Two workers when libzstd has threads (an error, ignored, otherwise),
     * on jobs of 1 MiB: on the alloc_loop benchmark's capture, 0.065 s
     * instead of 0.15 s, and 4.0 MB instead of 6.5 MB; the default job size
     * (4 windows) raised the tracked process's peak RSS by 18 MiB at exit. */
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, 2);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_jobSize, 1 << 20);
    ZSTD_CCtx_setPledgedSrcSize(cctx, (unsigned long long)st.st_size);
    uint64_t left_in = (uint64_t)st.st_size;
    for (;;) {
        ssize_t got = 0;
        if (left_in > 0) {
            got = read(in, ibuf, left_in < ibuf_len ? (size_t)left_in : ibuf_len);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                rc = got < 0 ? -errno : -EIO; /* the file shrank under us */
                goto out;
            }
            left_in -= (uint64_t)got;
        }
        ZSTD_EndDirective mode = left_in == 0 ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer ib = {ibuf, (size_t)got, 0};
        size_t pending;
        do {
            ZSTD_outBuffer ob = {obuf, obuf_len, 0};
            pending = ZSTD_compressStream2(cctx, &ob, &ib, mode);
            if (ZSTD_isError(pending)) {
                rc = -EIO;
                goto out;
            }
            if ((rc = write_all(out, obuf, ob.pos)) < 0)
                goto out;
        } while (mode == ZSTD_e_end ? pending != 0 : ib.pos < ib.size);
        if (mode == ZSTD_e_end)
            break;
    }
    if (close(out) < 0) {
        out = -1;
        rc = -errno;
        goto out;
    }
    out = -1;
    if (rename(tmp, path) < 0)
        rc = -errno;
out:
    if (out >= 0)
        close(out);
    if (rc < 0 && tmp != NULL)
        unlink(tmp);
    close(in);
    ZSTD_freeCCtx(cctx);
    free(ibuf);
    free(obuf);
    free(tmp);
    return rc;
}
