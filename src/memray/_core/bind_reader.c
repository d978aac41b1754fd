#include "bind.h"
int mr_bind_reader_init(PyObject *module) { (void)module; return 0; }
