/* tracker.h: the global tracking state (on/off, options, the writer lock, the
 * capture being written), per-thread state, fork handling and the memory
 * sampler thread. Hooks ask it whether to record and hand it events; it knows
 * no byte layout (writer.c does). */
#ifndef MR_TRACKER_H
#define MR_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#define MR_LIKELY(x) __builtin_expect(!!(x), 1)
#define MR_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MR_TLS __attribute__((tls_model("initial-exec")))

/* Nonzero while events are recorded. Read unlocked by every hook: a stale
 * read lets at most the events racing with start/stop through or not; the
 * recorder re-checks under the writer lock before writing. */
extern int mr_tracker_active;
/* Nonzero while this thread is inside the tracker (or a wrapped allocator):
 * allocations it makes then are the profiler's own and pass straight through. */
extern __thread int mr_tracker_guard MR_TLS;

static inline int mr_tracker_wants(void)
{
    return MR_UNLIKELY(__atomic_load_n(&mr_tracker_active, __ATOMIC_RELAXED)) && !mr_tracker_guard;
}

/* Record an event of the calling thread. Call only when mr_tracker_wants().
 * An allocation is recorded after the allocator returned it, a deallocation
 * before the memory is handed back. len: unmapped length for MR_MUNMAP. */
void mr_tracker_record_alloc(void *ptr, size_t size, unsigned allocator);
void mr_tracker_record_free(void *ptr, unsigned allocator, size_t len);
/* An mmap (MR_MMAP) with its flags and fd: one of a file or of shared
 * memory also counts in the MEMORY records' mapped heap. */
void mr_tracker_record_mmap(void *ptr, size_t len, int flags, int fd);
/* The set of loaded objects changed (dlopen, dlclose): native captures write
 * the new map. */
void mr_tracker_objects_changed(void);
/* Names thread tid (0: the calling thread). */
void mr_tracker_record_thread_name(uint32_t tid, const char *name, size_t len);
/* The calling thread now runs a greenlet recorded as thread tid (0: the
 * thread's own id again), until the next call or the end of this session. */
void mr_tracker_set_greenlet_tid(uint32_t tid);

typedef struct mr_tracker_options {
    const char *path;         /* capture file; with sink: only a name for messages */
    int overwrite;            /* replace an existing file */
    int buffered;             /* plain writes instead of the shared mapping */
    int compress;             /* compress the capture when tracking stops */
    int aggregated;           /* FileFormat.AGGREGATED_ALLOCATIONS */
    int native;               /* record native stacks */
    int trace_pymalloc;       /* wrap the pymalloc domains (GIL held at start) */
    int follow_fork;          /* forked children write <fork_base>.<pid> */
    const char *fork_base;    /* NULL: path (follow_children: the root's path) */
    uint32_t parent_pid;      /* recorded in the header: the tracked process this
                               * one descends from, 0: none */
    unsigned interval_ms;     /* memory sampling period */
    const char *command_line; /* recorded in the header */
    int python_allocator;     /* MR_PYALLOC_* */
    struct mr_sink *sink;     /* live tracking: an open socket sink to stream to
                               * instead of a file; the tracker takes it over,
                               * also when starting fails */
    uint64_t sample_every;    /* 0: every allocation; N: each allocated byte is
                               * sampled with probability 1/N (format.h
                               * mr_sample_weight); mmaps are always recorded */
} mr_tracker_options_t;

/* Starts tracking. The caller holds the GIL. 0, -EBUSY (already tracking), or
 * -errno from opening/writing the capture (nothing is left running). */
int mr_tracker_start(const mr_tracker_options_t *opts);

/* Stops tracking, writes the end of the capture, restores every hook and
 * compresses if asked. The caller holds the GIL. Returns 0, -ESRCH (not
 * tracking), or the -errno that stopped recording early (disk full, write
 * error) so the caller can report it; the capture is closed in every case. */
int mr_tracker_stop(void);

/* In a child that follows the fork, once fork() has returned (the Python
 * module calls it from os.register_at_fork): starts the memory sampler. */
void mr_tracker_after_fork_in_child(void);
/* The errno that stopped the last stop's compression on exit (the capture
 * is then complete, and uncompressed), 0 if it did not fail. */
int mr_tracker_compress_error(void);
int mr_tracker_is_started(void);
uint32_t mr_tracker_gettid(void);
/* Path of the capture this process writes (differs in a forked child). */
const char *mr_tracker_path(void);

#endif
