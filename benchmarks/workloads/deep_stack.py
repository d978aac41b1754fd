"""Deep, varied stacks: every iteration recurses 37 Python frames deep through
three functions, in an order that changes from one iteration to the next
(100,000 distinct paths at full scale), and allocates at the bottom through
the system malloc (bytearrays above pymalloc's 512-byte limit), freeing most
of it at once and keeping a ring of recent blocks alive.

Stresses what a tracker does per allocation with a deep stack it has not seen
before: walking it, and adding its new frames to the stack trie.
"""

from __future__ import annotations

from workloads import scaled

ITERATIONS = 100_000
DEPTH = 37
# Levels whose callee depends on the iteration number (its base-3 digits):
# 3**11 > 100,000, so every iteration at full scale takes a path of its own.
VARYING = 11
RING = 256


def _which(i: int, depth: int) -> int:
    if depth <= VARYING:
        return (i // 3 ** (depth - 1)) % 3
    return depth % 3


def _leaf(i: int, ring: list[object]) -> None:
    block = bytearray(600 + (i % 7) * 100)  # malloc, not pymalloc
    scratch = bytearray(1024)  # freed right away
    del scratch
    ring[i % RING] = block


def _f(i: int, depth: int, ring: list[object]) -> None:
    if depth == DEPTH:
        _leaf(i, ring)
    else:
        _FUNCS[_which(i, depth)](i, depth + 1, ring)


def _g(i: int, depth: int, ring: list[object]) -> None:
    if depth == DEPTH:
        _leaf(i, ring)
    else:
        _FUNCS[_which(i, depth)](i, depth + 1, ring)


def _h(i: int, depth: int, ring: list[object]) -> None:
    if depth == DEPTH:
        _leaf(i, ring)
    else:
        _FUNCS[_which(i, depth)](i, depth + 1, ring)


_FUNCS = (_f, _g, _h)


def main() -> None:
    ring: list[object] = [None] * RING
    for i in range(scaled(ITERATIONS)):
        _f(i, 1, ring)
    ring.clear()
