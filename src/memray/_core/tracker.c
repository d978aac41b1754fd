/* tracker.c: global tracking state, per-thread state, the writer lock, fork
 * handlers and the memory sampler thread. Events come in from hooks.c and the
 * pymalloc wrappers (pymalloc.c); stacks come from pystack.c; bytes go out via writer.c or,
 * for aggregated captures, into aggregate.c until tracking stops. */
#define _GNU_SOURCE
#include "tracker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "aggregate.h"
#include "check.h"
#include "format.h"
#include "hashmap.h"
#include "hooks.h"
#include "native.h"
#include "procmem.h"
#include "pymalloc.h"
#include "pystack.h"
#include "sink.h"
#include "writer.h"

int mr_tracker_active;
__thread int mr_tracker_guard MR_TLS;

typedef struct mr_thread {
    /* Sampling: bytes this thread allocates before its next sample, and its
     * random state; valid for capture sample_gen (g.generation). */
    uint64_t sample_left;
    uint64_t sample_gen;
    uint64_t rng;
    uint32_t tid;
    /* The greenlet running on this thread, as a thread of its own: its id
     * stands for tid in the records of the session it was set in. */
    uint32_t greenlet_tid;
    uint32_t greenlet_session;
    mr_pystack_cache_t py;
    mr_native_cache_t native;
} mr_thread_t;

static __thread mr_thread_t *t_thread MR_TLS;
static pthread_key_t thread_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* [lo, hi): a tracked mmap of a file or shared memory (mapped_add_locked). */
typedef struct mapped_range {
    uint64_t lo, hi;
} mapped_range_t;

/* Everything below is guarded by g.lock (the writer lock) unless said
 * otherwise. */
static struct {
    mr_mutex_t lock; /* the writer lock */
    int started;     /* between start and stop (GIL-holding callers only) */
    int failed;      /* errno that stopped recording early, 0 if none */
    int inherited;   /* forked child not following: the capture is the parent's */
    mr_writer_t writer;
    mr_agg_t *agg;             /* aggregated captures: the events fold in here */
    uint64_t generation;       /* bumped per capture: invalidates per-thread caches;
                                * written atomically, hooks read it unlocked */
    mr_tracker_options_t opts; /* strings owned (copies) */
    char *path;                /* the file this process writes */
    int socket;                /* the capture streams to a live reader (no file) */
    uint64_t flushed_at;       /* socket: stream size at the end of the last flush */
    uint64_t snap_ms;          /* ms_since_start of the last memory snapshot */
    int snapped;               /* a snapshot was written to this capture */
    uint16_t flags;            /* MR_FLAG_*; set by start, atomically: hooks read it unlocked */
    uint64_t start_mono_ns;
    /* sampler: its own mutex and condition so stop can wake it */
    pthread_mutex_t sampler_lock;
    pthread_cond_t sampler_cond;
    int sampler_stop;    /* sampler_lock */
    int sampler_ready;   /* sampler_lock: the thread is set up and waiting */
    int sampler_running; /* GIL-holding callers and fork child */
    int sampler_pending; /* a followed fork child: start it once out of fork() */
    pthread_t sampler;
    /* /proc files of the memory samples: opened by start (and by a followed
     * fork child) before the sampler runs, closed after it stopped, so the
     * sampler reads them without the lock. */
    mr_procmem_t procmem;
    /* Tracked mmap allocations of files or shared memory, as [lo, hi)
     * ranges cut by munmap records the way readers cut the heap's blocks,
     * and their total: the MEMORY records' mapped heap (mr_mem_split_t). */
    mapped_range_t *mapped;
    size_t n_mapped, cap_mapped;
    uint64_t mapped_bytes;
    uint32_t session;   /* counts Tracker starts */
    int compress_error; /* errno of the last stop's compression, 0 if none */
    /* Sampling (opts.sample_every > 0): written at start, read unlocked by
     * hooks (atomically). */
    uint64_t sample_every;
    mr_hm_t sampled; /* the sampled blocks alive: address -> 1 */
    int filter_used; /* sample_filter was written since it was last cleared */
} g = {
    .lock = MR_MUTEX_INITIALIZER,
    .sampler_lock = PTHREAD_MUTEX_INITIALIZER,
    .procmem = MR_PROCMEM_INIT,
};

int mr_tracker_lock_held(void)
{
    return mr_mutex_held(&g.lock);
}

uint32_t mr_tracker_gettid(void)
{
    return (uint32_t)syscall(SYS_gettid);
}

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t ms_since_start(void)
{
    return (now_ns(CLOCK_MONOTONIC) - g.start_mono_ns) / 1000000u;
}

