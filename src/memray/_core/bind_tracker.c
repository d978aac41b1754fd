/* bind_tracker.c: Python functions that start and stop the tracking engine
 * (tracker.c) and name threads, and the SocketSink that a live Tracker holds
 * from its constructor (which waits for the reader) to its start. Parses
 * arguments, calls the components, converts errno results to exceptions. */
#define PY_SSIZE_T_CLEAN
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "bind.h"
#include "pystack.h"
#include "sink.h"
#include "tracker.h"

/* ---- SocketSink ------------------------------------------------------------ */

/* How often the wait for a reader wakes up to run signal handlers, so Ctrl-C
 * interrupts a Tracker constructor waiting for `memray live`. */
#define ACCEPT_POLL_MS 100

typedef struct socket_sink_object {
    PyObject_HEAD mr_sink_t *sink; /* NULL once handed to start() or closed */
} socket_sink_object_t;

static PyTypeObject SocketSinkType;

static void set_socket_error(int rc, const char *address, unsigned port)
{
    errno = -rc;
    PyObject *where = PyUnicode_FromFormat("%s:%u", address, port);
    if (where == NULL)
        return;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, where);
    Py_DECREF(where);
}

static PyObject *socket_sink_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"address", "port", NULL};
    const char *address;
    unsigned int port;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sI", kwlist, &address, &port))
        return NULL;
    if (port < 1 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port must be between 1 and 65535, not %u", port);
        return NULL;
    }
    int lfd, rc;
    Py_BEGIN_ALLOW_THREADS rc = mr_sink_socket_listen(address, port, &lfd, NULL);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        set_socket_error(rc, address, port);
        return NULL;
    }
    mr_sink_t *sink = NULL;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS rc = mr_sink_socket_accept(lfd, ACCEPT_POLL_MS, &sink);
        Py_END_ALLOW_THREADS if (rc == 0) break;
        if ((rc == -ETIMEDOUT || rc == -EINTR) && PyErr_CheckSignals() == 0)
            continue;
        close(lfd);
        if (!PyErr_Occurred())
            set_socket_error(rc, address, port);
        return NULL;
    }
    close(lfd); /* exactly one reader */
    socket_sink_object_t *self = (socket_sink_object_t *)type->tp_alloc(type, 0);
    if (self == NULL) {
        mr_sink_abandon(sink);
        return NULL;
    }
    self->sink = sink;
    return (PyObject *)self;
}

static PyObject *socket_sink_close(socket_sink_object_t *self, PyObject *unused)
{
    (void)unused;
    if (self->sink != NULL) {
        mr_sink_abandon(self->sink);
        self->sink = NULL;
    }
    Py_RETURN_NONE;
}

static void socket_sink_dealloc(socket_sink_object_t *self)
{
    if (self->sink != NULL)
        mr_sink_abandon(self->sink);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef socket_sink_methods[] = {
    {"close", (PyCFunction)socket_sink_close, METH_NOARGS,
     "Disconnects the reader without streaming anything."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SocketSinkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._memray.SocketSink",
    .tp_doc = "SocketSink(address, port): listens on address:port and waits (interruptibly) "
              "for one reader to connect; start(sink=...) then streams the capture to it.",
    .tp_basicsize = sizeof(socket_sink_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = socket_sink_new,
    .tp_dealloc = (destructor)socket_sink_dealloc,
    .tp_methods = socket_sink_methods,
};

/* ---- start / stop ------------------------------------------------------------ */

static PyObject *start(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"path",        "overwrite",    "buffered",         "compress",
                             "aggregated",  "native",       "trace_pymalloc",   "follow_fork",
                             "interval_ms", "command_line", "python_allocator", "boundary_frame",
                             "sink",        "fork_base",    "parent_pid",       "sample_every",
                             NULL};
    PyObject *path_arg, *path_obj, *boundary = Py_None, *sink_arg = Py_None;
    int overwrite = 0, buffered = 0, compress = 1, aggregated = 0, native = 0, pymalloc = 0,
        follow_fork = 0, python_allocator = 0;
    unsigned int interval_ms = 10;
    unsigned int parent_pid = 0;
    unsigned long long sample_every = 0;
    const char *command_line = "", *fork_base = NULL;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "O|$pppppppIsiOOzIK", kwlist, &path_arg, &overwrite, &buffered, &compress,
            &aggregated, &native, &pymalloc, &follow_fork, &interval_ms, &command_line,
            &python_allocator, &boundary, &sink_arg, &fork_base, &parent_pid, &sample_every))
        return NULL;
    socket_sink_object_t *sink = NULL;
    if (sink_arg != Py_None) {
        if (!PyObject_TypeCheck(sink_arg, &SocketSinkType)) {
            PyErr_SetString(PyExc_TypeError, "sink must be a SocketSink");
            return NULL;
        }
        sink = (socket_sink_object_t *)sink_arg;
        if (sink->sink == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "the SocketSink was already used or closed");
            return NULL;
        }
    }
    if (!PyUnicode_FSConverter(path_arg, &path_obj))
        return NULL;
    if (mr_tracker_is_started()) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_RuntimeError,
                        "No more than one Tracker instance can be active at the same time");
        return NULL;
    }
    mr_tracker_options_t opts = {
        .path = PyBytes_AS_STRING(path_obj),
        .overwrite = overwrite,
        .buffered = buffered,
        .compress = compress,
        .aggregated = aggregated,
        .native = native,
        .trace_pymalloc = pymalloc,
        .follow_fork = follow_fork,
        .fork_base = fork_base,
        .parent_pid = parent_pid,
        .interval_ms = interval_ms,
        .command_line = command_line,
        .python_allocator = python_allocator,
        .sink = sink ? sink->sink : NULL,
        .sample_every = sample_every,
    };
    if (sink != NULL)
        sink->sink = NULL; /* the tracker owns it now, whatever start returns */
    mr_pystack_set_boundary(boundary == Py_None ? NULL : boundary, mr_tracker_gettid());
    int rc = mr_tracker_start(&opts);
    if (rc < 0) {
        errno = -rc;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_arg);
        Py_DECREF(path_obj);
        return NULL;
    }
    Py_DECREF(path_obj);
    Py_RETURN_NONE;
}

