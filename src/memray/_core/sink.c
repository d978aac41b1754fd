/* sink.c: file sinks for capture bytes (mapped and buffered) and compression
 * on exit. Owns the file descriptor and the mapping; knows no record layout
 * beyond "the first byte of a record is its tag". */
#define _GNU_SOURCE
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* The mapping starts at MAP_FIRST and each step doubles it up to MAP_STEP:
 * a short capture reserves little disk before it is trimmed at close, a long
 * one remaps once per 32 MiB of records. */
#define MAP_FIRST ((size_t)1 << 20)
#define MAP_STEP ((size_t)32 << 20)
/* Buffered sink: one write(2) per this many bytes. */
#define BUF_SIZE ((size_t)1 << 20)
#define MR_UNLIKELY_SINK(x) __builtin_expect(!!(x), 0)

struct mr_sink {
    int fd;
    int buffered;
    uint64_t written; /* bytes of records handed to the sink */
    /* mapped sink */
    uint8_t *map;   /* shared mapping of [0, map_len) of the file */
    size_t map_len; /* bytes mapped and preallocated on disk */
    /* buffered sink */
    uint8_t *buf;
    size_t buf_used;
};

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

static int grow_map(mr_sink_t *s, size_t need)
{
    size_t step = s->map_len == 0 ? MAP_FIRST : s->map_len < MAP_STEP ? s->map_len : MAP_STEP;
    while (step < need)
        step += MAP_STEP;
    size_t new_len = s->map_len + step;
    /* Reserve the blocks now: a write to a mapped page the filesystem cannot
     * back raises SIGBUS, which would kill the tracked program. */
    int rc = posix_fallocate(s->fd, (off_t)s->map_len, (off_t)step);
    if (rc == EOPNOTSUPP || rc == EINVAL)
        rc = ftruncate(s->fd, (off_t)new_len) < 0 ? errno : 0;
    if (rc != 0)
        return -rc;
    void *m;
    if (s->map == NULL)
        m = mmap(NULL, new_len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    else
        m = mremap(s->map, s->map_len, new_len, MREMAP_MAYMOVE);
    if (m == MAP_FAILED)
        return -errno;
    s->map = m;
    s->map_len = new_len;
    return 0;
}

static int flush_buffer(mr_sink_t *s)
{
    int rc = write_all(s->fd, s->buf, s->buf_used);
    s->buf_used = 0;
    return rc;
}

/* Writes left before injected failures start; 0 = not armed. Only set by
 * tests, before tracking starts. */
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
        if (s->buf_used + n > BUF_SIZE) {
            int rc = flush_buffer(s);
            if (rc < 0)
                return rc;
            if (n > BUF_SIZE) {
                if ((rc = write_all(s->fd, p, n)) < 0)
                    return rc;
                s->written += n;
                return 0;
            }
        }
        memcpy(s->buf + s->buf_used, p, n);
        s->buf_used += n;
        s->written += n;
        return 0;
    }
    if (s->written + n > s->map_len) {
        int rc = grow_map(s, (size_t)(s->written + n - s->map_len));
        if (rc < 0)
            return rc;
    }
    uint8_t *dst = s->map + s->written;
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

int mr_sink_close(mr_sink_t *s)
{
    int rc = 0;
    if (s->buffered) {
        rc = flush_buffer(s);
        free(s->buf);
    } else {
        if (s->map != NULL && munmap(s->map, s->map_len) < 0 && rc == 0)
            rc = -errno;
        if (ftruncate(s->fd, (off_t)s->written) < 0 && rc == 0)
            rc = -errno;
    }
    if (close(s->fd) < 0 && rc == 0)
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
    close(s->fd);
    free(s);
}

/* zstd level 1: measured on an allocation-heavy capture (see the closing note
 * of the tracking issue) it compresses within a few percent of level 3 at
 * well under half the time, and compression runs while the user waits. */
#define ZSTD_LEVEL 1

int mr_sink_compress_file(const char *path)
{
    int rc = 0;
    int in = -1, out = -1;
    void *src = MAP_FAILED;
    size_t src_len = 0;
    char *tmp = NULL;
    ZSTD_CCtx *cctx = NULL;
    uint8_t *obuf = NULL;
    size_t obuf_len = ZSTD_CStreamOutSize();

    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    struct stat st;
    if (fstat(in, &st) < 0) {
        rc = -errno;
        goto out;
    }
    src_len = (size_t)st.st_size;
    if (src_len == 0)
        goto out;
    src = mmap(NULL, src_len, PROT_READ, MAP_PRIVATE, in, 0);
    if (src == MAP_FAILED) {
        rc = -errno;
        goto out;
    }
    size_t plen = strlen(path);
    tmp = malloc(plen + 16);
    obuf = malloc(obuf_len);
    cctx = ZSTD_createCCtx();
    if (tmp == NULL || obuf == NULL || cctx == NULL) {
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
    ZSTD_CCtx_setPledgedSrcSize(cctx, src_len);
    ZSTD_inBuffer ib = {src, src_len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {obuf, obuf_len, 0};
        size_t left = ZSTD_compressStream2(cctx, &ob, &ib, ZSTD_e_end);
        if (ZSTD_isError(left)) {
            rc = -EIO;
            goto out;
        }
        if ((rc = write_all(out, obuf, ob.pos)) < 0)
            goto out;
        if (left == 0)
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
    if (src != MAP_FAILED)
        munmap(src, src_len);
    close(in);
    ZSTD_freeCCtx(cctx);
    free(obuf);
    free(tmp);
    return rc;
}
