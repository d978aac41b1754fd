/* sink.h: where encoded capture bytes go. The file sink writes through a
 * shared mapping grown in large preallocated steps, so a process killed by
 * SIGKILL leaves every record it finished on disk; the buffered sink uses
 * plain write(2). A sink knows nothing of the byte layout it carries. Callers
 * serialize (the tracker's writer lock). */
#ifndef MR_SINK_H
#define MR_SINK_H

#include <stddef.h>
#include <stdint.h>

typedef struct mr_sink mr_sink_t;

/* Opens path for writing: created exclusively unless overwrite. 0 or -errno. */
int mr_sink_open_file(const char *path, int overwrite, int buffered, mr_sink_t **out);

/* Appends one record of n bytes. In the file sink the first byte becomes
 * visible last, so a reader of a killed process's file sees either the whole
 * record or a zero tag. 0 or -errno (ENOSPC, EFBIG, EIO...). */
int mr_sink_write(mr_sink_t *sink, const void *buf, size_t n);

/* Flushes, trims the file to what was written and closes. 0 or -errno; the
 * sink is freed either way. */
int mr_sink_close(mr_sink_t *sink);

/* Releases the sink without writing anything more: for a forked child that
 * inherited its parent's sink. */
void mr_sink_abandon(mr_sink_t *sink);

/* Bytes written so far. */
uint64_t mr_sink_size(const mr_sink_t *sink);

/* Fault injection for tests: the n-th mr_sink_write from now on (and every
 * one after it) fails with -EIO; 0 disarms. */
void mr_sink_inject_failure(uint64_t n);

/* Replaces the capture at path by one zstd frame holding it (written to a
 * temporary file, then renamed). 0 or -errno; on error path is unchanged. */
int mr_sink_compress_file(const char *path);

#endif