/* The thread is exiting (its key's destructor). Its guard stays raised: the
 * destructors that run after this one (libunwind frees its trace cache in the
 * last round) would otherwise make thread_get() build a new state that
 * nothing frees, a leak per exiting thread; under ThreadSanitizer that round
 * comes after TSan has finished the thread, and allocating there crashes.
 * What the thread frees from here on goes unrecorded. */
static void thread_destroy(void *arg)
{
    mr_thread_t *t = arg;
    mr_tracker_guard++;
    if (t_thread == t)
        t_thread = NULL;
    mr_pystack_cache_free(&t->py);
    mr_native_cache_free(&t->native);
    free(t);
}

static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);

/* Native unwinds hold this for reading, fork() for writing (atfork_prepare).
 * libunwind reads the loaded objects with dl_iterate_phdr, which holds the
 * loader's lock meanwhile, and glibc does not reset that lock in a child: a
 * fork landing during another thread's unwind left it held for good, and the
 * child hung in its first dl_iterate_phdr (its MAPPINGS record in
 * child_after_fork_locked, or its own first unwind); found by
 * tests/tsan/stress.c. Writers first, so a steady stream of unwinds cannot
 * starve fork. Never nested in another lock. */
static pthread_rwlock_t unwind_lock;

static void unwind_lock_init(void)
{
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&unwind_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
}

static void init_once(void)
{
    unwind_lock_init();
    pthread_key_create(&thread_key, thread_destroy);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* The calling thread's state, created on first use. Guard held. */
static mr_thread_t *thread_get(void)
{
    mr_thread_t *t = t_thread;
    if (MR_LIKELY(t != NULL))
        return t;
    /* thread_key is created by the first start, and a greenlet switch can
     * come before it (mr_tracker_set_greenlet_tid): pthread_setspecific on a
     * key never created set key 0, another library's (TSan's own in
     * tests/tsan/stress.c: its thread-exit countdown then never ended and
     * joining the thread hung). */
    pthread_once(&once, init_once);
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->tid = mr_tracker_gettid();
    pthread_setspecific(thread_key, t);
    t_thread = t;
    return t;
}

/* The thread id the calling thread's records carry. Called without the
 * lock: g.session is read atomically (a start may bump it meanwhile; a stale
 * value only makes a greenlet id of the session that just ended miss or
 * match once, and those records fail the generation check). */
static inline uint32_t record_tid(const mr_thread_t *t)
{
    uint32_t session = __atomic_load_n(&g.session, __ATOMIC_RELAXED);
    return MR_UNLIKELY(t->greenlet_session == session && t->greenlet_tid != 0) ? t->greenlet_tid
                                                                               : t->tid;
}

void mr_tracker_set_greenlet_tid(uint32_t tid)
{
    mr_tracker_guard++;
    mr_thread_t *t = thread_get();
    if (t != NULL) {
        t->greenlet_tid = tid;
        t->greenlet_session = __atomic_load_n(&g.session, __ATOMIC_RELAXED);
    }
    mr_tracker_guard--;
}

/* ---- sampling -------------------------------------------------------------
 * Each thread counts down the bytes to its next sample point; the points form
 * a Poisson process over allocated bytes (exponential gaps of mean
 * sample_every), so an allocation of s bytes holds one with probability
 * 1 - exp(-s/N), and after a sampled allocation the next gap starts afresh
 * (memorylessness). An allocation that is not sampled costs a subtraction
 * and a compare. A free must find out whether its block was sampled: a
 * counting filter of 2^20 one-byte counters indexed by the address's hash
 * answers "certainly not" without a lock for nearly every unsampled block;
 * only a possible hit takes the writer lock and asks the exact set. */

#define FILTER_BITS 20
static uint8_t sample_filter[1u << FILTER_BITS];

static inline size_t filter_slot(const void *ptr)
{
    return (size_t)(mr_hash64((uintptr_t)ptr) >> (64 - FILTER_BITS));
}

/* Counters saturate at 255 and then stay (a sticky "maybe"). */
static void filter_add_locked(const void *ptr)
{
    uint8_t *c = &sample_filter[filter_slot(ptr)];
    uint8_t v = __atomic_load_n(c, __ATOMIC_RELAXED);
    if (v != UINT8_MAX)
        __atomic_store_n(c, (uint8_t)(v + 1), __ATOMIC_RELAXED);
}

static void filter_remove_locked(const void *ptr)
{
    uint8_t *c = &sample_filter[filter_slot(ptr)];
    uint8_t v = __atomic_load_n(c, __ATOMIC_RELAXED);
    if (v != UINT8_MAX && v != 0)
        __atomic_store_n(c, (uint8_t)(v - 1), __ATOMIC_RELAXED);
}

/* The next gap: exponential with mean `every`, at least 1. */
static uint64_t sample_gap(mr_thread_t *t, uint64_t every)
{
    /* xorshift64*: 53 random bits make u in (0, 1]. */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    uint64_t bits = (t->rng * 0x2545F4914F6CDD1DULL) >> 11;
    double u = ((double)bits + 1.0) / 9007199254740992.0;
    double gap = -log(u) * (double)every;
    if (gap < 1.0)
        return 1;
    return gap >= 1.8e19 ? UINT64_MAX : (uint64_t)gap;
}

/* Whether this allocation is sampled; advances the thread's countdown. */
static int sample_hit(mr_thread_t *t, uint64_t every, uint64_t generation, size_t size)
{
    if (t->sample_gen != generation) {
        if (t->rng == 0)
            t->rng = mr_hash64(((uint64_t)t->tid << 32) ^ now_ns(CLOCK_MONOTONIC)) | 1;
        t->sample_gen = generation;
        t->sample_left = sample_gap(t, every);
    }
    if (t->sample_left > size) {
        t->sample_left -= size;
        return 0;
    }
    t->sample_left = sample_gap(t, every);
    return 1;
}

/* Recording broke (disk full, socket gone, out of memory): stop recording for
 * good, keep the program running, report at stop. */
static void fail_locked(int rc)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    if (g.failed == 0)
        g.failed = -rc;
    __atomic_store_n(&mr_tracker_active, 0, __ATOMIC_RELAXED);
}

