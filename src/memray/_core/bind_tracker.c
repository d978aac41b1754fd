/* bind_tracker.c: Python functions that start and stop the tracking engine
 * (tracker.c) and name threads. Parses arguments, calls the component,
 * converts errno results to exceptions; nothing else. */
#define PY_SSIZE_T_CLEAN
#include <errno.h>
#include <string.h>

#include "bind.h"
#include "pystack.h"
#include "tracker.h"

static PyObject *start(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"path",           "overwrite",   "buffered",      "compress",
                             "aggregated",     "native",      "trace_pymalloc", "follow_fork",
                             "interval_ms",    "command_line", "python_allocator",
                             "boundary_frame", NULL};
    PyObject *path_arg, *path_obj, *boundary = Py_None;
    int overwrite = 0, buffered = 0, compress = 1, aggregated = 0, native = 0, pymalloc = 0,
        follow_fork = 0, python_allocator = 0;
    unsigned int interval_ms = 10;
    const char *command_line = "";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$pppppppIsiO", kwlist, &path_arg,
                                     &overwrite, &buffered,
                                     &compress, &aggregated, &native, &pymalloc, &follow_fork,
                                     &interval_ms, &command_line, &python_allocator, &boundary))
        return NULL;
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
        .interval_ms = interval_ms,
        .command_line = command_line,
        .python_allocator = python_allocator,
    };
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

/* Returns None, or the strerror text of what stopped recording early. */
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
        return PyUnicode_FromString(strerror(-rc));
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
    {"is_tracking", is_tracking, METH_NOARGS, "Whether a Tracker is active."},
    {"capture_path", capture_path, METH_NOARGS, "The capture file this process writes."},
    {NULL, NULL, 0, NULL},
};

int mr_bind_tracker_init(PyObject *module)
{
    return PyModule_AddFunctions(module, methods);
}
