/* pystack.c: reading the calling thread's Python frames inside an allocation
 * hook, and interning code objects, frames and stack-trie nodes. Version
 * neutral: every read of interpreter internals goes through pyframe.h. It
 * never walks another thread's frames, never takes the GIL and never
 * allocates through Python. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "format.h"
#include "hashmap.h"
#define MR_PYFRAME_ACCESSORS
#include "pyframe.h"
#include "pystack.h"
#include "util.h"

/* Interning tables: writer lock. Ids are those handed out by the writer. */
static mr_hm_t code_ids;  /* PyCodeObject* -> CODE id */
static mr_hm_t instr_ids; /* CODE id << 32 | instruction offset -> FRAME id */
static mr_hm_t line_ids;  /* CODE id << 32 | line -> FRAME id */

/* (parent NODE id, FRAME id << 1 | entry) -> NODE id: the trie. It holds a
 * node per distinct stack prefix (millions for deep, varied stacks), so its
 * slots are 12 bytes at up to 70% load, where a general 64-bit map would take
 * 16 bytes at 50%, and it is bounded: at NODE_TABLE_MAX_SLOTS slots (6 MiB,
 * 367,000 nodes)
 * it starts afresh instead of doubling. Ids already handed out stay valid
 * (threads' caches keep using them); a stack prefix seen before the reset
 * gets a second NODE record when it comes again, which readers resolve to the
 * same frames. benchmarks/workloads/deep_stack.py makes 2.6 million nodes:
 * the tracked process peaked at 69.7 MiB RSS with an unbounded 64-bit map,
 * and at 37 MiB with 12 MiB of table, against memray 1.x's 24.5 MiB. */
#define NODE_TABLE_MAX_SLOTS ((size_t)1 << 19)
typedef struct node_key {
    uint32_t parent, frame;
} node_key_t;

typedef struct node_slot {
    uint32_t parent, frame;
    uint32_t id; /* 0 = empty */
} node_slot_t;

static inline uint64_t node_key_hash(const node_key_t *k)
{
    return mr_hash64((uint64_t)k->parent << 32 | k->frame);
}

static inline uint64_t node_slot_hash(const node_slot_t *s)
{
    return mr_hash64((uint64_t)s->parent << 32 | s->frame);
}

static inline int node_slot_match(const node_slot_t *s, const node_key_t *k)
{
    return s->parent == k->parent && s->frame == k->frame;
}

static inline int node_slot_empty(const node_slot_t *s)
{
    return s->id == 0;
}

static inline void node_slot_clear(node_slot_t *s)
{
    s->id = 0;
}

MR_HASHMAP_DEFINE(pynodemap, node_slot_t, const node_key_t *, node_key_hash, node_slot_hash,
                  node_slot_match, node_slot_empty, node_slot_clear, 70)

static pynodemap_t node_ids;

/* Code objects registered while tracking, kept alive so their address cannot
 * be reused by another code object while it is a key of code_ids. Entries
 * below refs_held have been INCREF'd; the rest wait for a hook that runs with
 * the GIL held (a thread that released the GIL must not touch refcounts; its
 * own frame keeps the code alive meanwhile). Writer lock. */
static PyObject **refs;
static size_t refs_n, refs_held, refs_cap;

/* Hidden frames: written at start with the GIL held, before tracking is on;
 * read by hooks afterwards. */
static const void *boundary_frame;
static uint32_t boundary_tid;

static inline size_t memo_slot(uint64_t parent, const void *instr)
{
    return (size_t)(mr_hash64(parent ^ (uint64_t)(uintptr_t)instr) & (MR_PYSTACK_MEMO - 1));
}

