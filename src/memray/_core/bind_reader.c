/* bind_reader.c: the Python face of the reading side: CapturePass (one pass
 * over a capture: reader.c + analyze.c) and AllocationRecord (a location or
 * an event, resolving its stacks through the pass's tables). Parses
 * arguments, calls the components, converts results and errors; the
 * counting and decoding live in the components. */
#define PY_SSIZE_T_CLEAN
#include "bind.h" /* Python.h first, as it asks */
#include "structmember.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "bind_stacks.h"
#include "format.h"
#include "merge.h"
#include "pyframe.h"
#include "reader.h"
#include "symbolize.h"

/* ---- Merge ---------------------------------------------------------------- */

/* Merge(fds, names): captures of several processes read as one (merge.h).
 * Takes duplicates of the descriptors. A CapturePass of a Merge reads the
 * merged capture as it is made; write() writes it to a file. */
typedef struct merge_object {
    PyObject_HEAD mr_merge_t *m;
} merge_object_t;

static PyTypeObject MergeType;

static PyObject *merge_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fds", "names", NULL};
    PyObject *fds_obj, *names_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO", kwlist, &fds_obj, &names_obj))
        return NULL;
    PyObject *fds_seq = PySequence_Fast(fds_obj, "fds must be a sequence of descriptors");
    PyObject *names_seq =
        fds_seq ? PySequence_Fast(names_obj, "names must be a sequence of str") : NULL;
    merge_object_t *self = NULL;
    int *fds = NULL;
    const char **names = NULL;
    Py_ssize_t n = 0, opened = 0;
    if (names_seq == NULL)
        goto out;
    n = PySequence_Fast_GET_SIZE(fds_seq);
    if (PySequence_Fast_GET_SIZE(names_seq) != n) {
        PyErr_SetString(PyExc_ValueError, "fds and names differ in length");
        goto out;
    }
    fds = PyMem_Calloc(n ? (size_t)n : 1, sizeof *fds);
    names = PyMem_Calloc(n ? (size_t)n : 1, sizeof *names);
    if (fds == NULL || names == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        names[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(names_seq, i));
        if (names[i] == NULL)
            goto out;
    }
    for (; opened < n; opened++) {
        int fd = PyObject_AsFileDescriptor(PySequence_Fast_GET_ITEM(fds_seq, opened));
        if (fd < 0)
            goto out;
        if ((fds[opened] = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto out;
        }
    }
    self = (merge_object_t *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto out;
    char err[MR_READER_ERRLEN + 128] = "";
    int rc;
    opened = 0; /* mr_merge_open owns them now */
    Py_BEGIN_ALLOW_THREADS rc = mr_merge_open(&self->m, fds, names, (size_t)n, err, sizeof err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        self->m = NULL;
        if (rc == -ENOMEM)
            PyErr_NoMemory();
        else
            PyErr_SetString(PyExc_ValueError, err);
        Py_CLEAR(self);
    }
out:
    for (Py_ssize_t i = 0; i < opened; i++)
        close(fds[i]);
    PyMem_Free(fds);
    PyMem_Free(names);
    Py_XDECREF(fds_seq);
    Py_XDECREF(names_seq);
    return (PyObject *)self;
}

static void merge_dealloc(merge_object_t *self)
{
    mr_merge_release(self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *merge_write(merge_object_t *self, PyObject *args)
{
    PyObject *path;
    int overwrite = 0;
    if (!PyArg_ParseTuple(args, "O&|p", PyUnicode_FSConverter, &path, &overwrite))
        return NULL;
    char err[MR_READER_ERRLEN + 128] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS rc =
        mr_merge_write(self->m, PyBytes_AS_STRING(path), overwrite, err, sizeof err);
    Py_END_ALLOW_THREADS Py_DECREF(path);
    if (rc < 0) {
        if (rc == -ENOMEM)
            return PyErr_NoMemory();
        errno = -rc;
        PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", -rc, err);
        if (exc != NULL) {
            PyErr_SetObject(PyExc_OSError, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef merge_methods[] = {
    {"write", (PyCFunction)merge_write, METH_VARARGS,
     "write(path, overwrite=False): writes the merged capture to path."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MergeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._memray.Merge",
    .tp_doc = "Merge(fds, names): captures of several processes, read as one capture by "
              "CapturePass(merge) or written by write(path). Raises ValueError with one line "
              "naming the input it cannot merge.",
    .tp_basicsize = sizeof(merge_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = merge_new,
    .tp_dealloc = (destructor)merge_dealloc,
    .tp_methods = merge_methods,
};

/* ---- CapturePass -------------------------------------------------------- */

typedef struct pass_object {
    PyObject_HEAD mr_reader_t *r; /* the decoder and its tables, which outlive the file */
    PyObject *name;               /* str: the capture's name in error messages */
    int used;                     /* a pass ran or is running: each reader reads once */
    int running;                  /* a pass runs without the GIL: tables are changing */
    int scanned;                  /* scan() completed: rows are valid */
    int source_open;              /* the file is still open */
    mr_agg_row_t *rows;           /* after scan(): per location, threads apart */
    size_t n_rows;
    mr_symbolizer_t *sym; /* created on the first native stack request */
    mr_pystrings_t code;  /* code names and files, created on first use */
} pass_object_t;

static PyTypeObject PassType;

typedef struct record_object {
    PyObject_HEAD pass_object_t *pass; /* owner of the tables the ids refer to; may be NULL */
    long long tid;                     /* -1 when threads were merged */
    unsigned long long address, size, n_allocations, stack_id, native_stack_id, generation;
    unsigned int allocator;
} record_object_t;

static PyTypeObject RecordType;

/* AllocatorType members by value, loaded on first use: memray._enums cannot
 * be imported while memray/__init__.py imports this module. */
static PyObject *allocator_members[16];

static PyObject *allocator_object(unsigned int value)
{
    if (value >= 16)
        return PyLong_FromUnsignedLong(value);
    if (allocator_members[value] == NULL) {
        PyObject *mod = PyImport_ImportModule("memray._enums");
        if (mod == NULL)
            return NULL;
        PyObject *cls = PyObject_GetAttrString(mod, "AllocatorType");
        Py_DECREF(mod);
        if (cls == NULL)
            return NULL;
        PyObject *member = PyObject_CallFunction(cls, "I", value);
        Py_DECREF(cls);
        if (member == NULL) {
            /* Not a public allocator value: plain int. */
            PyErr_Clear();
            return PyLong_FromUnsignedLong(value);
        }
        allocator_members[value] = member;
    }
    Py_INCREF(allocator_members[value]);
    return allocator_members[value];
}

/* Raises the exception for a reader failure: reader-specific codes become
 * OSError("<name>: <message>") with errno set; system errors their OSError
 * subclass (FileNotFoundError, PermissionError, IsADirectoryError...). */
static void set_reader_error(PyObject *name, int rc, const char *msg)
{
    if (rc == -ENOMEM) {
        PyErr_NoMemory();
        return;
    }
    if (rc == MR_ERR_EMPTY || rc == MR_ERR_NOT_CAPTURE || rc == MR_ERR_NEWER ||
        rc == MR_ERR_CORRUPT) {
        PyObject *exc =
            PyObject_CallFunction(PyExc_OSError, "N", PyUnicode_FromFormat("%U: %s", name, msg));
        if (exc == NULL)
            return;
        PyObject *no = PyLong_FromLong(-rc);
        if (no != NULL) {
            /* errno only: setting filename would change str(exc). */
            PyObject_SetAttrString(exc, "errno", no);
            Py_DECREF(no);
        }
        PyErr_SetObject(PyExc_OSError, exc);
        Py_DECREF(exc);
        return;
    }
    errno = -rc;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
}

static PyObject *pass_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"source", "name", NULL};
    PyObject *source, *name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|U", kwlist, &source, &name))
        return NULL;
    pass_object_t *self = (pass_object_t *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    char err[MR_READER_ERRLEN + 128] = "";
    int rc;
    if (PyObject_TypeCheck(source, &MergeType)) {
        self->name = name ? Py_NewRef(name) : PyUnicode_FromString("<merge>");
        rc = mr_merge_reader(((merge_object_t *)source)->m, &self->r, err, sizeof err);
    } else if (PyLong_Check(source)) {
        int fd = PyObject_AsFileDescriptor(source);
        if (fd < 0)
            goto fail;
        self->name = name ? Py_NewRef(name) : PyUnicode_FromFormat("<fd %d>", fd);
        int own = dup(fd);
        if (own < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        rc = mr_reader_open_fd(&self->r, own, err, sizeof err);
    } else {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(source, &path))
            goto fail;
        if (name != NULL) {
            self->name = Py_NewRef(name);
        } else {
            self->name = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path));
            if (self->name == NULL) {
                Py_DECREF(path);
                goto fail;
            }
        }
        rc = mr_reader_open(&self->r, PyBytes_AS_STRING(path), err, sizeof err);
        Py_DECREF(path);
    }
    if (self->name == NULL)
        goto fail;
    if (rc < 0) {
        self->r = NULL;
        set_reader_error(self->name, rc, err);
        goto fail;
    }
    self->source_open = 1;
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static void pass_dealloc(pass_object_t *self)
{
    mr_pystrings_clear(&self->code);
    mr_sym_destroy(self->sym);
    free(self->rows);
    mr_reader_close(self->r);
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Claims the reader for a pass; each CapturePass reads its capture once. */
static int pass_begin(pass_object_t *self)
{
    if (self->used) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this CapturePass has already read its capture: open another");
        return -1;
    }
    self->used = 1;
    return 0;
}

/* Closes the file once the pass is over; the tables stay for the records. */
static void pass_end(pass_object_t *self)
{
    if (self->source_open) {
        mr_reader_release_source(self->r);
        self->source_open = 0;
    }
}

/* A pass runs without the GIL, so other Python threads (a TUI, a server)
 * keep going during a long read; its progress calls take the GIL back to
 * check for Ctrl-C and to call the caller's callback. */
typedef struct tick_ctx {
    PyObject *callback; /* None or a callable taking the events done */
    PyThreadState *ts;  /* saved while the GIL is released */
} tick_ctx_t;

static int progress_tick(void *vctx, uint64_t events)
{
    tick_ctx_t *c = vctx;
    PyEval_RestoreThread(c->ts);
    int rc = 0;
    if (PyErr_CheckSignals() < 0) {
        rc = -EINTR;
    } else if (c->callback != NULL && c->callback != Py_None) {
        PyObject *res = PyObject_CallFunction(c->callback, "K", (unsigned long long)events);
        if (res == NULL)
            rc = -EINTR;
        Py_XDECREF(res);
    }
    c->ts = PyEval_SaveThread();
    return rc;
}

/* Brackets a pass: no GIL inside; records of this pass cannot exist yet
 * (each pass object runs once), so nothing reads the tables meanwhile. */
#define RUN_PASS(self, tick, call)                                                                 \
    do {                                                                                           \
        (self)->running = 1;                                                                       \
        (tick).ts = PyEval_SaveThread();                                                           \
        rc = (call);                                                                               \
        PyEval_RestoreThread((tick).ts);                                                           \
        (self)->running = 0;                                                                       \
    } while (0)

/* Turns a failed pass into an exception (one may already be set by the
 * progress callback). */
static PyObject *pass_failed(pass_object_t *self, int rc)
{
    if (PyErr_Occurred())
        return NULL;
    const char *msg = mr_reader_error(self->r);
    set_reader_error(self->name, rc, msg[0] ? msg : strerror(-rc));
    return NULL;
}

static PyObject *pass_header(pass_object_t *self, void *closure)
{
    (void)closure;
    const mr_header_t *h = mr_reader_header(self->r);
    return Py_BuildValue(
        "{s:I,s:I,s:I,s:k,s:k,s:k,s:K,s:k,s:k,s:N,s:O,s:O,s:O,s:O,s:O,s:K}", "version",
        (unsigned)h->version, "flags", (unsigned)h->flags, "python_allocator",
        (unsigned)h->python_allocator, "pid", (unsigned long)h->pid, "parent_pid",
        (unsigned long)h->parent_pid, "main_tid", (unsigned long)h->main_tid, "start_ms",
        (unsigned long long)h->start_ms, "py_hexversion", (unsigned long)h->py_hexversion,
        "interval_ms", (unsigned long)h->interval_ms, "command_line",
        mr_pystr(h->command_line, (Py_ssize_t)h->command_line_len), "native",
        (h->flags & MR_FLAG_NATIVE) ? Py_True : Py_False, "trace_python_allocators",
        (h->flags & MR_FLAG_PYALLOC) ? Py_True : Py_False, "aggregated",
        (h->flags & MR_FLAG_AGGREGATED) ? Py_True : Py_False, "merged",
        (h->flags & MR_FLAG_MERGED) ? Py_True : Py_False, "compressed",
        mr_reader_compressed(self->r) ? Py_True : Py_False, "sample_every",
        (unsigned long long)((h->flags & MR_FLAG_SAMPLED) ? h->sample_every : 0));
}

static PyObject *make_record(pass_object_t *pass, long long tid, unsigned long long address,
                             unsigned long long size, unsigned int allocator,
                             unsigned long long n_allocations, unsigned long long stack,
                             unsigned long long native, unsigned long long generation)
{
    record_object_t *rec = PyObject_New(record_object_t, &RecordType);
    if (rec == NULL)
        return NULL;
    rec->pass = pass;
    Py_XINCREF(pass);
    rec->tid = tid;
    rec->address = address;
    rec->size = size;
    rec->allocator = allocator;
    rec->n_allocations = n_allocations;
    rec->stack_id = stack;
    rec->native_stack_id = native;
    rec->generation = generation;
    return (PyObject *)rec;
}

static long long tid_of(uint32_t tid, int merged)
{
    return merged ? -1 : (long long)tid;
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

/* (ms, rss, heap, anon, file, shmem, mapped): MemorySnapshot's fields,
 * zeros for a split the record did not carry. */
static PyObject *snapshot_tuple(const mr_snapshot_t *s)
{
    return Py_BuildValue("(KKKKKKK)", (unsigned long long)s->ms, (unsigned long long)s->rss,
                         (unsigned long long)s->heap, (unsigned long long)s->split.anon,
                         (unsigned long long)s->split.file, (unsigned long long)s->split.shmem,
                         (unsigned long long)s->split.mapped);
}

/* {"heap_peak_sample": ..., "rss_peak_sample": ...} added to d: snapshot
 * tuples, or None without memory samples. 0 or -1 with an exception. */
static int add_mem_peaks(PyObject *d, const mr_mem_peaks_t *p)
{
    PyObject *heap = p->any ? snapshot_tuple(&p->heap) : Py_NewRef(Py_None);
    PyObject *rss = p->any ? snapshot_tuple(&p->rss) : Py_NewRef(Py_None);
    int rc = heap == NULL || rss == NULL || PyDict_SetItemString(d, "heap_peak_sample", heap) < 0 ||
                     PyDict_SetItemString(d, "rss_peak_sample", rss) < 0
                 ? -1
                 : 0;
    Py_XDECREF(heap);
    Py_XDECREF(rss);
    return rc;
}

static PyObject *pass_scan(pass_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"progress", NULL};
    PyObject *progress = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &progress))
        return NULL;
    if (pass_begin(self) < 0)
        return NULL;
    mr_scan_t s;
    tick_ctx_t tick = {progress, NULL};
    mr_progress_t p = {progress_tick, &tick};
    int rc;
    RUN_PASS(self, tick, mr_analyze_scan(self->r, &s, &p));
    pass_end(self);
    if (rc < 0)
        return pass_failed(self, rc);
    self->scanned = 1;
    self->rows = s.rows;
    self->n_rows = s.n_rows;
    s.rows = NULL;
    PyObject *snaps = PyList_New((Py_ssize_t)s.n_snapshots);
    for (size_t i = 0; snaps != NULL && i < s.n_snapshots; i++) {
        PyObject *t = snapshot_tuple(&s.snapshots[i]);
        if (t == NULL)
            Py_CLEAR(snaps);
        else
            PyList_SET_ITEM(snaps, (Py_ssize_t)i, t);
    }
    PyObject *trailer = Py_None;
    Py_INCREF(trailer);
    if (snaps != NULL && s.has_trailer) {
        Py_DECREF(trailer);
        trailer = Py_BuildValue("{s:K,s:K,s:K,s:K}", "ms", (unsigned long long)s.trailer.ms,
                                "total_allocations", (unsigned long long)s.trailer.total_allocs,
                                "peak", (unsigned long long)s.trailer.peak, "flags",
                                (unsigned long long)s.trailer.flags);
    }
    PyObject *out = NULL;
    if (snaps != NULL && trailer != NULL)
        out = Py_BuildValue(
            "{s:K,s:K,s:K,s:K,s:K,s:s,s:N,s:N}", "n_allocations", (unsigned long long)s.n_allocs,
            "n_frees", (unsigned long long)s.n_frees, "n_frames", (unsigned long long)s.n_frames,
            "peak", (unsigned long long)s.peak, "end_ms", (unsigned long long)s.end_ms, "end",
            end_name(s.end), "trailer", trailer, "snapshots", snaps);
    else {
        Py_XDECREF(snaps);
        Py_XDECREF(trailer);
    }
    if (out != NULL && add_mem_peaks(out, &s.mem_peaks) < 0)
        Py_CLEAR(out);
    mr_scan_free(&s);
    return out;
}

/* Records from the scan's rows: alive at the peak, or (leaks) at the end. */
static PyObject *rows_to_records(pass_object_t *self, int merge, int leaks)
{
    if (!self->scanned) {
        PyErr_SetString(PyExc_RuntimeError, "scan() has not run on this CapturePass");
        return NULL;
    }
    size_t n = self->n_rows;
    mr_agg_row_t *rows = malloc((n ? n : 1) * sizeof *rows);
    if (rows == NULL)
        return PyErr_NoMemory();
    if (n > 0)
        memcpy(rows, self->rows, n * sizeof *rows);
    if (merge && mr_agg_rows_merge_threads(rows, &n) < 0) {
        free(rows);
        return PyErr_NoMemory();
    }
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < n; i++) {
        const mr_agg_row_t *row = &rows[i];
        uint64_t count = leaks ? row->leak_n : row->peak_n;
        uint64_t bytes = leaks ? row->leak_bytes : row->peak_bytes;
        if (count == 0 && bytes == 0)
            continue;
        PyObject *rec = make_record(self, tid_of(row->key.tid, merge), 0, bytes, row->key.allocator,
                                    count, row->key.stack, row->key.native, row->generation);
        if (rec == NULL || PyList_Append(list, rec) < 0)
            Py_CLEAR(list);
        Py_XDECREF(rec);
    }
    free(rows);
    return list;
}

static PyObject *pass_peak_records(pass_object_t *self, PyObject *args)
{
    int merge = 1;
    if (!PyArg_ParseTuple(args, "|p", &merge))
        return NULL;
    return rows_to_records(self, merge, 0);
}

static PyObject *pass_leaked_records(pass_object_t *self, PyObject *args)
{
    int merge = 1;
    if (!PyArg_ParseTuple(args, "|p", &merge))
        return NULL;
    return rows_to_records(self, merge, 1);
}

static PyObject *pass_temporary_records(pass_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"merge_threads", "threshold", "progress", NULL};
    int merge = 1;
    unsigned long long threshold = 1;
    PyObject *threshold_obj = NULL, *progress = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pOO", kwlist, &merge, &threshold_obj, &progress))
        return NULL;
    /* Checked ("K" would wrap 2**64 around to 0): too large is OverflowError. */
    if (threshold_obj != NULL) {
        threshold = PyLong_AsUnsignedLongLong(threshold_obj);
        if (threshold == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
    }
    if (pass_begin(self) < 0)
        return NULL;
    mr_count_row_t *rows = NULL;
    size_t n = 0;
    tick_ctx_t tick = {progress, NULL};
    mr_progress_t p = {progress_tick, &tick};
    int rc;
    RUN_PASS(self, tick, mr_analyze_temporary(self->r, merge, threshold, &rows, &n, &p));
    pass_end(self);
    if (rc < 0)
        return pass_failed(self, rc);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *rec = make_record(self, tid_of(rows[i].key.tid, merge), 0, rows[i].bytes,
                                    rows[i].key.allocator, rows[i].n, rows[i].key.stack,
                                    rows[i].key.native, rows[i].generation);
        if (rec == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, rec);
    }
    free(rows);
    return list;
}

/* [(location record, [(allocated_before, deallocated_before or None, n, bytes), ...]), ...]:
 * rows come grouped by location. */
static PyObject *interval_rows_to_list(pass_object_t *self, const mr_interval_row_t *rows, size_t n,
                                       int merge)
{
    PyObject *out = PyList_New(0), *intervals = NULL;
    for (size_t i = 0; out != NULL && i < n; i++) {
        const mr_interval_row_t *row = &rows[i];
        int new_loc = i == 0 || memcmp(&row->key, &rows[i - 1].key, sizeof row->key) != 0;
        if (new_loc) {
            PyObject *rec = make_record(self, tid_of(row->key.tid, merge), 0, 0, row->key.allocator,
                                        0, row->key.stack, row->key.native, row->generation);
            intervals = PyList_New(0);
            PyObject *pair = (rec && intervals) ? PyTuple_Pack(2, rec, intervals) : NULL;
            Py_XDECREF(rec);
            Py_XDECREF(intervals); /* the pair holds it */
            if (pair == NULL || PyList_Append(out, pair) < 0) {
                Py_XDECREF(pair);
                Py_CLEAR(out);
                break;
            }
            Py_DECREF(pair);
        }
        PyObject *iv;
        if (row->deallocated_before == MR_NEVER)
            iv = Py_BuildValue("(KOKK)", (unsigned long long)row->allocated_before, Py_None,
                               (unsigned long long)row->n, (unsigned long long)row->bytes);
        else
            iv = Py_BuildValue("(KKKK)", (unsigned long long)row->allocated_before,
                               (unsigned long long)row->deallocated_before,
                               (unsigned long long)row->n, (unsigned long long)row->bytes);
        if (iv == NULL || PyList_Append(intervals, iv) < 0)
            Py_CLEAR(out);
        Py_XDECREF(iv);
    }
    return out;
}

static PyObject *pass_temporal_records(pass_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"merge_threads", "stride", "progress", NULL};
    int merge = 1;
    unsigned long long stride = 0;
    PyObject *progress = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pKO", kwlist, &merge, &stride, &progress))
        return NULL;
    if (pass_begin(self) < 0)
        return NULL;
    mr_interval_row_t *rows = NULL;
    size_t n = 0;
    tick_ctx_t tick = {progress, NULL};
    mr_progress_t p = {progress_tick, &tick};
    int rc;
    RUN_PASS(self, tick, mr_analyze_lifetimes(self->r, merge, stride, &rows, &n, &p));
    pass_end(self);
    if (rc < 0)
        return pass_failed(self, rc);
    PyObject *out = interval_rows_to_list(self, rows, n, merge);
    free(rows);
    return out;
}

static PyObject *pass_temporal_hwm_records(pass_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"merge_threads", "stride", "progress", NULL};
    int merge = 1;
    unsigned long long stride = 0;
    PyObject *progress = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pKO", kwlist, &merge, &stride, &progress))
        return NULL;
    if (pass_begin(self) < 0)
        return NULL;
    mr_interval_row_t *rows = NULL;
    size_t n = 0, n_hwm = 0;
    uint64_t *hwm = NULL;
    tick_ctx_t tick = {progress, NULL};
    mr_progress_t p = {progress_tick, &tick};
    int rc;
    RUN_PASS(self, tick,
             mr_analyze_temporal_hwm(self->r, merge, stride, &rows, &n, &hwm, &n_hwm, &p));
    pass_end(self);
    if (rc < 0)
        return pass_failed(self, rc);
    PyObject *records = interval_rows_to_list(self, rows, n, merge);
    PyObject *peaks = records ? PyList_New((Py_ssize_t)n_hwm) : NULL;
    for (size_t i = 0; peaks != NULL && i < n_hwm; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(hwm[i]);
        if (v == NULL)
            Py_CLEAR(peaks);
        else
            PyList_SET_ITEM(peaks, (Py_ssize_t)i, v);
    }
    free(rows);
    free(hwm);
    if (peaks == NULL) {
        Py_XDECREF(records);
        return NULL;
    }
    return Py_BuildValue("(NN)", records, peaks);
}

static PyObject *pass_statistics(pass_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"progress", NULL};
    PyObject *progress = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &progress))
        return NULL;
    if (pass_begin(self) < 0)
        return NULL;
    mr_stats_t *st = NULL;
    uint64_t end_ms = 0;
    mr_mem_peaks_t peaks;
    tick_ctx_t tick = {progress, NULL};
    mr_progress_t p = {progress_tick, &tick};
    int rc;
    RUN_PASS(self, tick, mr_analyze_stats(self->r, &st, &end_ms, &peaks, &p));
    pass_end(self);
    if (rc < 0)
        return pass_failed(self, rc);
    mr_stats_summary_t sum;
    mr_stats_summary(st, &sum);
    int native = (mr_reader_header(self->r)->flags & MR_FLAG_NATIVE) != 0;
    mr_size_count_t *sizes = NULL;
    mr_frame_total_t *frames = NULL;
    mr_count_row_t *locs = NULL;
    size_t n_sizes = 0, n_frames = 0, n_locs = 0;
    PyObject *by_size = NULL, *by_alloc = NULL, *by_frame = NULL, *by_location = NULL;
    PyObject *by_stack = NULL, *stacks = NULL;
    PyObject *out = NULL;
    if (mr_stats_sizes(st, &sizes, &n_sizes) < 0 || mr_stats_frames(st, &frames, &n_frames) < 0 ||
        mr_stats_locs(st, &locs, &n_locs) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if ((by_size = PyDict_New()) == NULL || (by_alloc = PyDict_New()) == NULL ||
        (by_frame = PyList_New(0)) == NULL || (by_location = PyList_New(0)) == NULL ||
        (by_stack = PyList_New(0)) == NULL || (stacks = PyDict_New()) == NULL)
        goto done;
    for (size_t i = 0; i < n_sizes; i++) {
        PyObject *k = PyLong_FromUnsignedLongLong(sizes[i].size);
        PyObject *v = PyLong_FromUnsignedLongLong(sizes[i].count);
        int bad = k == NULL || v == NULL || PyDict_SetItem(by_size, k, v) < 0;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (bad)
            goto done;
    }
    for (unsigned a = 0; a < 16; a++) {
        if (sum.by_allocator[a] == 0)
            continue;
        PyObject *k = PyLong_FromUnsignedLong(a);
        PyObject *v = PyLong_FromUnsignedLongLong(sum.by_allocator[a]);
        int bad = k == NULL || v == NULL || PyDict_SetItem(by_alloc, k, v) < 0;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (bad)
            goto done;
    }
    for (size_t i = 0; i < n_frames; i++) {
        PyObject *loc = mr_py_frame(self->r, &self->code, frames[i].frame);
        PyObject *t = loc ? Py_BuildValue("(NKK)", loc, (unsigned long long)frames[i].count,
                                          (unsigned long long)frames[i].bytes)
                          : NULL;
        int bad = t == NULL || PyList_Append(by_frame, t) < 0;
        Py_XDECREF(t);
        if (bad)
            goto done;
    }
    /* Every Python stack once (stacks: NODE id -> frames, innermost first)
     * and what was allocated under each (by_stack), for the top modules. */
    for (size_t i = 0; i < n_locs; i++) {
        const mr_count_row_t *l = &locs[i];
        PyObject *id = PyLong_FromUnsignedLongLong(l->key.stack);
        int bad = id == NULL;
        if (!bad && !PyDict_Contains(stacks, id)) {
            PyObject *frames_list = mr_py_stack(self->r, &self->code, l->key.stack, SIZE_MAX);
            bad = frames_list == NULL || PyDict_SetItem(stacks, id, frames_list) < 0;
            Py_XDECREF(frames_list);
        }
        PyObject *t = bad ? NULL
                          : Py_BuildValue("(OKK)", id, (unsigned long long)l->n,
                                          (unsigned long long)l->bytes);
        bad = t == NULL || PyList_Append(by_stack, t) < 0;
        Py_XDECREF(t);
        Py_XDECREF(id);
        if (bad)
            goto done;
    }
    /* Native captures: the innermost hybrid frame of each (python, native)
     * stack pair, so an allocating C function is the location. */
    for (size_t i = 0; native && i < n_locs; i++) {
        const mr_count_row_t *l = &locs[i];
        PyObject *loc = NULL;
        if (l->key.native != 0) {
            PyObject *stack = mr_py_resolved_stack(self->r, &self->sym, l->key.stack, l->key.native,
                                                   l->generation, 1, 1, 0);
            if (stack == NULL)
                goto done;
            if (PyList_GET_SIZE(stack) > 0) {
                loc = PyList_GET_ITEM(stack, 0);
                Py_INCREF(loc);
            }
            Py_DECREF(stack);
        }
        if (loc == NULL &&
            (loc = mr_py_frame(self->r, &self->code,
                               mr_reader_stack_top_frame(self->r, l->key.stack))) == NULL)
            goto done;
        PyObject *t =
            Py_BuildValue("(NKK)", loc, (unsigned long long)l->n, (unsigned long long)l->bytes);
        int bad = t == NULL || PyList_Append(by_location, t) < 0;
        Py_XDECREF(t);
        if (bad)
            goto done;
    }
    const mr_trailer_t *trailer = mr_reader_trailer(self->r);
    out = Py_BuildValue(
        "{s:O,s:O,s:K,s:K,s:K,s:K,s:K,s:K,s:O,s:O,s:O,s:O,s:O}", "by_stack", by_stack, "stacks",
        stacks, "total_allocations", (unsigned long long)sum.total_allocs, "total_bytes",
        (unsigned long long)sum.total_bytes, "peak", (unsigned long long)sum.peak, "n_records",
        (unsigned long long)(mr_reader_count(self->r, MR_REC_ALLOC) +
                             mr_reader_count(self->r, MR_REC_FREE)),
        "n_frames", (unsigned long long)mr_reader_count(self->r, MR_REC_FRAME), "end_ms",
        (unsigned long long)end_ms, "by_size", by_size, "by_allocator", by_alloc, "by_frame",
        by_frame, "by_location", by_location, "has_trailer", trailer ? Py_True : Py_False);
    if (out != NULL && add_mem_peaks(out, &peaks) < 0)
        Py_CLEAR(out);
done:
    Py_XDECREF(by_size);
    Py_XDECREF(by_alloc);
    Py_XDECREF(by_frame);
    Py_XDECREF(by_location);
    Py_XDECREF(by_stack);
    Py_XDECREF(stacks);
    free(sizes);
    free(frames);
    free(locs);
    mr_stats_destroy(st);
    return out;
}

