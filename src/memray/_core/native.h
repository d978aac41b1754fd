/* native.h: the C call stack of an allocation. Unwinds inside the hook with
 * libunwind (per-thread caching), drops the profiler's own frames, and
 * deduplicates instruction-pointer chains into a trie of NATIVE_NODE ids with
 * a per-thread cache of the chain resolved last. Also writes the loaded-object
 * map (MAPPINGS) that makes the raw addresses resolvable at report time. No
 * symbol lookups here: that is report-time work. */
#ifndef MR_NATIVE_H
#define MR_NATIVE_H

#include <stdint.h>

#include "writer.h"

/* The first unwind of a thread has room for this many frames; a deeper stack
 * doubles the room (kept for the thread) and unwinds again. */
#define MR_NATIVE_INITIAL_DEPTH 256
/* Bound on a stack's depth in frames: far beyond what a thread's stack
 * holds (8 MiB of 16-byte frames is 2^19), only against a corrupt chain. */
#define MR_NATIVE_MAX_DEPTH (1u << 22)

typedef struct mr_native_cache {
    uintptr_t *walk; /* innermost first, as unwound now; walk_cap entries */
    uint32_t walk_n, walk_cap;
    uintptr_t *ips;  /* outermost first: the chain resolved last time */
    uint64_t *nodes; /* nodes[i]: trie id of ips[0..i] */
    uint32_t n, cap;
    uint32_t matched; /* outermost walk entries equal to the cache's */
    uint64_t generation;
} mr_native_cache_t;

/* Once per process, before the first unwind. 0 or -errno. */
int mr_native_init(void);

/* Unwinds the calling thread, every frame however deep (walk_n is 0 when
 * out of memory). No lock. */
void mr_native_walk(mr_native_cache_t *c, uint64_t generation);

/* Interns the unwound chain (writing NATIVE_NODE records); writer lock held.
 * 0 or -errno. */
int mr_native_resolve_locked(mr_native_cache_t *c, mr_writer_t *w, uint64_t *node);

void mr_native_cache_free(mr_native_cache_t *c);

/* Forgets every interned id and the mapping generation. Writer lock held. */
void mr_native_reset_locked(void);

/* Writes the current loaded-object map as the next generation. Writer lock
 * held. 0 or -errno. */
int mr_native_write_mappings_locked(mr_writer_t *w);

#endif