int mr_pystack_walk(mr_pystack_cache_t *c, uint32_t tid, uint64_t generation)
{
    if (c->generation != generation) {
        c->cache_n = 0;
        c->generation = generation;
        memset(c->memo, 0, sizeof c->memo);
        memset(c->fmemo, 0, sizeof c->fmemo);
    }
    c->walk_n = 0;
    c->matched = 0;
    /* The thread's own state, whether or not it holds the GIL now. */
    PyThreadState *ts = PyGILState_GetThisThreadState();
    if (ts == NULL)
        return 0;
    uint32_t n = 0;
    for (const mr_pyiframe_t *f = mr_pyframe_current(ts); f != NULL; f = mr_pyframe_previous(f)) {
        /* Code first: a frame without any (a C-stack shim) is skipped before
         * anything reads its code. */
        PyCodeObject *code = mr_pyframe_code(f);
        if (code == NULL || mr_pyframe_skipped(f))
            continue;
        if (mr_grow_array((void **)&c->walk, &c->walk_cap, n + 1, sizeof *c->walk) < 0)
            return -ENOMEM;
        c->walk[n++] =
            (mr_pystack_frame_t){f, code, mr_pyframe_instr(f), 0, mr_pyframe_is_entry(f)};
        if (f == boundary_frame && tid == boundary_tid)
            break;
    }
    c->walk_n = n;
    uint32_t m = n < c->cache_n ? n : c->cache_n;
    uint32_t k = 0;
    while (k < m) {
        const mr_pystack_frame_t *a = &c->walk[n - 1 - k], *b = &c->cache[k];
        if (a->frame != b->frame || a->code != b->code || a->instr != b->instr)
            break;
        k++;
    }
    /* Extend the match through the memo: frames that differ from last time
     * only in where they are, at places seen before. */
    if (k < n && mr_grow_array((void **)&c->cache, &c->cache_cap, n, sizeof *c->cache) < 0)
        return -ENOMEM;
    uint32_t prefix = k;
    while (k < n) {
        const mr_pystack_frame_t *f = &c->walk[n - 1 - k];
        uint64_t parent = k ? c->cache[k - 1].node : 0;
        const mr_pystack_memo_t *e = &c->memo[memo_slot(parent, f->instr)];
        if (e->instr != f->instr || e->parent != parent || e->node == 0)
            break;
        c->cache[k] = *f;
        c->cache[k].node = e->node;
        k++;
    }
    /* Entries past k now hang off another parent: drop them. */
    if (k > prefix)
        c->cache_n = k;
    c->matched = k;
    return 0;
}

/* Appends s as UTF-8 to buf (cap bytes), without allocating and without the
 * GIL: str objects are immutable. Returns the length written. */
