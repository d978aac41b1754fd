"""Large buffers: numpy arrays and bytearrays of 1-100 MB, created and dropped.

Few allocations, each one large (these go to mmap in the allocator), with the
pages written so that RSS really grows. Needs numpy.

numpy's transparent-huge-page hint is turned off: with it, the page-fault cost
(and so the run time) varies several-fold from run to run with how many huge
pages the kernel happens to have free.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # read when numpy is imported

import numpy as np

from workloads import scaled

MB = 1024 * 1024
SIZES_MB = (1, 4, 16, 64, 100, 8, 32, 2)
ROUNDS = 2
WARMUP_MB = 256


def setup() -> None:
    """Touch and free memory once (untimed) so page-fault cost is steadier.

    On a virtual machine the first touch of guest memory the host has not
    backed yet is slow and varies a lot; reusing freshly freed pages is not.
    Kept below the workload's own peak so it does not change the peak RSS.
    """
    warm = np.ones(WARMUP_MB * MB // 8, dtype=np.float64)
    del warm


def main() -> None:
    previous: object = None
    for _ in range(scaled(ROUNDS)):
        for size_mb in SIZES_MB:
            n = size_mb * MB
            array = np.ones(n // 8, dtype=np.float64)  # written: pages touched
            array *= 2.0
            buffer = bytearray(n)  # calloc'd: zero pages
            buffer[::4096] = b"\x01" * len(range(0, n, 4096))  # touch every page
            copy = bytes(buffer)  # a third buffer, copied
            previous = (array, copy)  # keeps at most two sets alive
            del buffer
    del previous
