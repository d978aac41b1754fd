/* module.c: the memray._memray extension module. It only wires the binding
 * files together; the types and functions live in bind_*.c. */
#define PY_SSIZE_T_CLEAN
#include "bind.h"

static struct PyModuleDef memray_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memray._memray",
    .m_doc = "C core of memray: the tracking engine and the capture reader.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__memray(void)
{
    PyObject *m = PyModule_Create(&memray_module);
    if (m == NULL)
        return NULL;
    if (mr_bind_tracker_init(m) < 0 || mr_bind_reader_init(m) < 0 || mr_bind_live_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