/* Iteration: every ALLOC and FREE event as a record, read lazily. */
static PyObject *pass_iter(pass_object_t *self)
{
    if (pass_begin(self) < 0)
        return NULL;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *pass_iternext(pass_object_t *self)
{
    if (!self->source_open)
        return NULL;
    mr_event_t ev;
    int rc;
    while ((rc = mr_reader_next(self->r, &ev)) > 0) {
        if (ev.type == MR_REC_ALLOC)
            return make_record(self, ev.tid, ev.addr, ev.size, ev.allocator, 1, ev.stack, ev.native,
                               ev.generation);
        if (ev.type == MR_REC_FREE)
            return make_record(self, ev.tid, ev.addr, ev.size, ev.allocator, 1, 0, 0,
                               ev.generation);
    }
    pass_end(self);
    if (rc < 0)
        return pass_failed(self, rc);
    return NULL; /* StopIteration */
}

/* Hands the chunk to write(str) and empties it. 0 or -1 with an exception. */
static int dump_flush(PyObject *write, char *buf, size_t *len)
{
    if (*len == 0)
        return 0;
    PyObject *res = PyObject_CallFunction(write, "N", mr_pystr(buf, (Py_ssize_t)*len));
    *len = 0;
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return PyErr_CheckSignals();
}

/* Writes every record as a line of text through write(str), in chunks. */
static PyObject *pass_dump(pass_object_t *self, PyObject *args)
{
    PyObject *write;
    if (!PyArg_ParseTuple(args, "O", &write))
        return NULL;
    if (pass_begin(self) < 0)
        return NULL;
    size_t cap = (size_t)1 << 16, len = 0, line_cap = 4096;
    char *buf = PyMem_Malloc(cap), *line = PyMem_Malloc(line_cap);
    int rc = 0, failed = 0;
    if (buf == NULL || line == NULL) {
        PyErr_NoMemory();
        failed = 1;
        goto out;
    }
    mr_reader_set_raw(self->r, 1);
    mr_event_t ev;
    for (int first = 1;; first = 0) {
        if (!first && (rc = mr_reader_next(self->r, &ev)) <= 0)
            break;
        size_t n;
        for (;;) {
            n = (size_t)(first ? mr_reader_format_header(self->r, line, line_cap)
                               : mr_reader_format_event(self->r, &ev, line, line_cap));
            if (n < line_cap)
                break;
            char *bigger = PyMem_Realloc(line, n + 1);
            if (bigger == NULL) {
                PyErr_NoMemory();
                failed = 1;
                goto out;
            }
            line = bigger;
            line_cap = n + 1;
        }
        if (len + n + 1 > cap && dump_flush(write, buf, &len) < 0) {
            failed = 1;
            goto out;
        }
        if (n + 1 > cap) {
            char *bigger = PyMem_Realloc(buf, n + 1);
            if (bigger == NULL) {
                PyErr_NoMemory();
                failed = 1;
                goto out;
            }
            buf = bigger;
            cap = n + 1;
        }
        memcpy(buf + len, line, n);
        len += n;
        buf[len++] = '\n';
    }
    if (dump_flush(write, buf, &len) < 0)
        failed = 1;
out:
    PyMem_Free(buf);
    PyMem_Free(line);
    pass_end(self);
    if (failed)
        return NULL;
    if (rc < 0)
        return pass_failed(self, rc);
    Py_RETURN_NONE;
}

static PyObject *pass_close(pass_object_t *self, PyObject *unused)
{
    (void)unused;
    self->used = 1;
    pass_end(self);
    Py_RETURN_NONE;
}

static PyObject *pass_thread_name(pass_object_t *self, PyObject *args)
{
    unsigned long tid;
    if (!PyArg_ParseTuple(args, "k", &tid))
        return NULL;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "a pass is running on this CapturePass");
        return NULL;
    }
    size_t len;
    const char *name = mr_reader_thread_name(self->r, (uint32_t)tid, &len);
    if (name == NULL)
        Py_RETURN_NONE;
    return mr_pystr(name, (Py_ssize_t)len);
}

