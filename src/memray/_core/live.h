/* live.h: the reading side of live tracking. Connects to a tracked program's
 * socket, decodes its record stream on a background thread with reader.c and
 * folds allocations into an aggregate.c live set, so that what is alive now
 * can be asked for at any moment. Plain C, no Python; it knows no byte
 * layout (the reader does). */
#ifndef MR_LIVE_H
#define MR_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "aggregate.h"
#include "reader.h"

typedef struct mr_live mr_live_t;

/* Connects to host:port (numeric address or name) within timeout_ms and
 * returns the connected descriptor in *fd. 0 or -errno: -ECONNREFUSED
 * (nothing listening), -ETIMEDOUT, -EADDRNOTAVAIL (unknown host)... */
int mr_live_connect(const char *host, unsigned port, int timeout_ms, int *fd);

/* Takes fd (closed on failure too), waits at most timeout_ms for the
 * capture header, and starts the background thread that reads the rest.
 * On failure returns an MR_ERR_* code (not a memray stream, one from a newer
 * memray, an aggregated capture...), -ETIMEDOUT (no header in time) or
 * -errno, with a message in err. */
int mr_live_open(mr_live_t **out, int fd, int timeout_ms, char *err, size_t errlen);

/* Stops the background thread (it wakes up from a blocked read) and closes
 * the connection. What was read stays available. Idempotent. */
void mr_live_close(mr_live_t *l);

/* mr_live_close, then frees everything. */
void mr_live_destroy(mr_live_t *l);

/* The lock guarding the live set and the decoder's tables. The background
 * thread holds it while it decodes and lets go while it waits for bytes, and
 * every few thousand events when someone is waiting, so taking it never
 * waits on the network. Never call into the background thread's code with
 * it held from outside (there is none to call). */
void mr_live_lock(mr_live_t *l);
void mr_live_unlock(mr_live_t *l);

/* The header; valid for the object's life, no lock needed. */
const mr_header_t *mr_live_header(const mr_live_t *l);

/* The decoder, for its tables (stacks, code objects, thread names, mappings):
 * lock held. */
const mr_reader_t *mr_live_reader_locked(const mr_live_t *l);

typedef struct mr_live_status {
    int active;                 /* the stream is still being read */
    mr_end_t end;               /* how it ended; MR_END_NONE while active */
    int error;                  /* 0, or what ended it abnormally (MR_ERR_*, -errno) */
    uint64_t heap, peak;        /* bytes alive now, most bytes alive so far */
    uint64_t rss;               /* resident set size of the latest memory sample */
    uint64_t ms;                /* ms since tracking started, of the latest sample */
    uint64_t n_allocs, n_frees; /* events folded so far */
} mr_live_status_t;

/* Lock held. msg receives "" or the text of status->error. */
void mr_live_status_locked(const mr_live_t *l, mr_live_status_t *status, char *msg, size_t msglen);

/* Locations with allocations alive now, threads apart or merged (tid 0), in
 * a malloc'd array (the caller frees); leak_n/leak_bytes hold what is alive.
 * Lock held. 0 or -ENOMEM. */
int mr_live_rows_locked(mr_live_t *l, int merge_threads, mr_agg_row_t **rows, size_t *n);

#endif
