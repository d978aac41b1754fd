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

#define MR_NATIVE_MAX_DEPTH 256

typedef struct mr_native_cache {
    uintptr_t walk[MR_NATIVE_MAX_DEPTH]; /* innermost first, as unwound now */
    uint32_t walk_n;
    uintptr_t *ips;  /* outermost first: the chain resolved last time */
    uint64_t *nodes; /* nodes[i]: trie id of ips[0..i] */
    uint32_t n, cap;
    uint32_t matched; /* outermost walk entries equal to the cache's */
    uint64_t generation;
} mr_native_cache_t;

/* Once per process, before the first unwind. 0 or -errno. */
int mr_native_init(void);

/* Unwinds the calling thread. No lock. */
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