static void mapped_add_locked(uint64_t lo, uint64_t len);
static void mapped_cut_locked(uint64_t lo, uint64_t len);

/* mapped: an mmap of a file or shared memory (mapped_add_locked). */
static void record_alloc(void *ptr, size_t size, unsigned allocator, int mapped)
{
    uint64_t every = __atomic_load_n(&g.sample_every, __ATOMIC_RELAXED);
    uint64_t generation = __atomic_load_n(&g.generation, __ATOMIC_RELAXED);
    int sampling = every != 0 && allocator != MR_MMAP;
    if (sampling) {
        /* The common case of a sampled capture: not this one. */
        mr_thread_t *ft = t_thread;
        if (MR_LIKELY(ft != NULL) && ft->sample_gen == generation && ft->sample_left > size) {
            ft->sample_left -= size;
            return;
        }
    }
    mr_tracker_guard++;
    mr_thread_t *t = thread_get();
    if (t == NULL || (sampling && !sample_hit(t, every, generation, size)))
        goto out;
    uint32_t tid = record_tid(t);
    int rc = mr_pystack_walk(&t->py, tid, generation);
    /* Unlocked, so atomic (start writes it while hooks run): it may still be
     * the last session's; the lock re-checks it below. */
    int native = __atomic_load_n(&g.flags, __ATOMIC_RELAXED) & MR_FLAG_NATIVE;
    if (native) {
        pthread_rwlock_rdlock(&unwind_lock);
        mr_native_walk(&t->native, generation);
        pthread_rwlock_unlock(&unwind_lock);
    }
    mr_mutex_lock(&g.lock);
    if (!mr_tracker_active || t->py.generation != g.generation)
        goto unlock;
    uint64_t node = 0, native_node = 0;
    if (rc == 0)
        rc = mr_pystack_resolve_locked(&t->py, &g.writer, &node);
    /* Never NATIVE_NODE records into a capture without native stacks. */
    if (rc == 0 && native && (g.flags & MR_FLAG_NATIVE))
        rc = mr_native_resolve_locked(&t->native, &g.writer, &native_node);
    if (rc == 0 && sampling) {
        /* A sampled capture of this session (the generation check above). */
        if (mr_hm_put(&g.sampled, (uintptr_t)ptr, 1) < 0)
            rc = -ENOMEM;
        else
            filter_add_locked(ptr);
    }
    if (rc == 0) {
        if (g.agg != NULL) {
            mr_loc_key_t key = {tid, allocator, node, native_node};
            /* Aggregated: the estimate goes in (the reader cannot weigh). */
            rc = mr_agg_alloc(g.agg, &key, (uintptr_t)ptr,
                              sampling ? mr_sample_weight(size, every) : size);
        } else {
            rc =
                mr_writer_alloc(&g.writer, tid, allocator, (uintptr_t)ptr, size, node, native_node);
        }
    }
    if (rc < 0)
        fail_locked(rc);
    else if (mapped)
        mapped_add_locked((uintptr_t)ptr, size);
unlock:
    mr_mutex_unlock(&g.lock);
out:
    mr_tracker_guard--;
}

void mr_tracker_record_alloc(void *ptr, size_t size, unsigned allocator)
{
    record_alloc(ptr, size, allocator, 0);
}

