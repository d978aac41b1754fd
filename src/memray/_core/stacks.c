/* stacks.c: native and hybrid stack resolution over reader tables and the
 * symbolizer. Owns no state; strings come from the reader or symbolizer. */
#include "stacks.h"

#include <stdlib.h>
#include <string.h>

#include "pyframe.h"

/* Enough for any real stack; deeper ones are cut at the outer end. */
#define MAX_IPS 1024
#define MAX_INLINE 32

static const mr_mapping_t *mapping_of(const mr_reader_t *r, uint64_t generation, uint64_t ip)
{
    size_t n = 0;
    const mr_mapping_t *m = mr_reader_mappings(r, generation, &n);
    for (size_t i = 0; m != NULL && i < n; i++)
        if (ip >= m[i].lo && ip < m[i].hi)
            return &m[i];
    return NULL;
}

size_t mr_stacks_native(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t native,
                        uint64_t generation, mr_sym_frame_t *out, size_t max)
{
    size_t n = 0;
    uint64_t id = native;
    for (size_t depth = 0; id != 0 && n < max && depth < MAX_IPS; depth++) {
        uint64_t parent, ip;
        if (mr_reader_native_node(r, id, &parent, &ip) < 0)
            break;
        const mr_mapping_t *m = mapping_of(r, generation, ip);
        if (m != NULL) {
            mr_sym_frame_t tmp[MAX_INLINE];
            int k = mr_sym_resolve(s, m->path, m->bias, ip, tmp, MAX_INLINE);
            for (int i = 0; i < k && n < max; i++)
                out[n++] = tmp[i];
        } else {
            out[n++] = (mr_sym_frame_t){"<unknown>", "", 0};
        }
        id = parent;
    }
    return n;
}

static int is_eval_loop(const mr_sym_frame_t *f, const char *eval_symbol)
{
    return strcmp(f->function, eval_symbol) == 0;
}

size_t mr_stacks_hybrid(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t node, uint64_t native,
                        uint64_t generation, mr_sym_frame_t *out, size_t max)
{
    size_t npy_max = 4096;
    mr_pyframe_loc_t *py = malloc(npy_max * sizeof *py);
    mr_sym_frame_t *nat = malloc(MAX_IPS * sizeof *nat);
    size_t n = 0;
    const char *eval_symbol =
        mr_pyversion_facts(mr_reader_header(r)->py_hexversion, NULL)->eval_symbol;
    if (py == NULL || nat == NULL)
        goto out;
    size_t npy = node ? mr_reader_stack(r, node, py, npy_max) : 0;
    size_t nnat = native ? mr_stacks_native(r, s, native, generation, nat, MAX_IPS) : 0;
    if (nnat == 0) {
        for (size_t i = 0; i < npy && n < max; i++)
            out[n++] = (mr_sym_frame_t){py[i].function, py[i].file, (unsigned)py[i].line};
        goto out;
    }
    /* Python frames fall into runs, innermost first, each ending (outwards)
     * at an entry frame: the frames one interpreter-loop call ran. */
    size_t p = 0;
    for (size_t i = 0; i < nnat && n < max; i++) {
        if (!is_eval_loop(&nat[i], eval_symbol)) {
            out[n++] = nat[i];
            continue;
        }
        if (p >= npy)
            continue; /* its Python frames are hidden (above the with line) */
        while (p < npy && n < max) {
            mr_pyframe_loc_t *f = &py[p++];
            out[n++] = (mr_sym_frame_t){f->function, f->file, (unsigned)f->line};
            if (f->entry)
                break;
        }
    }
    /* Python frames no interpreter frame claimed (an unwind cut short). */
    while (p < npy && n < max) {
        mr_pyframe_loc_t *f = &py[p++];
        out[n++] = (mr_sym_frame_t){f->function, f->file, (unsigned)f->line};
    }
out:
    free(py);
    free(nat);
    return n;
}