static PyObject *pass_processes(pass_object_t *self, PyObject *unused)
{
    (void)unused;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "a pass is running on this CapturePass");
        return NULL;
    }
    size_t n = mr_reader_n_processes(self->r);
    PyObject *out = PyList_New(0);
    for (size_t i = 1; out != NULL && i <= n; i++) {
        const mr_process_t *p = mr_reader_process(self->r, (uint32_t)i);
        PyObject *d =
            Py_BuildValue("{s:k,s:k,s:k,s:K,s:k,s:N}", "number", (unsigned long)p->number, "pid",
                          (unsigned long)p->pid, "parent_pid", (unsigned long)p->parent_pid,
                          "start_offset_ms", (unsigned long long)p->start_offset_ms,
                          "py_hexversion", (unsigned long)p->py_hexversion, "command_line",
                          mr_pystr(p->command_line, (Py_ssize_t)p->command_line_len));
        if (d == NULL || PyList_Append(out, d) < 0)
            Py_CLEAR(out);
        Py_XDECREF(d);
    }
    return out;
}

static PyObject *pass_thread_pid(pass_object_t *self, PyObject *args)
{
    unsigned long tid;
    if (!PyArg_ParseTuple(args, "k", &tid))
        return NULL;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "a pass is running on this CapturePass");
        return NULL;
    }
    const mr_process_t *p =
        mr_reader_process(self->r, mr_reader_thread_process(self->r, (uint32_t)tid));
    if (p == NULL)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(p->pid);
}

