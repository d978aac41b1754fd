/* bind.h: the binding files' entry points, called by module.c when the
 * extension is imported. Each adds its types and functions to the module and
 * returns 0, or -1 with a Python exception set. */
#ifndef MR_BIND_H
#define MR_BIND_H

#include <Python.h>

int mr_bind_tracker_init(PyObject *module);
int mr_bind_reader_init(PyObject *module);
int mr_bind_live_init(PyObject *module);

#endif
