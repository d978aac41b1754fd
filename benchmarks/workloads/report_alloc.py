"""Input for the report benchmarks: over 10 million malloc-level allocations.

Every allocation is above pymalloc's 512-byte limit, so each one reaches the
system malloc and is recorded in every tracker mode. The allocations are made
at the end of a few hundred distinct call paths: four routing functions call
each other ``DEPTH`` levels deep (the next one picked from the iteration
number) and end in one of three leaf functions, 4**DEPTH * 3 = 768 paths,
each with several allocating lines, so that the reports have real trees.

A ring of recent objects is kept alive (freed later, out of order), and one
object in ``KEEP_EVERY`` is kept until the end, so the heap grows slowly and
its peak holds objects from every path.
"""

from __future__ import annotations

from workloads import scaled

# Leaf calls; each makes ALLOCS_PER_LEAF allocations that go through malloc.
LEAVES = 2_600_000
ALLOCS_PER_LEAF = 4
DEPTH = 4
RING = 4096
KEEP_EVERY = 1000
SIZES = (600, 1100, 2500, 700, 4000, 900, 1600)

_ring: list[object] = []
_kept: list[object] = []


def leaf_bytes(i: int) -> None:
    size = SIZES[i % 7]
    head = b"h" * size
    body = bytes(size + 64)
    tail = b"t" * (size + 128)
    extra = bytearray(size)
    _store(i, (head, body, tail, extra))


def leaf_lists(i: int) -> None:
    n = SIZES[i % 7] // 8
    first = [i] * n
    second = [None] * (n + 8)
    third = list(range(n + 16)) if i & 64 else [0] * (n + 16)
    fourth = [i, n] * (n // 2 + 4)
    _store(i, (first, second, third, fourth))


def leaf_text(i: int) -> None:
    size = SIZES[i % 7]
    word = "w" * size
    line = "-" * (size + 40)
    pad = bytearray(size + 80)
    block = b"b" * (size + 200)
    _store(i, (word, line, pad, block))


LEAVES_BY_INDEX = (leaf_bytes, leaf_lists, leaf_text)


def _store(i: int, value: object) -> None:
    _ring[(i * 7919) % RING] = value  # frees an older object, not the last one
    if i % KEEP_EVERY == 0:
        _kept.append(value)


def route_a(i: int, path: int, depth: int) -> None:
    if depth == 0:
        LEAVES_BY_INDEX[i % 3](i)
    elif path & 3 == 0:
        route_b(i, path >> 2, depth - 1)
    elif path & 3 == 1:
        route_c(i, path >> 2, depth - 1)
    elif path & 3 == 2:
        route_d(i, path >> 2, depth - 1)
    else:
        route_a(i, path >> 2, depth - 1)


def route_b(i: int, path: int, depth: int) -> None:
    if depth == 0:
        LEAVES_BY_INDEX[i % 3](i)
    elif path & 3 == 0:
        route_c(i, path >> 2, depth - 1)
    elif path & 3 == 1:
        route_d(i, path >> 2, depth - 1)
    elif path & 3 == 2:
        route_a(i, path >> 2, depth - 1)
    else:
        route_b(i, path >> 2, depth - 1)


def route_c(i: int, path: int, depth: int) -> None:
    if depth == 0:
        LEAVES_BY_INDEX[i % 3](i)
    elif path & 3 == 0:
        route_d(i, path >> 2, depth - 1)
    elif path & 3 == 1:
        route_a(i, path >> 2, depth - 1)
    elif path & 3 == 2:
        route_b(i, path >> 2, depth - 1)
    else:
        route_c(i, path >> 2, depth - 1)


def route_d(i: int, path: int, depth: int) -> None:
    if depth == 0:
        LEAVES_BY_INDEX[i % 3](i)
    elif path & 3 == 0:
        route_a(i, path >> 2, depth - 1)
    elif path & 3 == 1:
        route_b(i, path >> 2, depth - 1)
    elif path & 3 == 2:
        route_c(i, path >> 2, depth - 1)
    else:
        route_d(i, path >> 2, depth - 1)


def main() -> None:
    _ring[:] = [None] * RING
    _kept.clear()
    paths = 4**DEPTH
    for i in range(scaled(LEAVES)):
        # i // 3 so that every leaf is reached through every path.
        route_a(i, (i // 3) % paths, DEPTH)
    _ring.clear()
    _kept.clear()