static PyMethodDef pass_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))pass_scan, METH_VARARGS | METH_KEYWORDS,
     "scan(progress=None) -> dict: the first pass (metadata, snapshots, peak and leaks)."},
    {"peak_records", (PyCFunction)pass_peak_records, METH_VARARGS,
     "peak_records(merge_threads=True) -> [AllocationRecord]: alive at the heap peak "
     "(after scan)."},
    {"leaked_records", (PyCFunction)pass_leaked_records, METH_VARARGS,
     "leaked_records(merge_threads=True) -> [AllocationRecord]: alive at the end (after scan)."},
    {"temporary_records", (PyCFunction)(void (*)(void))pass_temporary_records,
     METH_VARARGS | METH_KEYWORDS,
     "temporary_records(merge_threads=True, threshold=1, progress=None) -> [AllocationRecord]."},
    {"temporal_records", (PyCFunction)(void (*)(void))pass_temporal_records,
     METH_VARARGS | METH_KEYWORDS,
     "temporal_records(merge_threads=True, stride=0, progress=None) -> [(record, intervals)]."},
    {"temporal_hwm_records", (PyCFunction)(void (*)(void))pass_temporal_hwm_records,
     METH_VARARGS | METH_KEYWORDS,
     "temporal_hwm_records(merge_threads=True, stride=0, progress=None) -> "
     "([(record, intervals)], [peak bytes per interval])."},
    {"statistics", (PyCFunction)(void (*)(void))pass_statistics, METH_VARARGS | METH_KEYWORDS,
     "statistics(progress=None) -> dict: the numbers behind compute_statistics."},
    {"dump", (PyCFunction)pass_dump, METH_VARARGS,
     "dump(write): every record as one line of text, passed to write in chunks."},
    {"thread_name", (PyCFunction)pass_thread_name, METH_VARARGS,
     "thread_name(tid) -> str or None: the latest name recorded for tid."},
    {"processes", (PyCFunction)pass_processes, METH_NOARGS,
     "processes() -> [dict]: a merged capture's processes read so far (number, pid, "
     "parent_pid, start_offset_ms, py_hexversion, command_line); [] for one process."},
    {"thread_pid", (PyCFunction)pass_thread_pid, METH_VARARGS,
     "thread_pid(tid) -> int or None: in a merged capture, the pid of the process tid ran in."},
    {"close", (PyCFunction)pass_close, METH_NOARGS, "Closes the file; records stay usable."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pass_getset[] = {
    {"header", (getter)pass_header, NULL, "The capture's header fields, as a dict.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PassType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._memray.CapturePass",
    .tp_doc = "CapturePass(source, name=None): one pass over a capture file (a path or an "
              "open file descriptor, which is duplicated). Run one of scan(), "
              "temporary_records(), temporal_records(), temporal_hwm_records(), statistics(), "
              "dump() or iteration; the tables it read stay for resolving records' stacks.",
    .tp_basicsize = sizeof(pass_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = pass_new,
    .tp_dealloc = (destructor)pass_dealloc,
    .tp_methods = pass_methods,
    .tp_getset = pass_getset,
    .tp_iter = (getiterfunc)pass_iter,
    .tp_iternext = (iternextfunc)pass_iternext,
};

/* ---- stacks --------------------------------------------------------------- */

static int parse_max_stacks(PyObject *args, PyObject *kwds, size_t *max)
{
    static char *kwlist[] = {"max_stacks", NULL};
    PyObject *obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &obj))
        return -1;
    return mr_py_parse_max(obj, max);
}

static PyObject *python_stack(record_object_t *self, size_t max)
{
    if (self->stack_id == 0)
        return PyList_New(0);
    if (self->pass == NULL) {
        PyErr_SetString(PyExc_ValueError, "record has no capture to resolve its stack from");
        return NULL;
    }
    return mr_py_stack(self->pass->r, &self->pass->code, self->stack_id, max);
}

/* Deallocations are recorded without a stack; asking for one is an error,
 * in memray 1.x's words. */
static int refuse_deallocation(const record_object_t *self)
{
    if (!mr_allocator_is_free(self->allocator))
        return 0;
    PyErr_SetString(PyExc_NotImplementedError, "Stack traces for deallocations aren't captured.");
    return -1;
}

static PyObject *record_stack_trace(record_object_t *self, PyObject *args, PyObject *kwds)
{
    size_t max;
    if (refuse_deallocation(self) < 0 || parse_max_stacks(args, kwds, &max) < 0)
        return NULL;
    return python_stack(self, max);
}

/* Native (hybrid = 0) or hybrid frames through bind_stacks.c. */
static PyObject *resolved_stack(record_object_t *self, size_t max, int hybrid)
{
    if (self->native_stack_id == 0)
        return hybrid ? python_stack(self, max) : PyList_New(0);
    if (self->pass == NULL) {
        PyErr_SetString(PyExc_ValueError, "record has no capture to resolve its stack from");
        return NULL;
    }
    return mr_py_resolved_stack(self->pass->r, &self->pass->sym, self->stack_id,
                                self->native_stack_id, self->generation, max, hybrid, 0);
}

static PyObject *record_native_stack_trace(record_object_t *self, PyObject *args, PyObject *kwds)
{
    size_t max;
    if (refuse_deallocation(self) < 0 || parse_max_stacks(args, kwds, &max) < 0)
        return NULL;
    return resolved_stack(self, max, 0);
}

static PyObject *record_hybrid_stack_trace(record_object_t *self, PyObject *args, PyObject *kwds)
{
    size_t max;
    if (refuse_deallocation(self) < 0 || parse_max_stacks(args, kwds, &max) < 0)
        return NULL;
    return resolved_stack(self, max, 1);
}

/* ---- AllocationRecord ------------------------------------------------------ */

static PyObject *record_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    /* AllocationRecord((tid, address, size, allocator, stack_id, n_allocations,
     * native_stack_id, native_segment_generation)), as memray 1.x; such a
     * record has no capture behind it. */
    (void)type;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "AllocationRecord takes one tuple argument");
        return NULL;
    }
    long long tid;
    unsigned long long address, size, stack, n, native, generation;
    unsigned int allocator;
    if (!PyArg_ParseTuple(args, "(LKKIKKKK)", &tid, &address, &size, &allocator, &stack, &n,
                          &native, &generation))
        return NULL;
    return make_record(NULL, tid, address, size, allocator, n, stack, native, generation);
}

