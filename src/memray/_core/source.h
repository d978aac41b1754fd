/* source.h: the bytes of one capture, as the decoder sees them: a plain file
 * or a file holding zstd frames (detected by magic, decompressed streaming),
 * read through one large buffer. Knows nothing of records. Not thread-safe:
 * one decoder owns one source. */
#ifndef MR_SOURCE_H
#define MR_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct mr_source mr_source_t;

/* Opens path read-only. 0 or -errno (-ENOENT, -EACCES, -ENOMEM, ...). */
int mr_source_open(mr_source_t **out, const char *path);

/* Reads from fd, which the source then owns (closes). A seekable fd is read
 * with pread from offset 0 and never moved, so several sources may share
 * dup()s of one descriptor; other fds (pipes, sockets) are read in order and
 * cannot be rewound. 0 or -errno; on error fd is closed. */
int mr_source_open_fd(mr_source_t **out, int fd);

/* A source whose bytes gen makes on demand: it writes up to len bytes at
 * dst and returns how many (0: the data ended) or -errno (-EBADMSG with a
 * line in detail: then reported as mr_source_detail). Read in order, not
 * rewindable. gen_free(ctx) runs at close (and on failure here). The merge
 * streams a merged capture to a reader this way. */
typedef ssize_t (*mr_source_gen_fn)(void *ctx, uint8_t *dst, size_t len, char *detail,
                                    size_t detail_len);
int mr_source_open_gen(mr_source_t **out, mr_source_gen_fn gen, void (*gen_free)(void *ctx),
                       void *ctx);
void mr_source_close(mr_source_t *s);

/* Called with waiting = 1 before, and 0 after, every read(2) that the calling
 * thread makes on a non-seekable fd (a socket or pipe, where a read may block
 * until the writer sends more). The live reader uses it to let go of the lock
 * guarding the decoder's tables while it waits for bytes; the decoder changes
 * its tables only between reads. Thread-local; fn NULL removes it. */
typedef void (*mr_source_wait_fn)(void *ctx, int waiting);
void mr_source_set_wait_hook(mr_source_wait_fn fn, void *ctx);

/* Back to the first byte, for another pass. 0, -ESPIPE when the fd is not
 * seekable, or -errno. */
int mr_source_rewind(mr_source_t *s);

/* Makes at least n contiguous bytes from the current position available at
 * *p, or fewer only when the data ends before that. Returns how many are
 * available (may exceed n; 0 at end of data) or -errno: -EBADMSG for corrupt
 * compressed data (details in mr_source_detail), -EFBIG when n exceeds
 * MR_SOURCE_MAX_PEEK. A compressed stream cut off mid-frame ends where its
 * last decodable byte does, as a truncated plain file would. *p stays valid
 * until the next peek, consume, rewind or close. */
ssize_t mr_source_peek(mr_source_t *s, size_t n, const uint8_t **p);

/* Moves the position forward by n bytes, at most what the last peek made
 * available. */
void mr_source_consume(mr_source_t *s, size_t n);

/* Bytes consumed since the start, in the decompressed stream. */
uint64_t mr_source_offset(const mr_source_t *s);

/* 1 when the file is zstd-compressed (known after the first peek). */
int mr_source_compressed(const mr_source_t *s);

/* Text of the last decompression error, "" if none. */
const char *mr_source_detail(const mr_source_t *s);

/* Largest n a peek accepts: the longest record the decoder must see whole
 * (a string of MR_MAX_STRING bytes plus its record head). */
#define MR_SOURCE_MAX_PEEK ((size_t)(3u << 20))

#endif
