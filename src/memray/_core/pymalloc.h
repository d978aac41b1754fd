/* pymalloc.h: recording the calls made through CPython's allocator domains
 * (PyMem_Raw*, PyMem_*, PyObject_*) as PYMALLOC_* events, by wrapping each
 * domain's allocator while tracking. It knows nothing of stacks: the tracker
 * records each call as it records a malloc. */
#ifndef MR_PYMALLOC_H
#define MR_PYMALLOC_H

/* GIL held. Wraps (on=1) or unwraps (on=0) the PYMEM_DOMAIN_RAW,
 * PYMEM_DOMAIN_MEM and PYMEM_DOMAIN_OBJ allocators. Idempotent. */
void mr_pymalloc_trace(int on);

#endif
