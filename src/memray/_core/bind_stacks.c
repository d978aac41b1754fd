/* bind_stacks.c: turns reader stack ids into Python lists of (function,
 * file, line) for bind_reader.c and bind_live.c, with the per-owner cache of
 * code names and files as str objects. */
#define PY_SSIZE_T_CLEAN
#include "bind_stacks.h" /* Python.h first, as it asks */

#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "stacks.h"

void mr_pystrings_init(mr_pystrings_t *c)
{
    c->names = NULL;
    c->files = NULL;
    c->n = 0;
}

void mr_pystrings_clear(mr_pystrings_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        Py_XDECREF(c->names[i]);
        Py_XDECREF(c->files[i]);
    }
    PyMem_Free(c->names);
    PyMem_Free(c->files);
    mr_pystrings_init(c);
}

PyObject *mr_pystr(const char *s, Py_ssize_t n)
{
    /* Names come from the tracked program: undecodable bytes are replaced
     * rather than failing a whole report. */
    return PyUnicode_DecodeUTF8(s, n, "replace");
}

int mr_py_parse_max(PyObject *obj, size_t *max)
{
    if (obj == Py_None) {
        *max = SIZE_MAX;
        return 0;
    }
    Py_ssize_t v = PyNumber_AsSsize_t(obj, PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *max = v < 0 ? 0 : (size_t)v;
    return 0;
}

/* (function, file) strs of a CODE id, made once per cache. */
static int code_strings(const mr_reader_t *r, mr_pystrings_t *c, uint64_t code, PyObject **name,
                        PyObject **file)
{
    const mr_code_t *co = mr_reader_code(r, code);
    if (co == NULL) {
        PyErr_SetString(PyExc_ValueError, "undefined code object id");
        return -1;
    }
    if (code > c->n) {
        size_t n = (size_t)mr_reader_count(r, MR_REC_CODE);
        PyObject **names = PyMem_Realloc(c->names, n * sizeof *names);
        if (names == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->names = names;
        PyObject **files = PyMem_Realloc(c->files, n * sizeof *files);
        if (files == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->files = files;
        for (size_t i = c->n; i < n; i++)
            names[i] = files[i] = NULL;
        c->n = n;
    }
    PyObject **pn = &c->names[code - 1], **pf = &c->files[code - 1];
    if (*pn == NULL && (*pn = mr_pystr(co->name, co->name_len)) == NULL)
        return -1;
    if (*pf == NULL && (*pf = mr_pystr(co->file, co->file_len)) == NULL)
        return -1;
    *name = *pn;
    *file = *pf;
    return 0;
}

PyObject *mr_py_frame(const mr_reader_t *r, mr_pystrings_t *c, uint64_t frame)
{
    uint64_t code, line;
    if (frame == 0 || mr_reader_frame(r, frame, &code, &line) < 0)
        return Py_BuildValue("(ssi)", "<unknown>", "<unknown>", 0);
    PyObject *name, *file;
    if (code_strings(r, c, code, &name, &file) < 0)
        return NULL;
    return Py_BuildValue("(OOK)", name, file, (unsigned long long)line);
}

PyObject *mr_py_stack(const mr_reader_t *r, mr_pystrings_t *c, uint64_t node, size_t max)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    /* Each node's parent precedes it (checked when decoded): the walk ends. */
    while (node != 0 && (size_t)PyList_GET_SIZE(list) < max) {
        uint64_t parent, frame;
        int entry;
        if (mr_reader_node(r, node, &parent, &frame, &entry) < 0)
            break;
        PyObject *loc = mr_py_frame(r, c, frame);
        if (loc == NULL || PyList_Append(list, loc) < 0) {
            Py_XDECREF(loc);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(loc);
        node = parent;
    }
    return list;
}

PyObject *mr_py_resolved_stack(const mr_reader_t *r, mr_symbolizer_t **sym, uint64_t node,
                               uint64_t native, uint64_t generation, size_t max, int hybrid,
                               int nogil)
{
    if (*sym == NULL && mr_sym_new(sym) < 0)
        return PyErr_NoMemory();
    mr_sym_frame_t *frames = NULL;
    size_t n;
    PyThreadState *ts = nogil ? PyEval_SaveThread() : NULL;
    n = hybrid ? mr_stacks_hybrid(r, *sym, node, native, generation, max, &frames)
               : mr_stacks_native(r, *sym, native, generation, max, &frames);
    if (ts != NULL)
        PyEval_RestoreThread(ts);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        const char *fn = frames[i].function, *file = frames[i].file;
        PyObject *t = Py_BuildValue("(NNI)", mr_pystr(fn, (Py_ssize_t)strlen(fn)),
                                    mr_pystr(file, (Py_ssize_t)strlen(file)), frames[i].line);
        if (t == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    free(frames);
    return list;
}
