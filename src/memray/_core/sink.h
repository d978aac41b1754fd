/* sink.h: where encoded capture bytes go. The file sink writes through a
 * shared mapping grown in large preallocated steps, so a process killed by
 * SIGKILL leaves every record it finished on disk; the buffered sink uses
 * plain write(2); the socket sink streams to one connected reader (live
 * tracking). A sink knows nothing of the byte layout it carries. Callers
 * serialize (the tracker's writer lock). */
#ifndef MR_SINK_H
#define MR_SINK_H

#include <stddef.h>
#include <stdint.h>

typedef struct mr_sink mr_sink_t;

/* Opens path for writing: created exclusively unless overwrite. 0 or -errno. */
int mr_sink_open_file(const char *path, int overwrite, int buffered, mr_sink_t **out);

/* Socket sink. Listens on address:port (SO_REUSEADDR, IPv4 or IPv6, numeric
 * or a host name) and returns the listening descriptor. port 0 binds a free
 * port; *bound_port (if not NULL) receives the port bound. 0 or -errno:
 * -EADDRINUSE, -EACCES, -EADDRNOTAVAIL (no such local address)... */
int mr_sink_socket_listen(const char *address, unsigned port, int *listen_fd, unsigned *bound_port);

/* Waits up to timeout_ms (-1: forever) for one reader to connect to
 * listen_fd and returns a sink streaming to it; the listener stays open (the
 * caller closes it). -ETIMEDOUT when no reader came, -EINTR when a signal
 * arrived, or -errno. */
int mr_sink_socket_accept(int listen_fd, int timeout_ms, mr_sink_t **out);

/* Both of the above, waiting forever: listens, accepts exactly one reader,
 * closes the listener. */
int mr_sink_open_socket(const char *address, unsigned port, mr_sink_t **out);

/* A write to the socket that makes no progress for this long means the
 * reader is gone or stuck: the sink fails with -ETIMEDOUT rather than
 * blocking the tracked program (which holds the writer lock) forever. */
#define MR_SINK_SOCKET_SEND_TIMEOUT_MS 10000

/* Callback sink: hands every byte to fn, in order, in pieces of up to 64 KiB
 * (at flush and close, and whenever its buffer fills). fn returns 0 or
 * -errno, which the write that called it returns. Used by the merge to
 * stream a capture into a reader without a file. */
typedef int (*mr_sink_write_fn)(void *ctx, const uint8_t *p, size_t n);
int mr_sink_open_callback(mr_sink_write_fn fn, void *ctx, mr_sink_t **out);
/* Sends what the socket sink holds in its buffer; a no-op for the others.
 * The tracker calls it periodically, so a reader sees the records of a
 * program that allocates little. A callback sink hands its buffer on. 0 or -errno (-EPIPE,
 * -ECONNRESET, -ETIMEDOUT); a socket sink that failed once keeps failing with that error. */
int mr_sink_flush(mr_sink_t *sink);

/* 1 for a socket sink. */
int mr_sink_is_socket(const mr_sink_t *sink);

/* Appends one record of n bytes. In the file sink the first byte becomes
 * visible last, so a reader of a killed process's file sees either the whole
 * record or a zero tag. 0 or -errno (ENOSPC, EFBIG, EIO...). */
int mr_sink_write(mr_sink_t *sink, const void *buf, size_t n);

/* Flushes, trims the file to what was written (file sinks) and closes. 0 or -errno; the
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
