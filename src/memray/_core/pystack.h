/* pystack.h: the Python stack of the calling thread at the moment it
 * allocates, read from the thread's own frame chain (no profile hook: calls
 * that allocate nothing cost nothing), turned into NODE ids of the stack trie
 * with a per-thread cache of the frames already resolved. Also owns the
 * code-object registration (CODE/FRAME/NODE interning). Version neutral: what
 * differs between CPython versions is read through pyframe.h. */
#ifndef MR_PYSTACK_H
#define MR_PYSTACK_H

#include <stddef.h>
#include <stdint.h>

#include "writer.h"

/* One interpreter frame as seen by the walk; node is the trie id of the stack
 * from the outermost frame down to this one (cache entries only). */
typedef struct mr_pystack_frame {
    const void *frame; /* the _PyInterpreterFrame */
    const void *code;  /* its code object */
    const void *instr; /* its current instruction */
    uint64_t node : 63;
    uint64_t entry : 1; /* first frame of its interpreter loop call */
} mr_pystack_frame_t;

/* Direct-mapped memory of (parent node, instruction) -> node: a loop whose
 * allocations alternate between a few lines of one function resolves them
 * here without the writer lock. Instruction pointers identify code and offset
 * because registered code objects are kept alive while tracking. */
#define MR_PYSTACK_MEMO 256
typedef struct mr_pystack_memo {
    uint64_t parent;
    const void *instr;
    uint64_t node;
} mr_pystack_memo_t;

/* Direct-mapped memory of instruction -> FRAME id: a frame met before, under
 * any parent, skips the code and instruction tables. */
#define MR_PYSTACK_FMEMO 512
typedef struct mr_pystack_fmemo {
    const void *instr;
    uint64_t frame;
} mr_pystack_fmemo_t;

/* Per-thread state, owned by that thread's mr_thread_t (tracker.c). */
typedef struct mr_pystack_cache {
    mr_pystack_memo_t memo[MR_PYSTACK_MEMO];
    mr_pystack_fmemo_t fmemo[MR_PYSTACK_FMEMO];
    mr_pystack_frame_t *cache; /* outermost first: the stack resolved last time */
    uint32_t cache_n;
    size_t cache_cap;
    mr_pystack_frame_t *walk; /* innermost first: the stack walked now */
    uint32_t walk_n;
    size_t walk_cap;
    uint32_t matched;    /* outermost walk entries equal to the cache's */
    uint64_t generation; /* tracker generation the cache's node ids belong to */
} mr_pystack_cache_t;

/* Walks the calling thread's frames into c->walk and matches them against
 * c->cache. Needs no lock and no GIL: only this thread changes its frames.
 * 0 or -ENOMEM. */
int mr_pystack_walk(mr_pystack_cache_t *c, uint32_t tid, uint64_t generation);

/* Interns the frames the cache lacks (writing CODE/FRAME/NODE records) and
 * gives the NODE id of the walked stack (0: no Python frames). Writer lock
 * held. 0 or -errno from the writer. */
int mr_pystack_resolve_locked(mr_pystack_cache_t *c, mr_writer_t *w, uint64_t *node);

void mr_pystack_cache_free(mr_pystack_cache_t *c);

/* Forgets every interned id (a new capture starts). Writer lock held. */
void mr_pystack_reset_locked(void);

/* Frames outer to frame_object (a Python frame object, or NULL for none) on
 * thread tid are hidden: the caller of `with Tracker(...)` sees its stacks
 * start at the with line. GIL held, before tracking starts. */
void mr_pystack_set_boundary(void *frame_object, uint32_t tid);

/* fork() child: the thread that forked lives on under a new id; a boundary
 * it had stays its own. Before anything records in the child. */
void mr_pystack_thread_id_changed(uint32_t old_tid, uint32_t new_tid);

/* GIL held, tracking stopped: drops the references taken on code objects. */
void mr_pystack_release_code_refs(void);

/* The interpreter's version (PY_VERSION_HEX) the extension was built for. */
uint32_t mr_pystack_python_hexversion(void);

#endif
