"""Public enumerations shared by the tracker and the readers."""

from enum import IntEnum


class AllocatorType(IntEnum):
    """The allocation function that produced a record."""

    PYMALLOC_FREE = 1
    PYMALLOC_MALLOC = 2
    PYMALLOC_CALLOC = 3
    PYMALLOC_REALLOC = 4
    FREE = 5
    MALLOC = 6
    REALLOC = 7
    CALLOC = 8
    POSIX_MEMALIGN = 9
    ALIGNED_ALLOC = 10
    MEMALIGN = 11
    VALLOC = 12
    PVALLOC = 13
    MMAP = 14
    MUNMAP = 15


class FileFormat(IntEnum):
    """The capture file formats a Tracker can write."""

    ALL_ALLOCATIONS = 0  # values as in memray 1.x
    AGGREGATED_ALLOCATIONS = 1


class PythonAllocatorType(IntEnum):
    PYMALLOC = 0
    PYMALLOC_DEBUG = 1
    MALLOC = 2
    OTHER = 3
