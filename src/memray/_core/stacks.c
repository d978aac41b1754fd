/* stacks.c: native and hybrid stack resolution over reader tables and the
 * symbolizer. Owns no state; strings come from the reader or symbolizer. */
#include "stacks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pyframe.h"
#include "util.h"

/* Inlined calls expanded at one address; deeper chains keep the innermost. */
#define MAX_INLINE 64

typedef struct frame_list {
    mr_sym_frame_t *v;
    size_t n, cap;
    size_t max; /* the caller's limit */
    int err;    /* -ENOMEM once an append failed */
} frame_list_t;

/* Appends f; 0 once the list is full (at max) or out of memory. */
static int push(frame_list_t *l, mr_sym_frame_t f)
{
    if (l->n >= l->max || l->err)
        return 0;
    if (mr_grow_array((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v) < 0) {
        l->err = -ENOMEM;
        return 0;
    }
    l->v[l->n++] = f;
    return 1;
}

static size_t finish(frame_list_t *l, mr_sym_frame_t **out)
{
    if (l->err || l->n == 0) {
        free(l->v);
        *out = NULL;
        return 0;
    }
    *out = l->v;
    return l->n;
}

static const mr_mapping_t *mapping_of(const mr_reader_t *r, uint64_t generation, uint64_t ip)
{
    size_t n = 0;
    const mr_mapping_t *m = mr_reader_mappings(r, generation, &n);
    /* Sorted by lo: the last object starting at or before ip (objects do not
     * overlap; where a hostile capture makes them, one of them answers). */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m[mid].lo <= ip)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && ip < m[lo - 1].hi)
        return &m[lo - 1];
    return NULL;
}

static void native_frames(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t native,
                          uint64_t generation, frame_list_t *l)
{
    uint64_t id = native;
    /* The reader checks that a node's parent precedes it: ids fall strictly
     * on the way out and the walk ends, however deep the stack. */
    while (id != 0 && l->n < l->max && !l->err) {
        uint64_t parent, ip;
        if (mr_reader_native_node(r, id, &parent, &ip) < 0)
            break;
        const mr_mapping_t *m = mapping_of(r, generation, ip);
        if (m != NULL) {
            mr_sym_frame_t tmp[MAX_INLINE];
            int k = mr_sym_resolve(s, m->path, m->bias, ip, tmp, MAX_INLINE);
            for (int i = 0; i < k; i++)
                push(l, tmp[i]);
        } else {
            push(l, (mr_sym_frame_t){"<unknown>", "", 0});
        }
        id = parent;
    }
}

size_t mr_stacks_native(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t native,
                        uint64_t generation, size_t max, mr_sym_frame_t **out)
{
    frame_list_t l = {.max = max};
    native_frames(r, s, native, generation, &l);
    return finish(&l, out);
}

static int is_eval_loop(const mr_sym_frame_t *f, const char *eval_symbol)
{
    return strcmp(f->function, eval_symbol) == 0;
}

static int has_eval_loop(const mr_sym_frame_t *f, size_t n, const char *eval_symbol)
{
    for (size_t i = 0; i < n; i++)
        if (is_eval_loop(&f[i], eval_symbol))
            return 1;
    return 0;
}

/* The Python stack of NODE `node`, innermost first, however deep. *n frames;
 * NULL (with *n 0) when there are none or out of memory. */
static mr_pyframe_loc_t *python_frames(const mr_reader_t *r, uint64_t node, size_t *n)
{
    size_t cap = 256;
    *n = 0;
    if (node == 0)
        return NULL;
    for (;;) {
        mr_pyframe_loc_t *py = malloc(cap * sizeof *py);
        if (py == NULL)
            return NULL;
        size_t got = mr_reader_stack(r, node, py, cap);
        if (got < cap) {
            *n = got;
            return py;
        }
        free(py);
        cap *= 2;
    }
}

size_t mr_stacks_hybrid(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t node, uint64_t native,
                        uint64_t generation, size_t max, mr_sym_frame_t **out)
{
    frame_list_t l = {.max = max};
    frame_list_t nat = {.max = SIZE_MAX};
    size_t npy = 0;
    mr_pyframe_loc_t *py = python_frames(r, node, &npy);
    const char *eval_symbol =
        mr_pyversion_facts(mr_reader_header(r)->py_hexversion, NULL)->eval_symbol;
    if (native)
        native_frames(r, s, native, generation, &nat);
    if (nat.err)
        l.err = nat.err;
    if (nat.n == 0) {
        for (size_t i = 0; i < npy; i++)
            push(&l, (mr_sym_frame_t){py[i].function, py[i].file, (unsigned)py[i].line});
        goto out;
    }
    /* Python frames fall into runs, innermost first, each ending (outwards)
     * at an entry frame: the frames one interpreter-loop call ran. */
    size_t p = 0;
    for (size_t i = 0; i < nat.n && l.n < l.max; i++) {
        if (!is_eval_loop(&nat.v[i], eval_symbol)) {
            push(&l, nat.v[i]);
            continue;
        }
        if (p >= npy)
            continue; /* no Python frames at all: the loop is left out */
        int entry = 0;
        while (p < npy && !entry) {
            mr_pyframe_loc_t *f = &py[p++];
            push(&l, (mr_sym_frame_t){f->function, f->file, (unsigned)f->line});
            entry = f->entry;
        }
        /* The last shown Python frame: if this loop ran frames beyond it, or
         * an outer loop runs more, those are hidden (above the `with` line),
         * and so are the native frames between: the stack ends here. */
        if (p == npy && (!entry || has_eval_loop(nat.v + i + 1, nat.n - i - 1, eval_symbol)))
            break;
    }
    /* Python frames no interpreter frame claimed (an unwind cut short). */
    while (p < npy && l.n < l.max) {
        mr_pyframe_loc_t *f = &py[p++];
        push(&l, (mr_sym_frame_t){f->function, f->file, (unsigned)f->line});
    }
out:
    free(py);
    free(nat.v);
    return finish(&l, out);
}
