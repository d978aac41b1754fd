/* bind_live.c: the Python face of the live reader (live.c): LiveReader
 * connects, exposes the header and status, returns the locations alive now
 * as plain tuples and resolves their stacks under the live lock. Parses
 * arguments, calls the component, converts results and errors; the record
 * objects users see are made in memray/_live.py. */
#define PY_SSIZE_T_CLEAN
#include "bind.h" /* Python.h first, as it asks */

#include <errno.h>
#include <string.h>

#include "bind_stacks.h"
#include "format.h"
#include "live.h"
#include "symbolize.h"

typedef struct live_object {
    PyObject_HEAD mr_live_t *live; /* NULL if opening failed */
    PyObject *name;                /* str "host:port", for messages */
    mr_symbolizer_t *sym;          /* created on the first native stack request; lock */
    mr_pystrings_t code;           /* code names and files, made on first use (GIL) */
} live_object_t;

/* Takes the live lock without the GIL: a thread holding the lock may wait
 * for the GIL (resolved_stack lets go of it while symbolizing), so waiting
 * for the lock while holding the GIL could deadlock. */
static void lock_live(live_object_t *self)
{
    Py_BEGIN_ALLOW_THREADS mr_live_lock(self->live);
    Py_END_ALLOW_THREADS
}

/* OSError(errno, "<name>: <message>"), the subclass matching errno. */
static void set_live_error(PyObject *name, int rc, const char *msg)
{
    if (rc == -ENOMEM) {
        PyErr_NoMemory();
        return;
    }
    PyObject *text = PyUnicode_FromFormat("%U: %s", name, msg[0] ? msg : strerror(-rc));
    if (text == NULL)
        return;
    PyObject *exc_args = Py_BuildValue("(iN)", -rc, text);
    if (exc_args == NULL)
        return;
    PyErr_SetObject(PyExc_OSError, exc_args); /* OSError(errno, text) picks the subclass */
    Py_DECREF(exc_args);
}

