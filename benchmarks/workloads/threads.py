"""Sixteen threads allocating concurrently.

All threads start together (barrier) and each runs a small/large allocation
loop, so the tracker's per-thread state and any shared locks are exercised.
"""

from __future__ import annotations

import threading

from workloads import scaled

THREADS = 16
ITERATIONS = 100_000
SIZES = (32, 128, 600, 2000, 5000, 64, 1024)


def _worker(barrier: threading.Barrier, seed: int, n: int) -> None:
    barrier.wait()
    keep: list[object] = [None] * 16
    sizes = SIZES
    n_sizes = len(sizes)
    for i in range(n):
        size = sizes[(i + seed) % n_sizes]
        blob = bytearray(size)
        items = [seed] * (size // 8)
        keep[i % 16] = (blob, items, {i: size})


def main() -> None:
    n = scaled(ITERATIONS)
    barrier = threading.Barrier(THREADS)
    threads = [
        threading.Thread(target=_worker, args=(barrier, seed, n), name=f"worker-{seed}")
        for seed in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
