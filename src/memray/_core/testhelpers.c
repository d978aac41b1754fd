/* testhelpers.c: memray._test_helpers, the C half of memray._test (the
 * module memray 1.x ships for its own tests and for plugins' test suites).
 * Each method calls one libc or CPython allocator from this small extension,
 * through its own PLT like any extension, so the tracker intercepts it. It
 * is a separate shared object from _memray: the hooks never patch _memray
 * itself. No tracker code here. */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>

/* C23 sized frees: glibc 2.41 and newer. Weak, so the module loads on older
 * libcs and the methods say False there. */
extern void free_sized(void *ptr, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *ptr, size_t alignment, size_t size) __attribute__((weak));

/* Alignment for the aligned allocators: a cache line, valid for all of
 * posix_memalign (a power of two times sizeof(void *)), aligned_alloc and
 * memalign. */
#define ALIGNMENT 64

/* ---- MemoryAllocator: one block at a time, from libc ---------------------- */

typedef struct {
    PyObject_HEAD void *ptr; /* the block the last allocation returned */
} allocator_object_t;

static int parse_size(PyObject *arg, size_t *size)
{
    *size = PyLong_AsSize_t(arg);
    return (*size == (size_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* Each allocating method: the block replaces the one held (which the caller
 * frees first if it wants it freed); True when the allocator returned one. */
#define ALLOC_METHOD(name, expr)                                                                   \
    static PyObject *alloc_##name(allocator_object_t *self, PyObject *arg)                         \
    {                                                                                              \
        size_t size;                                                                               \
        if (parse_size(arg, &size) < 0)                                                            \
            return NULL;                                                                           \
        void *p = NULL;                                                                            \
        Py_BEGIN_ALLOW_THREADS p = (expr);                                                         \
        Py_END_ALLOW_THREADS if (p != NULL) self->ptr = p;                                         \
        return PyBool_FromLong(p != NULL);                                                         \
    }

ALLOC_METHOD(malloc, malloc(size))
ALLOC_METHOD(calloc, calloc(1, size))
ALLOC_METHOD(aligned_alloc, aligned_alloc(ALIGNMENT, size))
ALLOC_METHOD(memalign, memalign(ALIGNMENT, size))
ALLOC_METHOD(valloc, valloc(size))
ALLOC_METHOD(pvalloc, pvalloc(size))

static PyObject *alloc_posix_memalign(allocator_object_t *self, PyObject *arg)
{
    size_t size;
    if (parse_size(arg, &size) < 0)
        return NULL;
    void *p = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = posix_memalign(&p, ALIGNMENT, size);
    Py_END_ALLOW_THREADS if (rc == 0) self->ptr = p;
    return PyBool_FromLong(rc == 0);
}

static PyObject *alloc_realloc(allocator_object_t *self, PyObject *arg)
{
    size_t size;
    if (parse_size(arg, &size) < 0)
        return NULL;
    void *p = realloc(self->ptr, size);
    if (p != NULL)
        self->ptr = p;
    return PyBool_FromLong(p != NULL);
}

static PyObject *alloc_free(allocator_object_t *self, PyObject *unused)
{
    (void)unused;
    free(self->ptr);
    self->ptr = NULL;
    Py_RETURN_NONE;
}

static PyObject *alloc_free_sized(allocator_object_t *self, PyObject *arg)
{
    size_t size;
    if (parse_size(arg, &size) < 0)
        return NULL;
    if (free_sized == NULL)
        Py_RETURN_FALSE;
    free_sized(self->ptr, size);
    self->ptr = NULL;
    Py_RETURN_TRUE;
}

static PyObject *alloc_free_aligned_sized(allocator_object_t *self, PyObject *arg)
{
    size_t size;
    if (parse_size(arg, &size) < 0)
        return NULL;
    if (free_aligned_sized == NULL)
        Py_RETURN_FALSE;
    free_aligned_sized(self->ptr, ALIGNMENT, size);
    self->ptr = NULL;
    Py_RETURN_TRUE;
}

/* run_in_pthread: the callable runs on a new native thread (attached to the
 * interpreter for the call), which the caller joins without the GIL. */
typedef struct {
    PyObject *callable;
    PyObject *exc[3]; /* what the call raised (PyErr_Fetch), re-raised by the caller */
} pthread_call_t;

static void *pthread_body(void *arg)
{
    pthread_call_t *call = arg;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *result = PyObject_CallNoArgs(call->callable);
    if (result == NULL)
        PyErr_Fetch(&call->exc[0], &call->exc[1], &call->exc[2]);
    Py_XDECREF(result);
    PyGILState_Release(gil);
    return NULL;
}

static PyObject *alloc_run_in_pthread(allocator_object_t *self, PyObject *callable)
{
    (void)self;
    if (!PyCallable_Check(callable)) {
        PyErr_SetString(PyExc_TypeError, "run_in_pthread() needs a callable");
        return NULL;
    }
    pthread_call_t call = {callable, {NULL, NULL, NULL}};
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, pthread_body, &call);
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_BEGIN_ALLOW_THREADS pthread_join(thread, NULL);
    Py_END_ALLOW_THREADS if (call.exc[0] != NULL)
    {
        PyErr_Restore(call.exc[0], call.exc[1], call.exc[2]);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef allocator_methods[] = {
    {"malloc", (PyCFunction)alloc_malloc, METH_O, "malloc(size) -> bool"},
    {"calloc", (PyCFunction)alloc_calloc, METH_O, "calloc(size): calloc(1, size) -> bool"},
    {"realloc", (PyCFunction)alloc_realloc, METH_O, "realloc(size) of the held block -> bool"},
    {"posix_memalign", (PyCFunction)alloc_posix_memalign, METH_O,
     "posix_memalign(size), 64-byte aligned -> bool"},
    {"aligned_alloc", (PyCFunction)alloc_aligned_alloc, METH_O,
     "aligned_alloc(size), 64-byte aligned -> bool"},
    {"memalign", (PyCFunction)alloc_memalign, METH_O, "memalign(size), 64-byte aligned -> bool"},
    {"valloc", (PyCFunction)alloc_valloc, METH_O, "valloc(size) -> bool"},
    {"pvalloc", (PyCFunction)alloc_pvalloc, METH_O, "pvalloc(size) -> bool"},
    {"free", (PyCFunction)alloc_free, METH_NOARGS, "free() the held block"},
    {"free_sized", (PyCFunction)alloc_free_sized, METH_O,
     "free_sized(size) the held block; False where libc has no free_sized"},
    {"free_aligned_sized", (PyCFunction)alloc_free_aligned_sized, METH_O,
     "free_aligned_sized(size) the held block; False where libc has no free_aligned_sized"},
    {"run_in_pthread", (PyCFunction)alloc_run_in_pthread, METH_O,
     "run_in_pthread(callable): calls it on a new native thread and waits for it"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AllocatorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._test_helpers.MemoryAllocator",
    .tp_doc = "MemoryAllocator(): calls libc's allocators from C, holding the last block.",
    .tp_basicsize = sizeof(allocator_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_methods = allocator_methods,
};

/* ---- PymallocMemoryAllocator: one block at a time, from a domain ------------ */

enum { DOMAIN_RAW = 1, DOMAIN_MEM = 2, DOMAIN_OBJECT = 3 }; /* memray._test.PymallocDomain */

typedef struct {
    PyObject_HEAD int domain;
    void *ptr;
} pymalloc_object_t;

static int pymalloc_init(pymalloc_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"domain", NULL};
    int domain;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i", kwlist, &domain))
        return -1;
    if (domain < DOMAIN_RAW || domain > DOMAIN_OBJECT) {
        PyErr_Format(PyExc_ValueError, "unknown pymalloc domain %d", domain);
        return -1;
    }
    self->domain = domain;
    return 0;
}

static PyObject *pm_malloc(pymalloc_object_t *self, PyObject *arg)
{
    size_t size;
    if (parse_size(arg, &size) < 0)
        return NULL;
    void *p = self->domain == DOMAIN_RAW   ? PyMem_RawMalloc(size)
              : self->domain == DOMAIN_MEM ? PyMem_Malloc(size)
                                           : PyObject_Malloc(size);
    if (p != NULL)
        self->ptr = p;
    return PyBool_FromLong(p != NULL);
}

static PyObject *pm_calloc(pymalloc_object_t *self, PyObject *arg)
{
    size_t size;
    if (parse_size(arg, &size) < 0)
        return NULL;
    void *p = self->domain == DOMAIN_RAW   ? PyMem_RawCalloc(1, size)
              : self->domain == DOMAIN_MEM ? PyMem_Calloc(1, size)
                                           : PyObject_Calloc(1, size);
    if (p != NULL)
        self->ptr = p;
    return PyBool_FromLong(p != NULL);
}

static PyObject *pm_realloc(pymalloc_object_t *self, PyObject *arg)
{
    size_t size;
    if (parse_size(arg, &size) < 0)
        return NULL;
    void *p = self->domain == DOMAIN_RAW   ? PyMem_RawRealloc(self->ptr, size)
              : self->domain == DOMAIN_MEM ? PyMem_Realloc(self->ptr, size)
                                           : PyObject_Realloc(self->ptr, size);
    if (p != NULL)
        self->ptr = p;
    return PyBool_FromLong(p != NULL);
}

static PyObject *pm_free(pymalloc_object_t *self, PyObject *unused)
{
    (void)unused;
    if (self->domain == DOMAIN_RAW)
        PyMem_RawFree(self->ptr);
    else if (self->domain == DOMAIN_MEM)
        PyMem_Free(self->ptr);
    else
        PyObject_Free(self->ptr);
    self->ptr = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef pymalloc_methods[] = {
    {"malloc", (PyCFunction)pm_malloc, METH_O, "malloc(size) in the domain -> bool"},
    {"calloc", (PyCFunction)pm_calloc, METH_O, "calloc(size): calloc(1, size) -> bool"},
    {"realloc", (PyCFunction)pm_realloc, METH_O, "realloc(size) of the held block -> bool"},
    {"free", (PyCFunction)pm_free, METH_NOARGS, "free() the held block"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PymallocType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._test_helpers.PymallocMemoryAllocator",
    .tp_doc = "PymallocMemoryAllocator(domain): calls one of CPython's allocator domains "
              "(1 raw, 2 mem, 3 object) from C, holding the last block.",
    .tp_basicsize = sizeof(pymalloc_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pymalloc_init,
    .tp_methods = pymalloc_methods,
};

/* ---- MmapAllocator -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD uintptr_t address; /* where the mapping starts */
    size_t size;
} mmap_object_t;

static int mmap_init(mmap_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "address", NULL};
    Py_ssize_t size;
    unsigned long long address = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|K", kwlist, &size, &address))
        return -1;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "size must be positive");
        return -1;
    }
    void *p = mmap((void *)(uintptr_t)address, (size_t)size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->address = (uintptr_t)p;
    self->size = (size_t)size;
    return 0;
}

static PyObject *mmap_munmap(mmap_object_t *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"length", "offset", NULL};
    Py_ssize_t length, offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|n", kwlist, &length, &offset))
        return NULL;
    if (munmap((void *)(self->address + (uintptr_t)offset), (size_t)length) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *mmap_address(mmap_object_t *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->address);
}

static PyMethodDef mmap_methods[] = {
    {"munmap", (PyCFunction)(void (*)(void))mmap_munmap, METH_VARARGS | METH_KEYWORDS,
     "munmap(length, offset=0): unmaps length bytes from address + offset"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mmap_getset[] = {
    {"address", (getter)mmap_address, NULL, "start of the mapping", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MmapType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memray._test_helpers.MmapAllocator",
    .tp_doc = "MmapAllocator(size, address=0): an anonymous private mapping made with mmap "
              "(address is a hint); munmap() unmaps all or part of it.",
    .tp_basicsize = sizeof(mmap_object_t),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)mmap_init,
    .tp_methods = mmap_methods,
    .tp_getset = mmap_getset,
};

/* ---- module ---------------------------------------------------------------------- */

static PyObject *set_thread_name(PyObject *module, PyObject *arg)
{
    (void)module;
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    return PyLong_FromLong(prctl(PR_SET_NAME, name, 0, 0, 0));
}

static PyMethodDef module_methods[] = {
    {"set_thread_name", set_thread_name, METH_O,
     "set_thread_name(name): names the calling thread with prctl(PR_SET_NAME); returns its "
     "result"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef test_helpers_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memray._test_helpers",
    .m_doc = "Allocators called from C, for memray._test.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__test_helpers(void)
{
    PyObject *m = PyModule_Create(&test_helpers_module);
    if (m == NULL)
        return NULL;
    PyTypeObject *types[] = {&AllocatorType, &PymallocType, &MmapType};
    const char *names[] = {"MemoryAllocator", "PymallocMemoryAllocator", "MmapAllocator"};
    for (int i = 0; i < 3; i++) {
        if (PyType_Ready(types[i]) < 0 ||
            PyModule_AddObjectRef(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
