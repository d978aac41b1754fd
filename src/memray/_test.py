"""Allocators called from C, for tests: memray 1.x's ``memray._test``.

memray's own tests and the test suites of memray plugins allocate through
these to get records of an exact size and allocator at a known line. Each call
goes to the real libc (or CPython) allocator from a small C extension, so the
tracker intercepts it like any extension's allocation.

* ``MemoryAllocator()``: ``malloc``, ``calloc``, ``realloc``,
  ``posix_memalign``, ``aligned_alloc``, ``memalign``, ``valloc``,
  ``pvalloc`` (each takes a size and returns whether it got a block), ``free()``,
  ``free_sized(size)`` and ``free_aligned_sized(size)`` (False where libc lacks
  them), and ``run_in_pthread(callable)``. It holds the last block it got.
* ``PymallocMemoryAllocator(domain)``: ``malloc``, ``calloc``, ``realloc``,
  ``free`` in one of the ``PymallocDomain`` domains.
* ``MmapAllocator(size, address=0)``: ``.address`` and
  ``.munmap(length, offset=0)``.
* ``set_thread_name(name)``: ``prctl(PR_SET_NAME)`` on the calling thread.
"""

from __future__ import annotations

import enum

from ._test_helpers import MemoryAllocator, MmapAllocator, set_thread_name
from ._test_helpers import PymallocMemoryAllocator as _PymallocMemoryAllocator

__all__ = [
    "MemoryAllocator",
    "MmapAllocator",
    "PymallocDomain",
    "PymallocMemoryAllocator",
    "set_thread_name",
]


class PymallocDomain(enum.IntEnum):
    PYMALLOC_RAW = 1
    PYMALLOC_MEM = 2
    PYMALLOC_OBJECT = 3


class PymallocMemoryAllocator(_PymallocMemoryAllocator):
    """PymallocMemoryAllocator(domain): one of CPython's allocator domains,
    called from C; holds the last block it got."""

    def __init__(self, domain: PymallocDomain) -> None:
        super().__init__(int(PymallocDomain(domain)))
