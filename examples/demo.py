"""The bundled example: profile a small program and report where its memory went.

Run it with `make demo`, or `python examples/demo.py [capture.bin]`.
"""

from __future__ import annotations

import sys

import memray


def load_table(rows: int) -> list[bytes]:
    return [bytes(2048) for _ in range(rows)]


def build_index(table: list[bytes]) -> dict[int, bytes]:
    return {i: row for i, row in enumerate(table)}


def churn(n: int) -> int:
    total = 0
    for i in range(n):
        total += len(bytearray(4096 + i % 64))
    return total


def main() -> None:
    capture = sys.argv[1] if len(sys.argv) > 1 else "demo.bin"
    with memray.Tracker(destination=memray.FileDestination(capture, overwrite=True)):
        table = load_table(20_000)
        index = build_index(table)
        churn(50_000)
        del table
    with memray.FileReader(capture) as reader:
        meta = reader.metadata
        print(f"{capture}: {meta.total_allocations} allocations, peak {meta.peak_memory:,} bytes")
        print("Largest allocation sites at the peak:")
        top = sorted(reader.get_high_watermark_allocation_records(), key=lambda r: -r.size)[:5]
        for rec in top:
            stack = rec.stack_trace()
            where = f"{stack[0][0]} ({stack[0][1]}:{stack[0][2]})" if stack else "<native>"
            print(f"  {rec.size:>12,} B in {rec.n_allocations:>6} allocations  {where}")
    del index


if __name__ == "__main__":
    main()
