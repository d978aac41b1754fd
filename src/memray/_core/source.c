/* source.c: buffered reading of a capture file, plain or zstd-compressed.
 * Owns the descriptor, the read buffer and the zstd stream; hands the decoder
 * windows of contiguous bytes. No knowledge of the record layout beyond the
 * zstd magic. */
#define _GNU_SOURCE
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "format.h"

/* One read buffer of 1 MiB: large enough that the syscall and memmove costs
 * vanish next to decoding, small enough to stay in L2/L3. */
#define BUF_SIZE ((size_t)1 << 20)
#define ZIN_SIZE ((size_t)1 << 20)
#define ZSTD_MAGIC_LEN 4

enum { KIND_UNKNOWN, KIND_PLAIN, KIND_ZSTD };

struct mr_source {
    int fd;               /* -1 for a generated source */
    mr_source_gen_fn gen; /* generated source: where the bytes come from */
    void (*gen_free)(void *ctx);
    void *gen_ctx;
    int seekable;      /* 1: pread at file_off; 0: read(2) in order */
    uint64_t file_off; /* next raw byte to read (seekable fds) */
    int raw_eof;       /* the raw file has no more bytes */
    int kind;          /* KIND_*: decided on the first peek */

    uint8_t *buf; /* decoded bytes: [pos, end) not yet consumed */
    size_t cap, pos, end;
    uint64_t consumed; /* stream offset of buf[pos] */

    ZSTD_DCtx *dctx; /* KIND_ZSTD only */
    uint8_t *zin;    /* compressed bytes: [zpos, zend) not yet decompressed */
    size_t zcap, zpos, zend;
    char detail[160];
};

/* The calling thread's wait hook (mr_source_set_wait_hook). */
static __thread mr_source_wait_fn t_wait_fn;
static __thread void *t_wait_ctx;

void mr_source_set_wait_hook(mr_source_wait_fn fn, void *ctx)
{
    t_wait_fn = fn;
    t_wait_ctx = ctx;
}

static ssize_t stream_read(int fd, uint8_t *dst, size_t len)
{
    mr_source_wait_fn fn = t_wait_fn;
    if (fn != NULL)
        fn(t_wait_ctx, 1);
    ssize_t n = read(fd, dst, len);
    int err = errno;
    if (fn != NULL)
        fn(t_wait_ctx, 0);
    errno = err;
    return n;
}

