/* bind_stacks.h: stacks as Python lists for the binding files: the cache of
 * code names and files as str objects, and the Python, native and hybrid
 * stacks of reader ids as [(function, file, line)], innermost first. All
 * with the GIL held; failures return NULL or -1 with an exception set. */
#ifndef MR_BIND_STACKS_H
#define MR_BIND_STACKS_H

#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#include "reader.h"
#include "symbolize.h"

/* str per CODE id - 1, made on first use; zeroed memory is an empty cache. */
typedef struct mr_pystrings {
    PyObject **names;
    PyObject **files;
    size_t n;
} mr_pystrings_t;

void mr_pystrings_init(mr_pystrings_t *c);
/* Drops the strs and the arrays; the cache is empty again. */
void mr_pystrings_clear(mr_pystrings_t *c);

/* A str of n bytes from the tracked program, undecodable bytes replaced. */
PyObject *mr_pystr(const char *s, Py_ssize_t n);

/* max_stacks: None is no limit (SIZE_MAX), a negative number 0. */
int mr_py_parse_max(PyObject *obj, size_t *max);

/* (function, file, line) of a FRAME id; frame 0, or one not defined, is
 * ("<unknown>", "<unknown>", 0). */
PyObject *mr_py_frame(const mr_reader_t *r, mr_pystrings_t *c, uint64_t frame);

/* The Python stack of NODE `node`, at most max frames; node 0 is []. */
PyObject *mr_py_stack(const mr_reader_t *r, mr_pystrings_t *c, uint64_t node, size_t max);

/* Native (hybrid = 0) or hybrid frames of `native` (not 0) through stacks.c,
 * the symbolizer *sym created on first use. With nogil the GIL is let go of
 * while symbolizing: the caller keeps r's tables still meanwhile. */
PyObject *mr_py_resolved_stack(const mr_reader_t *r, mr_symbolizer_t **sym, uint64_t node,
                               uint64_t native, uint64_t generation, size_t max, int hybrid,
                               int nogil);

#endif