void mr_tracker_record_mmap(void *ptr, size_t len, int flags, int fd)
{
    /* Pages of a shared mapping are shmem (anonymous) or the file's; those
     * of a private file mapping are the file's until written to. */
    int mapped = (flags & MAP_SHARED) || (!(flags & MAP_ANONYMOUS) && fd >= 0);
    record_alloc(ptr, len, MR_MMAP, mapped);
}

void mr_tracker_record_free(void *ptr, unsigned allocator, size_t len)
{
    int sampling = allocator != MR_MUNMAP && __atomic_load_n(&g.sample_every, __ATOMIC_RELAXED);
    if (sampling && __atomic_load_n(&sample_filter[filter_slot(ptr)], __ATOMIC_RELAXED) == 0)
        return; /* certainly not a sampled block */
    mr_tracker_guard++;
    mr_thread_t *t = thread_get();
    if (t == NULL)
        goto out;
    mr_mutex_lock(&g.lock);
    if (sampling && mr_tracker_active) {
        if (mr_hm_del(&g.sampled, (uintptr_t)ptr) <= 0)
            goto unlock; /* not sampled (or an earlier session's) */
        filter_remove_locked(ptr);
    }
    if (mr_tracker_active) {
        if (g.agg != NULL) {
            mr_agg_free(g.agg, (uintptr_t)ptr, len, allocator == MR_MUNMAP);
        } else {
            int rc = mr_writer_free(&g.writer, record_tid(t), allocator, (uintptr_t)ptr, len);
            if (rc < 0)
                fail_locked(rc);
        }
        if (allocator == MR_MUNMAP && g.n_mapped > 0)
            mapped_cut_locked((uintptr_t)ptr, len);
    }
unlock:
    mr_mutex_unlock(&g.lock);
out:
    mr_tracker_guard--;
}

void mr_tracker_objects_changed(void)
{
    if (!(__atomic_load_n(&g.flags, __ATOMIC_RELAXED) & MR_FLAG_NATIVE))
        return; /* unlocked early out, re-checked below */
    mr_tracker_guard++;
    mr_mutex_lock(&g.lock);
    if (mr_tracker_active && (g.flags & MR_FLAG_NATIVE)) {
        int rc = mr_native_write_mappings_locked(&g.writer);
        if (rc < 0)
            fail_locked(rc);
    }
    mr_mutex_unlock(&g.lock);
    mr_tracker_guard--;
}

void mr_tracker_record_thread_name(uint32_t tid, const char *name, size_t len)
{
    mr_tracker_guard++;
    if (tid == 0) {
        mr_thread_t *t = thread_get();
        tid = t ? t->tid : mr_tracker_gettid();
    }
    mr_mutex_lock(&g.lock);
    if (mr_tracker_active) {
        int rc = mr_writer_thread_name(&g.writer, tid, name, len);
        if (rc < 0)
            fail_locked(rc);
    }
    mr_mutex_unlock(&g.lock);
    mr_tracker_guard--;
}

/* A tracked mmap of [lo, lo + len) maps a file or shared memory. The range
 * is lost (and the mapped heap undercounts) only when out of memory. */
static void mapped_add_locked(uint64_t lo, uint64_t len)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    if (len == 0 || lo + len < lo)
        return;
    if (g.n_mapped == g.cap_mapped) {
        size_t cap = g.cap_mapped ? 2 * g.cap_mapped : 16;
        mapped_range_t *m = realloc(g.mapped, cap * sizeof *m);
        if (m == NULL)
            return;
        g.mapped = m;
        g.cap_mapped = cap;
    }
    g.mapped[g.n_mapped++] = (mapped_range_t){lo, lo + len};
    g.mapped_bytes += len;
}

/* A munmap of [lo, lo + len) was recorded: the part of each mapped range in
 * it leaves the mapped heap, as it leaves the heap in a reader. */
static void mapped_cut_locked(uint64_t lo, uint64_t len)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    uint64_t hi = lo + len < lo ? UINT64_MAX : lo + len;
    /* A tail split off below starts at hi: the loop passes it untouched. */
    for (size_t i = 0; i < g.n_mapped;) {
        mapped_range_t *r = &g.mapped[i];
        if (r->hi <= lo || r->lo >= hi) {
            i++;
            continue;
        }
        uint64_t a = r->lo > lo ? r->lo : lo, b = r->hi < hi ? r->hi : hi;
        g.mapped_bytes -= b - a;
        if (a == r->lo && b == r->hi) {
            *r = g.mapped[--g.n_mapped];
            continue;
        }
        if (a == r->lo) {
            r->lo = b;
        } else if (b == r->hi) {
            r->hi = a;
        } else { /* the middle: the tail becomes a range of its own */
            uint64_t tail_lo = b, tail_hi = r->hi;
            r->hi = a;
            g.mapped_bytes -= tail_hi - tail_lo; /* counted again by the add */
            mapped_add_locked(tail_lo, tail_hi - tail_lo);
        }
        i++;
    }
}

