"""Benchmark workloads: each module defines ``main() -> None``.

Workloads must be deterministic and print nothing on stdout (the driver prints
its JSON result there). Their size is scaled by the ``MEMRAY_BENCH_SCALE``
environment variable (default 1.0; ``run.py --quick`` sets it lower).
"""

from __future__ import annotations

import os

SCALE_ENV = "MEMRAY_BENCH_SCALE"


def scale() -> float:
    """The size factor the workloads multiply their iteration counts by."""
    try:
        value = float(os.environ.get(SCALE_ENV, "1"))
    except ValueError:
        value = 1.0
    return value if value > 0 else 1.0


def scaled(n: int, minimum: int = 1) -> int:
    """``n`` multiplied by :func:`scale`, at least ``minimum``."""
    return max(minimum, int(n * scale()))