static ssize_t raw_read(mr_source_t *s, uint8_t *dst, size_t len)
{
    for (;;) {
        ssize_t n = s->gen != NULL ? s->gen(s->gen_ctx, dst, len, s->detail, sizeof s->detail)
                    : s->seekable  ? pread(s->fd, dst, len, (off_t)s->file_off)
                                   : stream_read(s->fd, dst, len);
        if (n >= 0) {
            s->file_off += (uint64_t)n;
            if (n == 0)
                s->raw_eof = 1;
            return n;
        }
        if (s->gen != NULL)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

int mr_source_open_fd(mr_source_t **out, int fd)
{
    mr_source_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        close(fd);
        return -ENOMEM;
    }
    s->fd = fd;
    s->seekable = lseek(fd, 0, SEEK_CUR) >= 0;
    s->cap = BUF_SIZE;
    s->buf = malloc(s->cap);
    if (s->buf == NULL) {
        mr_source_close(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

int mr_source_open_gen(mr_source_t **out, mr_source_gen_fn gen, void (*gen_free)(void *ctx),
                       void *ctx)
{
    mr_source_t *s = calloc(1, sizeof *s);
    uint8_t *buf = s != NULL ? malloc(BUF_SIZE) : NULL;
    if (buf == NULL) {
        free(s);
        gen_free(ctx);
        return -ENOMEM;
    }
    *s = (mr_source_t){
        .fd = -1, .gen = gen, .gen_free = gen_free, .gen_ctx = ctx, .buf = buf, .cap = BUF_SIZE};
    *out = s;
    return 0;
}

int mr_source_open(mr_source_t **out, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return mr_source_open_fd(out, fd);
}

void mr_source_close(mr_source_t *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->gen_free != NULL)
        s->gen_free(s->gen_ctx);
    ZSTD_freeDCtx(s->dctx);
    free(s->zin);
    free(s->buf);
    free(s);
}

int mr_source_rewind(mr_source_t *s)
{
    if (!s->seekable)
        return -ESPIPE;
    s->file_off = 0;
    s->raw_eof = 0;
    s->kind = KIND_UNKNOWN;
    s->pos = s->end = 0;
    s->consumed = 0;
    s->zpos = s->zend = 0;
    s->detail[0] = '\0';
    if (s->dctx != NULL)
        ZSTD_DCtx_reset(s->dctx, ZSTD_reset_session_only);
    return 0;
}

/* Moves the unconsumed bytes to the front and makes room for n of them. */
static int make_room(mr_source_t *s, size_t n)
{
    size_t have = s->end - s->pos;
    if (s->pos > 0) {
        memmove(s->buf, s->buf + s->pos, have);
        s->pos = 0;
        s->end = have;
    }
    if (n > s->cap) {
        size_t cap = s->cap * 2 > n ? s->cap * 2 : n;
        uint8_t *b = realloc(s->buf, cap);
        if (b == NULL)
            return -ENOMEM;
        s->buf = b;
        s->cap = cap;
    }
    return 0;
}

/* The first bytes decide the kind: a zstd frame magic means compressed; the
 * bytes read so far then move to the compressed input buffer. */
static int detect(mr_source_t *s)
{
    while (s->end < ZSTD_MAGIC_LEN && !s->raw_eof) {
        ssize_t got = raw_read(s, s->buf + s->end, s->cap - s->end);
        if (got < 0)
            return (int)got;
        s->end += (size_t)got;
    }
    if (s->end < ZSTD_MAGIC_LEN || memcmp(s->buf, MR_ZSTD_MAGIC, ZSTD_MAGIC_LEN) != 0) {
        s->kind = KIND_PLAIN;
        return 0;
    }
    if (s->zcap < s->end || s->zin == NULL) {
        size_t zcap = ZIN_SIZE > s->end ? ZIN_SIZE : s->end;
        uint8_t *z = realloc(s->zin, zcap);
        if (z == NULL)
            return -ENOMEM;
        s->zin = z;
        s->zcap = zcap;
    }
    if (s->dctx == NULL && (s->dctx = ZSTD_createDCtx()) == NULL)
        return -ENOMEM;
    memcpy(s->zin, s->buf, s->end);
    s->zpos = 0;
    s->zend = s->end;
    s->pos = s->end = 0;
    s->kind = KIND_ZSTD;
    return 0;
}

static int fill_plain(mr_source_t *s, size_t n)
{
    while (s->end - s->pos < n && !s->raw_eof) {
        ssize_t got = raw_read(s, s->buf + s->end, s->cap - s->end);
        if (got < 0)
            return (int)got;
        s->end += (size_t)got;
    }
    return 0;
}

static int fill_zstd(mr_source_t *s, size_t n)
{
    while (s->end - s->pos < n) {
        if (s->zpos == s->zend) {
            if (s->raw_eof)
                return 0; /* complete or cut off mid-frame: either way, the end */
            s->zpos = s->zend = 0;
            ssize_t got = raw_read(s, s->zin, s->zcap);
            if (got < 0)
                return (int)got;
            s->zend = (size_t)got;
            continue;
        }
        ZSTD_outBuffer out = {s->buf, s->cap, s->end};
        ZSTD_inBuffer in = {s->zin, s->zend, s->zpos};
        size_t ret = ZSTD_decompressStream(s->dctx, &out, &in);
        if (ZSTD_isError(ret)) {
            snprintf(s->detail, sizeof s->detail, "zstd: %s", ZSTD_getErrorName(ret));
            return -EBADMSG;
        }
        s->end = out.pos;
        s->zpos = in.pos;
    }
    return 0;
}

ssize_t mr_source_peek(mr_source_t *s, size_t n, const uint8_t **p)
{
    if (n > MR_SOURCE_MAX_PEEK)
        return -EFBIG;
    if (s->end - s->pos < n) {
        int rc = make_room(s, n);
        if (rc == 0 && s->kind == KIND_UNKNOWN)
            rc = detect(s);
        if (rc == 0)
            rc = s->kind == KIND_ZSTD ? fill_zstd(s, n) : fill_plain(s, n);
        if (rc < 0)
            return rc;
    }
    *p = s->buf + s->pos;
    return (ssize_t)(s->end - s->pos);
}

void mr_source_consume(mr_source_t *s, size_t n)
{
    if (n > s->end - s->pos)
        n = s->end - s->pos;
    s->pos += n;
    s->consumed += n;
}

uint64_t mr_source_offset(const mr_source_t *s)
{
    return s->consumed;
}

int mr_source_compressed(const mr_source_t *s)
{
    return s->kind == KIND_ZSTD;
}

const char *mr_source_detail(const mr_source_t *s)
{
    return s->detail;
}