/* A memory snapshot (RSS and its split, and the heap when aggregating),
 * never closer than memory_interval_ms to the one before it (as memray 1.x):
 * the one at stop is left out when the last came less than an interval
 * earlier. mem: read beforehand by the caller (the sampler reads /proc
 * without holding the writer lock, ~10 us that allocating threads would
 * otherwise wait for), or NULL to read it here. */
static void snapshot_locked(const mr_procmem_sample_t *mem)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    if (!mr_tracker_active)
        return;
    uint64_t ms = ms_since_start();
    if (g.snapped && ms - g.snap_ms < g.opts.interval_ms)
        return;
    mr_procmem_sample_t now;
    if (mem == NULL) {
        mr_procmem_read(&g.procmem, &now);
        mem = &now;
    }
    mr_mem_split_t split = mem->split;
    split.mapped = g.mapped_bytes;
    int rc = mr_writer_memory_split(&g.writer, ms, mem->rss, g.agg != NULL,
                                    g.agg ? mr_agg_heap(g.agg) : 0, mem->has_split ? &split : NULL);
    if (rc < 0)
        fail_locked(rc);
    g.snap_ms = ms;
    g.snapped = 1;
}

/* When the next snapshot is due: an interval after the last one. */
static struct timespec next_snapshot_locked(void)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    uint64_t ns = g.start_mono_ns + (g.snap_ms + g.opts.interval_ms) * 1000000u;
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
                             .tv_nsec = (long)(ns % 1000000000u)};
}

/* Live tracking: hands the buffered records to the reader, so a live view
 * follows a program that allocates little. Called once per memory interval
 * with the stream's size before that interval's memory sample; a reader that
 * went away makes recording stop here (sticky failure).
 *
 * If the program wrote records since the last flush, a PAD record gives the
 * reader the look-ahead it decodes with (MR_READ_LOOKAHEAD): without it the
 * newest records would wait for about a dozen more samples (over 10 s at
 * memory_interval_ms=1000). An idle program costs nothing. */
static void flush_locked(uint64_t size_before_sample)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    if (!g.socket || !mr_tracker_active)
        return;
    int rc = 0;
    if (size_before_sample != g.flushed_at)
        rc = mr_writer_pad(&g.writer, MR_READ_LOOKAHEAD);
    g.flushed_at = mr_writer_size(&g.writer);
    if (rc == 0)
        rc = mr_writer_flush(&g.writer);
    if (rc < 0)
        fail_locked(rc);
}

/* Stream size before a memory sample, for flush_locked. */
static uint64_t stream_size_locked(void)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    return g.socket ? mr_writer_size(&g.writer) : 0;
}

static void *sampler_main(void *arg)
{
    (void)arg;
    mr_tracker_guard = 1; /* nothing this thread does is the program's */
    mr_mutex_lock(&g.lock);
    struct timespec next = next_snapshot_locked();
    mr_mutex_unlock(&g.lock);
    pthread_mutex_lock(&g.sampler_lock);
    g.sampler_ready = 1;
    pthread_cond_broadcast(&g.sampler_cond);
    while (!g.sampler_stop) {
        int rc = 0;
        while (!g.sampler_stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&g.sampler_cond, &g.sampler_lock, &next);
        if (g.sampler_stop)
            break;
        pthread_mutex_unlock(&g.sampler_lock);
        mr_procmem_sample_t mem;
        mr_procmem_read(&g.procmem, &mem);
        mr_mutex_lock(&g.lock);
        uint64_t before = stream_size_locked();
        snapshot_locked(&mem);
        flush_locked(before);
        next = next_snapshot_locked();
        mr_mutex_unlock(&g.lock);
        pthread_mutex_lock(&g.sampler_lock);
    }
    pthread_mutex_unlock(&g.sampler_lock);
    return NULL;
}

static int sampler_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g.sampler_cond, &ca);
    pthread_condattr_destroy(&ca);
    g.sampler_stop = 0;
    g.sampler_ready = 0;
    /* Signals are for the program's threads, never for this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g.sampler, NULL, sampler_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    /* Wait until the thread is set up. Until then it may be inside the
     * allocator (its C library and a sanitizer's runtime allocate while a
     * thread starts), and a fork() meanwhile would leave the child an
     * allocator lock that no thread of the child will ever release; once it
     * waits here it only sleeps, or works under the writer lock, which fork()
     * takes (seen with AddressSanitizer: a child forked right after the start
     * hung in its first allocation, 1 run in 6). */
    pthread_mutex_lock(&g.sampler_lock);
    while (!g.sampler_ready)
        pthread_cond_wait(&g.sampler_cond, &g.sampler_lock);
    pthread_mutex_unlock(&g.sampler_lock);
    g.sampler_running = 1;
    return 0;
}