static void record_dealloc(record_object_t *self)
{
    Py_XDECREF(self->pass);
    PyObject_Free(self);
}

static PyObject *record_key(record_object_t *self)
{
    return Py_BuildValue("(LKKIKKKK)", self->tid, self->address, self->size, self->allocator,
                         self->stack_id, self->n_allocations, self->native_stack_id,
                         self->generation);
}

static PyObject *record_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!PyObject_TypeCheck(a, &RecordType) || !PyObject_TypeCheck(b, &RecordType))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *ka = record_key((record_object_t *)a), *kb = record_key((record_object_t *)b);
    PyObject *res = (ka && kb) ? PyObject_RichCompare(ka, kb, op) : NULL;
    Py_XDECREF(ka);
    Py_XDECREF(kb);
    return res;
}

static Py_hash_t record_hash(record_object_t *self)
{
    PyObject *k = record_key(self);
    if (k == NULL)
        return -1;
    Py_hash_t h = PyObject_Hash(k);
    Py_DECREF(k);
    return h;
}

static PyObject *record_repr(record_object_t *self)
{
    PyObject *alloc = allocator_object(self->allocator);
    if (alloc == NULL)
        return NULL;
    PyObject *name = PyObject_GetAttrString(alloc, "name");
    if (name == NULL) {
        PyErr_Clear();
        name = PyObject_Str(alloc);
    }
    Py_DECREF(alloc);
    if (name == NULL)
        return NULL;
    /* PyUnicode_FromFormat has no %llx: the numbers are formatted here. */
    char head[128];
    if (self->tid < 0)
        snprintf(head, sizeof head, "tid=merged, address=0x%llx, size=%llu", self->address,
                 self->size);
    else
        snprintf(head, sizeof head, "tid=%lld, address=0x%llx, size=%llu", self->tid, self->address,
                 self->size);
    PyObject *out = PyUnicode_FromFormat("AllocationRecord<%s, allocator=%U, allocations=%llu>",
                                         head, name, self->n_allocations);
    Py_DECREF(name);
    return out;
}

