#include "bind.h"
int mr_bind_tracker_init(PyObject *module) { (void)module; return 0; }