/* Returns None, or (what, strerror text): what is "record" when recording
 * stopped early, "compress" when only the compression on exit failed (the
 * capture is complete and left uncompressed). */
static PyObject *stop(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    int rc = mr_tracker_stop();
    mr_pystack_release_code_refs();
    if (rc == -ESRCH) {
        PyErr_SetString(PyExc_RuntimeError, "memray is not tracking");
        return NULL;
    }
    if (rc < 0)
        return Py_BuildValue("(ss)", "record", strerror(-rc));
    if (mr_tracker_compress_error() != 0)
        return Py_BuildValue("(ss)", "compress", strerror(mr_tracker_compress_error()));
    Py_RETURN_NONE;
}

static PyObject *set_thread_name(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long tid;
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "ks#", &tid, &name, &len))
        return NULL;
    if (mr_tracker_wants())
        mr_tracker_record_thread_name((uint32_t)tid, name, (size_t)len);
    Py_RETURN_NONE;
}

static PyObject *set_greenlet_tid(PyObject *self, PyObject *arg)
{
    (void)self;
    unsigned long tid = PyLong_AsUnsignedLong(arg);
    if (tid == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    mr_tracker_set_greenlet_tid((uint32_t)tid);
    Py_RETURN_NONE;
}

/* For tests only: the n-th write to a capture from now on fails with EIO
 * (and every later one), until tracking stops. */
static PyObject *test_fail_writes_after(PyObject *self, PyObject *arg)
{
    (void)self;
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    mr_sink_inject_failure(n);
    Py_RETURN_NONE;
}

static PyObject *after_fork_in_child(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    mr_tracker_after_fork_in_child();
    Py_RETURN_NONE;
}

static PyObject *is_tracking(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(mr_tracker_is_started());
}

static PyObject *capture_path(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    const char *p = mr_tracker_path();
    if (p == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(p);
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))start, METH_VARARGS | METH_KEYWORDS,
     "Start tracking into a capture file."},
    {"stop", stop, METH_NOARGS, "Stop tracking; returns an error text if recording failed."},
    {"set_thread_name", set_thread_name, METH_VARARGS, "Record the name of thread tid."},
    {"set_greenlet_tid", set_greenlet_tid, METH_O,
     "The calling thread now runs a greenlet recorded as thread tid (0: its own id)."},
    {"_test_fail_writes_after", test_fail_writes_after, METH_O,
     "Tests only: the n-th capture write from now on fails (EIO), until tracking stops."},
    {"_after_fork_in_child", after_fork_in_child, METH_NOARGS,
     "In a forked child that follows the fork: starts what fork() could not."},
    {"is_tracking", is_tracking, METH_NOARGS, "Whether a Tracker is active."},
    {"capture_path", capture_path, METH_NOARGS, "The capture file this process writes."},
    {NULL, NULL, 0, NULL},
};

int mr_bind_tracker_init(PyObject *module)
{
#ifdef MR_CHECKS
    const int checks = 1;
#else
    const int checks = 0;
#endif
    /* Whether this build asserts its invariants (check.h): tests read it. */
    if (PyModule_AddIntConstant(module, "_checks", checks) < 0)
        return -1;
    if (PyType_Ready(&SocketSinkType) < 0 ||
        PyModule_AddObjectRef(module, "SocketSink", (PyObject *)&SocketSinkType) < 0)
        return -1;
    return PyModule_AddFunctions(module, methods);
}