static PyObject *live_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"host", "port", "timeout_ms", NULL};
    const char *host;
    unsigned int port;
    int timeout_ms = 10000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sI|i", kwlist, &host, &port, &timeout_ms))
        return NULL;
    if (port < 1 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port must be between 1 and 65535, not %u", port);
        return NULL;
    }
    live_object_t *self = (live_object_t *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->name = PyUnicode_FromFormat("%s:%u", host, port);
    if (self->name == NULL)
        goto fail;
    int fd = -1, rc;
    char err[MR_READER_ERRLEN] = "";
    Py_BEGIN_ALLOW_THREADS rc = mr_live_connect(host, port, timeout_ms, &fd);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        snprintf(err, sizeof err, "cannot connect: %s", strerror(-rc));
        set_live_error(self->name, rc, err);
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS rc = mr_live_open(&self->live, fd, timeout_ms, err, sizeof err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        self->live = NULL;
        set_live_error(self->name, rc, err);
        goto fail;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static void live_dealloc(live_object_t *self)
{
    if (self->live != NULL) {
        Py_BEGIN_ALLOW_THREADS mr_live_destroy(self->live);
        Py_END_ALLOW_THREADS
    }
    mr_sym_destroy(self->sym);
    mr_pystrings_clear(&self->code);
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *live_close(live_object_t *self, PyObject *unused)
{
    (void)unused;
    Py_BEGIN_ALLOW_THREADS mr_live_close(self->live);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *live_header(live_object_t *self, void *closure)
{
    (void)closure;
    const mr_header_t *h = mr_live_header(self->live);
    return Py_BuildValue(
        "{s:k,s:k,s:K,s:k,s:I,s:N,s:O,s:O}", "pid", (unsigned long)h->pid, "main_tid",
        (unsigned long)h->main_tid, "start_ms", (unsigned long long)h->start_ms, "interval_ms",
        (unsigned long)h->interval_ms, "python_allocator", (unsigned)h->python_allocator,
        "command_line", mr_pystr(h->command_line, (Py_ssize_t)h->command_line_len), "native",
        (h->flags & MR_FLAG_NATIVE) ? Py_True : Py_False, "trace_python_allocators",
        (h->flags & MR_FLAG_PYALLOC) ? Py_True : Py_False);
}

static const char *end_name(mr_end_t end)
{
    switch (end) {
    case MR_END_TRAILER:
        return "trailer";
    case MR_END_ZERO:
        return "zero";
    case MR_END_EOF:
        return "eof";
    case MR_END_TRUNCATED:
        return "truncated";
    default:
        return "none";
    }
}

static PyObject *live_status(live_object_t *self, PyObject *unused)
{
    (void)unused;
    mr_live_status_t st;
    char msg[MR_READER_ERRLEN];
    lock_live(self);
    mr_live_status_locked(self->live, &st, msg, sizeof msg);
    mr_live_unlock(self->live);
    PyObject *error = Py_None;
    Py_INCREF(error);
    if (st.error) {
        Py_DECREF(error);
        error = PyUnicode_FromFormat("%U: %s", self->name, msg);
        if (error == NULL)
            return NULL;
    }
    return Py_BuildValue("{s:O,s:s,s:N,s:K,s:K,s:K,s:K,s:K,s:K}", "active",
                         st.active ? Py_True : Py_False, "end", end_name(st.end), "error", error,
                         "heap", (unsigned long long)st.heap, "peak", (unsigned long long)st.peak,
                         "rss", (unsigned long long)st.rss, "ms", (unsigned long long)st.ms,
                         "n_allocations", (unsigned long long)st.n_allocs, "n_frees",
                         (unsigned long long)st.n_frees);
}

/* [(tid or -1, allocator, bytes, n, stack, native stack, generation), ...]:
 * the locations with allocations alive now. */
static PyObject *live_snapshot(live_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"merge_threads", NULL};
    int merge = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p", kwlist, &merge))
        return NULL;
    mr_agg_row_t *rows = NULL;
    size_t n = 0;
    int rc;
    lock_live(self);
    rc = mr_live_rows_locked(self->live, merge, &rows, &n);
    mr_live_unlock(self->live);
    if (rc < 0)
        return PyErr_NoMemory();
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        const mr_agg_row_t *row = &rows[i];
        PyObject *t =
            Py_BuildValue("(LIKKKKK)", merge ? -1LL : (long long)row->key.tid,
                          (unsigned)row->key.allocator, (unsigned long long)row->leak_bytes,
                          (unsigned long long)row->leak_n, (unsigned long long)row->key.stack,
                          (unsigned long long)row->key.native, (unsigned long long)row->generation);
        if (t == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    free(rows);
    return list;
}

static PyObject *live_stack_trace(live_object_t *self, PyObject *args)
{
    unsigned long long node;
    PyObject *max_obj = Py_None;
    size_t max;
    if (!PyArg_ParseTuple(args, "K|O", &node, &max_obj) || mr_py_parse_max(max_obj, &max) < 0)
        return NULL;
    lock_live(self);
    PyObject *list = mr_py_stack(mr_live_reader_locked(self->live), &self->code, node, max);
    mr_live_unlock(self->live);
    return list;
}

/* Native (hybrid = 0) or hybrid frames through bind_stacks.c. */
static PyObject *resolved_stack(live_object_t *self, PyObject *args, int hybrid)
{
    unsigned long long node, native, generation;
    PyObject *max_obj = Py_None;
    size_t max;
    if (!PyArg_ParseTuple(args, "KKK|O", &node, &native, &generation, &max_obj) ||
        mr_py_parse_max(max_obj, &max) < 0)
        return NULL;
    if (native == 0 && !hybrid)
        return PyList_New(0);
    lock_live(self);
    const mr_reader_t *r = mr_live_reader_locked(self->live);
    /* Symbolizing may read debug information from disk: without the GIL;
     * the live lock keeps the tables still meanwhile. */
    PyObject *list =
        native == 0 ? mr_py_stack(r, &self->code, node, max)
                    : mr_py_resolved_stack(r, &self->sym, node, native, generation, max, hybrid, 1);
    mr_live_unlock(self->live);
    return list;
}

static PyObject *live_native_stack_trace(live_object_t *self, PyObject *args)
{
    return resolved_stack(self, args, 0);
}

static PyObject *live_hybrid_stack_trace(live_object_t *self, PyObject *args)
{
    return resolved_stack(self, args, 1);
}

static PyObject *live_thread_name(live_object_t *self, PyObject *args)
{
    unsigned long tid;
    if (!PyArg_ParseTuple(args, "k", &tid))
        return NULL;
    PyObject *out = NULL;
    lock_live(self);
    size_t len;
    const char *name =
        mr_reader_thread_name(mr_live_reader_locked(self->live), (uint32_t)tid, &len);
    if (name == NULL)
        out = Py_NewRef(Py_None);
    else
        out = mr_pystr(name, (Py_ssize_t)len);
    mr_live_unlock(self->live);
    return out;
}

static PyMethodDef live_methods[] = {
    {"close", (PyCFunction)live_close, METH_NOARGS,
     "Stops reading and closes the connection; what was read stays."},
    {"status", (PyCFunction)live_status, METH_NOARGS,
     "status() -> dict: active, end, error (str or None), heap, peak, rss, ms, n_allocations, "
     "n_frees."},
    {"snapshot", (PyCFunction)(void (*)(void))live_snapshot, METH_VARARGS | METH_KEYWORDS,
     "snapshot(merge_threads=True) -> [(tid, allocator, size, n_allocations, stack_id, "
     "native_stack_id, generation)]: the locations with allocations alive now."},
    {"stack_trace", (PyCFunction)live_stack_trace, METH_VARARGS,
     "stack_trace(stack_id, max_stacks=None) -> [(function, file, line)], innermost first."},
    {"native_stack_trace", (PyCFunction)live_native_stack_trace, METH_VARARGS,
     "native_stack_trace(stack_id, native_stack_id, generation, max_stacks=None)."},
    {"hybrid_stack_trace", (PyCFunction)live_hybrid_stack_trace, METH_VARARGS,
     "hybrid_stack_trace(stack_id, native_stack_id, generation, max_stacks=None)."},
    {"thread_name", (PyCFunction)live_thread_name, METH_VARARGS,
     "thread_name(tid) -> str or None: the latest name recorded for tid."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef live_getset[] = {
    {"header", (getter)live_header, NULL, "The stream's header fields, as a dict.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LiveType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._memray.LiveReader",
    .tp_doc = "LiveReader(host, port, timeout_ms=10000): connects to a program tracked with a "
              "SocketDestination, reads its header (waiting at most timeout_ms) and follows "
              "its allocations on a background thread.",
    .tp_basicsize = sizeof(live_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = live_new,
    .tp_dealloc = (destructor)live_dealloc,
    .tp_methods = live_methods,
    .tp_getset = live_getset,
};

int mr_bind_live_init(PyObject *module)
{
    if (PyType_Ready(&LiveType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "LiveReader", (PyObject *)&LiveType);
}