static void sampler_stop(void)
{
    if (!g.sampler_running)
        return;
    pthread_mutex_lock(&g.sampler_lock);
    g.sampler_stop = 1;
    pthread_cond_signal(&g.sampler_cond);
    pthread_mutex_unlock(&g.sampler_lock);
    pthread_join(g.sampler, NULL);
    g.sampler_running = 0;
}

/* Removes what a failed start left on disk; a socket leaves nothing. */
static void discard_capture(const char *path)
{
    if (!g.socket)
        unlink(path);
}

/* Opens path (or takes over the open socket sink `given`) and writes the
 * header; the capture then belongs to g.writer. */
static int open_capture_locked(const char *path, int overwrite, int buffered, mr_sink_t *given)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    mr_sink_t *sink = given;
    int rc = 0;
    g.socket = given != NULL;
    g.flushed_at = 0;
    g.snapped = 0;
    g.n_mapped = 0; /* the heap of a new capture starts empty */
    g.mapped_bytes = 0;
    if (given == NULL && (rc = mr_sink_open_file(path, overwrite, buffered, &sink)) < 0)
        return rc;
    const char *cmd = g.opts.command_line ? g.opts.command_line : "";
    mr_header_info_t info = {
        .flags = g.flags,
        .python_allocator = (uint8_t)g.opts.python_allocator,
        .pid = (uint32_t)getpid(),
        .parent_pid = g.opts.parent_pid,
        .main_tid = mr_tracker_gettid(),
        .start_ms = now_ns(CLOCK_REALTIME) / 1000000u,
        .py_hexversion = mr_pystack_python_hexversion(),
        .interval_ms = g.opts.interval_ms,
        .command_line = cmd,
        .command_line_len = strlen(cmd),
        .sample_every = g.opts.sample_every,
    };
    g.start_mono_ns = now_ns(CLOCK_MONOTONIC);
    rc = mr_writer_init(&g.writer, sink, &info); /* the writer's sink from here on */
    g.writer.lock = &g.lock;
    if (rc < 0) {
        mr_writer_close(&g.writer);
        discard_capture(path);
        return rc;
    }
    if (g.opts.aggregated && (rc = mr_agg_new(&g.agg)) < 0) {
        mr_writer_close(&g.writer);
        discard_capture(path);
        return rc;
    }
    __atomic_add_fetch(&g.generation, 1, __ATOMIC_RELAXED); /* read unlocked by hooks */
    mr_pystack_reset_locked();
    mr_native_reset_locked();
    if (g.flags & MR_FLAG_NATIVE) {
        mr_native_init();
        if ((rc = mr_native_write_mappings_locked(&g.writer)) < 0) {
            mr_writer_close(&g.writer);
            discard_capture(path);
            return rc;
        }
    }
    return 0;
}

static void free_options(void)
{
    free((char *)g.opts.path);
    free((char *)g.opts.command_line);
    free((char *)g.opts.fork_base);
    free(g.path);
    g.opts.path = g.opts.command_line = g.opts.fork_base = NULL;
    g.path = NULL;
}