static size_t utf8_of(PyObject *s, char *buf, size_t cap)
{
    if (s == NULL || !PyUnicode_Check(s) || !PyUnicode_IS_READY(s)) {
        memcpy(buf, "???", 3);
        return 3;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        size_t n = (size_t)len < cap ? (size_t)len : cap;
        memcpy(buf, PyUnicode_DATA(s), n);
        return n;
    }
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    size_t o = 0;
    for (Py_ssize_t i = 0; i < len && o + 4 <= cap; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch < 0x80) {
            buf[o++] = (char)ch;
        } else if (ch < 0x800) {
            buf[o++] = (char)(0xC0 | (ch >> 6));
            buf[o++] = (char)(0x80 | (ch & 0x3F));
        } else if (ch >= 0xD800 && ch <= 0xDFFF) {
            buf[o++] = '?'; /* lone surrogate: not encodable */
        } else if (ch < 0x10000) {
            buf[o++] = (char)(0xE0 | (ch >> 12));
            buf[o++] = (char)(0x80 | ((ch >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (ch & 0x3F));
        } else {
            buf[o++] = (char)(0xF0 | (ch >> 18));
            buf[o++] = (char)(0x80 | ((ch >> 12) & 0x3F));
            buf[o++] = (char)(0x80 | ((ch >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (ch & 0x3F));
        }
    }
    return o;
}

static void hold_pending_refs_locked(void)
{
    MR_ASSERT(mr_tracker_lock_held());
    MR_ASSERT(PyGILState_Check());
    while (refs_held < refs_n)
        Py_INCREF(refs[refs_held++]);
}

static int intern_code(mr_writer_t *w, PyCodeObject *code, uint64_t *id)
{
    if (mr_hm_get(&code_ids, (uint64_t)(uintptr_t)code, id))
        return 0;
    if (mr_grow_array((void **)&refs, &refs_cap, refs_n + 1, sizeof *refs) < 0)
        return -ENOMEM;
    char name[1024], file[4096];
    size_t name_len = utf8_of(code->co_name, name, sizeof name);
    size_t file_len = utf8_of(code->co_filename, file, sizeof file);
    int rc = mr_writer_code(w, name, name_len, file, file_len, (uint32_t)code->co_firstlineno, id);
    if (rc < 0)
        return rc;
    if ((rc = mr_hm_put(&code_ids, (uint64_t)(uintptr_t)code, *id)) < 0)
        return rc;
    refs[refs_n++] = (PyObject *)code;
    if (PyGILState_Check())
        hold_pending_refs_locked();
    return 0;
}

static int intern_frame(mr_writer_t *w, const mr_pystack_frame_t *f, uint64_t *frame_id)
{
    PyCodeObject *code = (PyCodeObject *)f->code;
    uint64_t code_id;
    int rc = intern_code(w, code, &code_id);
    if (rc < 0)
        return rc;
    if (code_id >= (1ull << 32))
        return -EOVERFLOW;
    uint64_t offset = mr_pyframe_offset(code, f->instr);
    uint64_t ikey = code_id << 32 | (offset & 0xFFFFFFFFu);
    if (mr_hm_get(&instr_ids, ikey, frame_id))
        return 0;
    int line = mr_pyframe_line(code, f->instr);
    uint64_t lkey = code_id << 32 | (uint32_t)line;
    if (!mr_hm_get(&line_ids, lkey, frame_id)) {
        if ((rc = mr_writer_frame(w, code_id, (uint32_t)line, frame_id)) < 0)
            return rc;
        if ((rc = mr_hm_put(&line_ids, lkey, *frame_id)) < 0)
            return rc;
    }
    return mr_hm_put(&instr_ids, ikey, *frame_id);
}

int mr_pystack_resolve_locked(mr_pystack_cache_t *c, mr_writer_t *w, uint64_t *node)
{
    MR_ASSERT(mr_tracker_lock_held());
    uint32_t n = c->walk_n, k = c->matched;
    if (refs_held < refs_n && PyGILState_Check())
        hold_pending_refs_locked();
    if (k == n) {
        *node = n ? c->cache[n - 1].node : 0;
        return 0;
    }
    if (mr_grow_array((void **)&c->cache, &c->cache_cap, n, sizeof *c->cache) < 0)
        return -ENOMEM;
    uint64_t parent = k ? c->cache[k - 1].node : 0;
    c->cache_n = k; /* entries past k are rewritten below */
    int fresh = 0;  /* parent was made by this call: it has no children yet */
    for (uint32_t i = k; i < n; i++) {
        const mr_pystack_frame_t *f = &c->walk[n - 1 - i];
        uint64_t frame_id, id;
        mr_pystack_fmemo_t *fm =
            &c->fmemo[mr_hash64((uint64_t)(uintptr_t)f->instr) & (MR_PYSTACK_FMEMO - 1)];
        if (fm->instr == f->instr) {
            frame_id = fm->frame;
        } else {
            int rc = intern_frame(w, f, &frame_id);
            if (rc < 0)
                return rc;
            *fm = (mr_pystack_fmemo_t){f->instr, frame_id};
        }
        if (parent >= UINT32_MAX || frame_id >= (1ull << 31))
            return -EOVERFLOW;
        node_key_t key = {(uint32_t)parent, (uint32_t)(frame_id << 1 | f->entry)};
        const node_slot_t *s = fresh ? NULL : pynodemap_find(&node_ids, &key);
        if (s != NULL) {
            id = s->id;
        } else {
            /* Room first: a node written is then always remembered. */
            if (node_ids.mask + 1 >= NODE_TABLE_MAX_SLOTS && node_ids.count + 1 > node_ids.limit)
                pynodemap_destroy(&node_ids); /* full: start afresh (see above) */
            int rc = pynodemap_reserve(&node_ids, 1);
            if (rc < 0 || (rc = mr_writer_node(w, parent, frame_id, f->entry, &id)) < 0)
                return rc;
            if (id >= UINT32_MAX)
                return -EOVERFLOW;
            *pynodemap_claim(&node_ids, &key) =
                (node_slot_t){.parent = key.parent, .frame = key.frame, .id = (uint32_t)id};
            fresh = 1;
        }
        mr_pystack_memo_t *e = &c->memo[memo_slot(parent, f->instr)];
        *e = (mr_pystack_memo_t){parent, f->instr, id};
        c->cache[i] = *f;
        c->cache[i].node = id;
        c->cache_n = i + 1;
        parent = id;
    }
    *node = parent;
    return 0;
}

void mr_pystack_cache_free(mr_pystack_cache_t *c)
{
    free(c->cache);
    free(c->walk);
    *c = (mr_pystack_cache_t){0};
}

void mr_pystack_reset_locked(void)
{
    MR_ASSERT(mr_tracker_lock_held());
    mr_hm_destroy(&code_ids);
    mr_hm_destroy(&instr_ids);
    mr_hm_destroy(&line_ids);
    pynodemap_destroy(&node_ids);
}

void mr_pystack_set_boundary(void *frame_object, uint32_t tid)
{
    MR_ASSERT(PyGILState_Check());
    PyObject *f = frame_object;
    boundary_frame = (f != NULL && PyFrame_Check(f)) ? mr_pyframe_of_object(f) : NULL;
    boundary_tid = tid;
}

void mr_pystack_thread_id_changed(uint32_t old_tid, uint32_t new_tid)
{
    if (boundary_frame != NULL && boundary_tid == old_tid)
        boundary_tid = new_tid;
}

void mr_pystack_release_code_refs(void)
{
    MR_ASSERT(PyGILState_Check());
    /* Only the held ones: pending ones were never INCREF'd. */
    size_t held = refs_held;
    PyObject **r = refs;
    refs = NULL;
    refs_n = refs_held = refs_cap = 0;
    for (size_t i = 0; i < held; i++)
        Py_DECREF(r[i]);
    free(r);
}

uint32_t mr_pystack_python_hexversion(void)
{
    return PY_VERSION_HEX;
}