static PyObject *record_allocator(record_object_t *self, void *closure)
{
    (void)closure;
    return allocator_object(self->allocator);
}

static PyObject *record_thread_name(record_object_t *self, void *closure)
{
    (void)closure;
    if (self->tid < 0)
        return PyUnicode_FromString("merged thread");
    size_t len = 0;
    const char *name =
        self->pass ? mr_reader_thread_name(self->pass->r, (uint32_t)self->tid, &len) : NULL;
    /* A merged capture's threads say which process they ran in. */
    const mr_process_t *p =
        self->pass ? mr_reader_process(self->pass->r,
                                       mr_reader_thread_process(self->pass->r, (uint32_t)self->tid))
                   : NULL;
    if (p != NULL) {
        if (name == NULL)
            return PyUnicode_FromFormat("thread %lld (pid %lu)", self->tid, (unsigned long)p->pid);
        PyObject *n = mr_pystr(name, (Py_ssize_t)len);
        PyObject *out = n ? PyUnicode_FromFormat("%U (pid %lu)", n, (unsigned long)p->pid) : NULL;
        Py_XDECREF(n);
        return out;
    }
    if (name == NULL)
        return PyUnicode_FromString("");
    return mr_pystr(name, (Py_ssize_t)len);
}

static PyMemberDef record_members[] = {
    {"tid", T_LONGLONG, offsetof(record_object_t, tid), READONLY,
     "OS thread id (-1 when threads are merged)"},
    {"address", T_ULONGLONG, offsetof(record_object_t, address), READONLY,
     "address of the block (0 for grouped records)"},
    {"size", T_ULONGLONG, offsetof(record_object_t, size), READONLY, "bytes (summed when grouped)"},
    {"n_allocations", T_ULONGLONG, offsetof(record_object_t, n_allocations), READONLY,
     "allocations grouped in this record"},
    {"stack_id", T_ULONGLONG, offsetof(record_object_t, stack_id), READONLY,
     "Python stack (trie node) id, 0 = none"},
    {"native_stack_id", T_ULONGLONG, offsetof(record_object_t, native_stack_id), READONLY,
     "native stack (trie node) id, 0 = none"},
    {"native_segment_generation", T_ULONGLONG, offsetof(record_object_t, generation), READONLY,
     "loaded-object map generation the native addresses belong to"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef record_getset[] = {
    {"allocator", (getter)record_allocator, NULL, "memray.AllocatorType of the call", NULL},
    {"thread_name", (getter)record_thread_name, NULL, "the thread's latest recorded name", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef record_methods[] = {
    {"stack_trace", (PyCFunction)(void (*)(void))record_stack_trace, METH_VARARGS | METH_KEYWORDS,
     "stack_trace(max_stacks=None) -> [(function, file, line)], innermost first."},
    {"native_stack_trace", (PyCFunction)(void (*)(void))record_native_stack_trace,
     METH_VARARGS | METH_KEYWORDS,
     "native_stack_trace(max_stacks=None) -> [(function, file, line)], innermost first."},
    {"hybrid_stack_trace", (PyCFunction)(void (*)(void))record_hybrid_stack_trace,
     METH_VARARGS | METH_KEYWORDS,
     "hybrid_stack_trace(max_stacks=None): native frames with each interpreter frame "
     "replaced by the Python frames it ran; the Python stack without native frames."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._memray.AllocationRecord",
    .tp_doc = "An allocation, a deallocation, or allocations grouped by location.",
    .tp_basicsize = sizeof(record_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = record_new,
    .tp_dealloc = (destructor)record_dealloc,
    .tp_repr = (reprfunc)record_repr,
    .tp_hash = (hashfunc)record_hash,
    .tp_richcompare = record_richcompare,
    .tp_members = record_members,
    .tp_getset = record_getset,
    .tp_methods = record_methods,
};

/* ---- interpreter facts ------------------------------------------------------- */

static PyObject *lines_tuple(const char *s)
{
    PyObject *text = PyUnicode_FromString(s);
    if (text == NULL)
        return NULL;
    PyObject *list = PyUnicode_Splitlines(text, 0);
    Py_DECREF(text);
    if (list == NULL)
        return NULL;
    PyObject *t = PyList_AsTuple(list);
    Py_DECREF(list);
    return t;
}

static PyObject *interpreter_facts(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    size_t n = 0;
    const mr_pyversion_facts_t *rows = mr_pyversion_facts(0, &n);
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < n; i++) {
        const mr_pyversion_facts_t *f = &rows[i];
        PyObject *d = Py_BuildValue(
            "{s:k,s:s,s:N,s:N,s:N}", "since", (unsigned long)f->since, "eval_symbol",
            f->eval_symbol, "import_files", lines_tuple(f->import_files), "import_native",
            lines_tuple(f->import_native), "runpy_files", lines_tuple(f->runpy_files));
        if (d == NULL || PyList_Append(out, d) < 0)
            Py_CLEAR(out);
        Py_XDECREF(d);
    }
    return out;
}

static PyMethodDef reader_functions[] = {
    {"interpreter_facts", interpreter_facts, METH_NOARGS,
     "What reports know of each supported CPython, newest first: a list of dicts with since "
     "(PY_VERSION_HEX), eval_symbol, import_files, import_native and runpy_files."},
    {NULL, NULL, 0, NULL},
};

int mr_bind_reader_init(PyObject *module)
{
    if (PyType_Ready(&PassType) < 0 || PyType_Ready(&RecordType) < 0 ||
        PyType_Ready(&MergeType) < 0)
        return -1;
    if (PyModule_AddFunctions(module, reader_functions) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "CapturePass", (PyObject *)&PassType) < 0 ||
        PyModule_AddObjectRef(module, "AllocationRecord", (PyObject *)&RecordType) < 0 ||
        PyModule_AddObjectRef(module, "Merge", (PyObject *)&MergeType) < 0)
        return -1;
    return 0;
}