int mr_tracker_start(const mr_tracker_options_t *opts)
{
    pthread_once(&once, init_once);
    if (g.started) {
        if (opts->sink != NULL)
            mr_sink_abandon(opts->sink);
        return -EBUSY;
    }
    mr_tracker_guard++;
    mr_sink_t *given = opts->sink; /* ours from here on: closed on failure */
    int rc = 0;
    g.opts = *opts;
    g.opts.path = strdup(opts->path);
    g.opts.command_line = strdup(opts->command_line ? opts->command_line : "");
    g.opts.fork_base = strdup(opts->fork_base ? opts->fork_base : opts->path);
    g.path = strdup(opts->path);
    if (g.opts.interval_ms == 0)
        g.opts.interval_ms = 10;
    /* Atomic: hooks of threads still racing with the last stop read it. */
    __atomic_store_n(&g.flags,
                     (uint16_t)((opts->native ? MR_FLAG_NATIVE : 0) |
                                (opts->trace_pymalloc ? MR_FLAG_PYALLOC : 0) |
                                (opts->aggregated ? MR_FLAG_AGGREGATED : 0) |
                                (opts->sample_every ? MR_FLAG_SAMPLED : 0)),
                     __ATOMIC_RELAXED);
    /* No session is recording: hooks do not reach the filter now. Cleared
     * only after a sampled session: untouched, its pages cost no memory. */
    mr_hm_destroy(&g.sampled);
    if (g.filter_used)
        memset(sample_filter, 0, sizeof sample_filter);
    g.filter_used = opts->sample_every != 0;
    __atomic_store_n(&g.sample_every, opts->sample_every, __ATOMIC_RELAXED);
    g.failed = 0;
    g.inherited = 0;
    g.opts.sink = NULL;
    __atomic_add_fetch(&g.session, 1, __ATOMIC_RELAXED); /* greenlet ids of the last one end */
    if (g.opts.path == NULL || g.opts.command_line == NULL || g.opts.fork_base == NULL ||
        g.path == NULL) {
        mr_sink_abandon(given);
        rc = -ENOMEM;
        goto fail;
    }
    mr_mutex_lock(&g.lock);
    rc = open_capture_locked(g.path, opts->overwrite, opts->buffered, given);
    mr_mutex_unlock(&g.lock);
    if (rc < 0)
        goto fail;
    mr_procmem_open(&g.procmem); /* no /proc: samples say rss 0, as before */
    if ((rc = mr_hooks_install()) < 0) {
        mr_mutex_lock(&g.lock);
        mr_writer_close(&g.writer);
        mr_mutex_unlock(&g.lock);
        discard_capture(g.path);
        goto fail;
    }
    g.started = 1;
    if (opts->trace_pymalloc)
        mr_pymalloc_trace(1);
    mr_mutex_lock(&g.lock);
    __atomic_store_n(&mr_tracker_active, 1, __ATOMIC_RELAXED);
    uint64_t before = stream_size_locked();
    snapshot_locked(NULL);
    flush_locked(before); /* a live reader gets the header now */
    mr_mutex_unlock(&g.lock);
    rc = sampler_start();
    if (rc < 0) {
        mr_tracker_guard--;
        mr_tracker_stop();
        return rc;
    }
    mr_tracker_guard--;
    return 0;
fail:
    __atomic_store_n(&g.sample_every, 0, __ATOMIC_RELAXED);
    mr_procmem_close(&g.procmem);
    free_options();
    mr_tracker_guard--;
    return rc;
}

int mr_tracker_stop(void)
{
    if (!g.started)
        return -ESRCH;
    mr_tracker_guard++;
    sampler_stop();
    if (g.opts.trace_pymalloc)
        mr_pymalloc_trace(0);
    mr_mutex_lock(&g.lock);
    int rc = 0;
    if (g.inherited) {
        /* A child that did not follow the fork: the open capture is the
         * parent's, and the parent finishes it. */
        __atomic_store_n(&mr_tracker_active, 0, __ATOMIC_RELAXED);
        mr_writer_abandon(&g.writer);
    } else {
        snapshot_locked(NULL);
        uint64_t ms = ms_since_start();
        __atomic_store_n(&mr_tracker_active, 0, __ATOMIC_RELAXED);
        int wrc = 0;
        uint64_t total = g.writer.n_allocs, peak = 0;
        if (g.agg != NULL && g.failed == 0) {
            mr_agg_row_t *rows = NULL;
            size_t n = 0;
            wrc = mr_agg_rows(g.agg, &rows, &n);
            for (size_t i = 0; wrc == 0 && i < n; i++)
                wrc = mr_writer_agg(&g.writer, rows[i].key.tid, rows[i].key.allocator,
                                    rows[i].key.stack, rows[i].key.native, rows[i].peak_n,
                                    rows[i].peak_bytes, rows[i].leak_n, rows[i].leak_bytes);
            free(rows);
            total = mr_agg_total_allocations(g.agg);
            peak = mr_agg_peak(g.agg);
        }
        if (wrc == 0 && g.failed == 0)
            wrc = mr_writer_trailer(&g.writer, ms, total, peak, 0);
        if (wrc < 0 && g.failed == 0)
            g.failed = -wrc;
        int crc = mr_writer_close(&g.writer);
        if (crc < 0 && g.failed == 0)
            g.failed = -crc;
        rc = g.failed ? -g.failed : 0;
    }
    if (g.agg != NULL) {
        mr_agg_destroy(g.agg);
        g.agg = NULL;
    }
    mr_pystack_reset_locked();
    mr_native_reset_locked();
    free(g.mapped);
    g.mapped = NULL;
    g.n_mapped = g.cap_mapped = 0;
    g.mapped_bytes = 0;
    __atomic_add_fetch(&g.generation, 1, __ATOMIC_RELAXED); /* read unlocked by hooks */
    __atomic_store_n(&g.sample_every, 0, __ATOMIC_RELAXED);
    mr_hm_destroy(&g.sampled);
    mr_mutex_unlock(&g.lock);
    mr_hooks_uninstall();
    mr_sink_inject_failure(0); /* a test's fault ends with its session */
    g.compress_error = 0;
    if (rc == 0 && !g.inherited && g.opts.compress && !g.socket) {
        int crc = mr_sink_compress_file(g.path);
        if (crc < 0)
            g.compress_error = -crc; /* the capture is whole, left uncompressed */
    }
    mr_procmem_close(&g.procmem);
    free_options();
    g.started = 0;
    mr_tracker_guard--;
    return rc;
}

