"""Call-heavy, allocation-light: naive recursive Fibonacci.

Stresses the per-call cost of keeping track of the Python stack while
allocating almost nothing (results above 256 are small int objects only).
"""

from __future__ import annotations

from workloads import scaled

DEPTH = 27
ROUNDS = 36


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main() -> None:
    total = 0
    for _ in range(scaled(ROUNDS)):
        total += fib(DEPTH)
    assert total > 0
