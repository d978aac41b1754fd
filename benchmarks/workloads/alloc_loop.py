"""Millions of small allocations and frees through ordinary Python objects.

Mixes objects small enough for pymalloc (only seen with
``trace_python_allocators=True``) with objects above pymalloc's 512-byte limit,
which go to the system malloc and are seen in every mode. A ring of recent
objects is kept alive so frees do not always follow their allocation directly.
"""

from __future__ import annotations

from workloads import scaled

ITERATIONS = 600_000
# Byte sizes cycled through; about half are above pymalloc's 512-byte limit.
SIZES = (24, 64, 200, 520, 700, 1500, 4000, 9000, 40, 3000, 600)
RING = 64


def main() -> None:
    ring: list[object] = [None] * RING
    sizes = SIZES
    n_sizes = len(sizes)
    for i in range(scaled(ITERATIONS)):
        size = sizes[i % n_sizes]
        blob = b"x" * size  # bytes object of `size` bytes
        items = [i] * (size // 8)  # list with an item array of `size` bytes
        table = {j: blob for j in range(i % 24)}  # small dict, resized as it grows
        text = str(i) * (size // 16 + 1)
        ring[i % RING] = (blob, items) if i & 1 else (table, text)
    ring.clear()