void mr_tracker_after_fork_in_child(void)
{
    if (!g.sampler_pending)
        return;
    g.sampler_pending = 0;
    if (g.started && !g.inherited && mr_tracker_active)
        sampler_start();
}

int mr_tracker_compress_error(void)
{
    return g.compress_error;
}

int mr_tracker_is_started(void)
{
    return g.started;
}

const char *mr_tracker_path(void)
{
    return g.path;
}

/* fork(): the writer lock is taken across it so the child never inherits a
 * half-written record or a lock held by a thread that does not exist there. */
/* The forking thread's id in the parent: the child's only thread gets a new
 * one. Written by the forking thread with the writer lock held. */
static uint32_t fork_tid;
/* The forking process's pid: a followed child records it as its parent. */
static uint32_t fork_parent_pid;

static void atfork_prepare(void)
{
    mr_tracker_guard++;
    /* A no-op (init_once registered this handler), but it orders what
     * init_once set up, in whichever thread ran it, before this fork for
     * ThreadSanitizer, which cannot see glibc's lock on its handler list. */
    pthread_once(&once, init_once);
    pthread_rwlock_wrlock(&unwind_lock); /* no unwind is inside dl_iterate_phdr */
    mr_mutex_lock(&g.lock);
    fork_tid = mr_tracker_gettid();
    fork_parent_pid = (uint32_t)getpid();
}

static void atfork_parent(void)
{
    mr_mutex_unlock(&g.lock);
    pthread_rwlock_unlock(&unwind_lock);
    mr_tracker_guard--;
}

/* In the child the writer lock is still held (atfork_prepare took it and the
 * forking thread is the child's only thread), so what runs here is _locked
 * for real; atfork_child lets go of it once the child is set up. */
static void child_after_fork_locked(void)
{
    MR_ASSERT(mr_mutex_held(&g.lock));
    uint32_t tid = mr_tracker_gettid();
    if (t_thread != NULL)
        t_thread->tid = tid;
    mr_pystack_thread_id_changed(fork_tid, tid);
    /* The sampler thread did not survive the fork, and it may have held its
     * lock at that moment: start the child with fresh ones. */
    g.sampler_running = 0;
    pthread_mutex_init(&g.sampler_lock, NULL);
    mr_hooks_after_fork_child();
    if (!g.started || g.inherited)
        return;
    if (!g.opts.follow_fork || !mr_tracker_active) {
        __atomic_store_n(&mr_tracker_active, 0, __ATOMIC_RELAXED);
        g.inherited = 1;
        if (g.socket) {
            /* Drop our copy of the connection now: a child that outlives its
             * parent must not keep the live reader from seeing the end. */
            mr_writer_abandon(&g.writer);
        }
        return;
    }
    /* Follow the fork: drop the parent's capture and start <path>.<pid>,
     * through the mapping so a child that ends with _exit keeps it all. */
    __atomic_store_n(&mr_tracker_active, 0, __ATOMIC_RELAXED);
    mr_writer_abandon(&g.writer);
    if (g.agg != NULL) {
        mr_agg_destroy(g.agg);
        g.agg = NULL;
    }
    size_t len = strlen(g.opts.fork_base) + 32;
    char *child_path = malloc(len);
    if (child_path == NULL) {
        g.inherited = 1; /* nothing open: stop just releases */
        return;
    }
    snprintf(child_path, len, "%s.%d", g.opts.fork_base, (int)getpid());
    free(g.path);
    g.path = child_path;
    g.opts.parent_pid = fork_parent_pid;
    g.failed = 0;
    int rc = open_capture_locked(g.path, 1, 0, NULL);
    if (rc == 0) {
        /* The parent's descriptors read the parent's memory. */
        mr_procmem_close(&g.procmem);
        mr_procmem_open(&g.procmem);
        __atomic_store_n(&mr_tracker_active, 1, __ATOMIC_RELAXED);
        snapshot_locked(NULL);
        /* Not here: a thread started inside fork() (pthread_create is not
         * async-signal-safe) can block for good on an allocator lock another
         * thread of the parent held (seen under AddressSanitizer). */
        g.sampler_pending = 1;
    } else {
        g.failed = -rc;
        g.inherited = 1;
    }
}

static void atfork_child(void)
{
    child_after_fork_locked();
    mr_mutex_unlock(&g.lock);
    /* A fresh one: readers that waited in the parent left their count in it
     * (an unlock here left the child's first unwind waiting for good). */
    unwind_lock_init();
    mr_tracker_guard--;
}
