"""numpy array work: creation, arithmetic with temporaries, reductions, copies.

Tens of thousands of allocations made inside numpy's C code (array data
buffers of 4-64 KB, above numpy's small-buffer cache, plus the array
objects), so with ``native_traces=True`` most stacks go through numpy's
extension modules. Needs numpy.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # as in big_buffers: steadier page faults

import numpy as np

from workloads import scaled

ITERATIONS = 20_000
# Element counts (float64) cycled through: 4-64 KB per array, below malloc's mmap threshold.
SIZES = (1_024, 4_096, 512, 8_192, 2_048, 768, 6_000, 1_536)


def step(i: int, n: int) -> float:
    a = np.arange(n, dtype=np.float64)
    b = np.full(n, 0.5 + (i % 7))
    c = a * b + a / (b + 1.0)  # temporaries for every operator
    d = np.sqrt(np.abs(c - a.mean()))
    e = np.concatenate((d[: n // 2], a[n // 2 :]))
    f = e.reshape(-1, 8).sum(axis=1) if n % 8 == 0 else e
    g = np.cumsum(c[::-1])
    h = np.where(g > g[n // 2], g, 0.0).astype(np.float32)
    return float(f[0] + h[-1] + np.dot(a[:64], b[:64]))


def main() -> None:
    total = 0.0
    sizes = SIZES
    for i in range(scaled(ITERATIONS)):
        total += step(i, sizes[i % len(sizes)])
    assert total == total  # not NaN
