"""Reading very large captures: records per second and peak memory of the
reader API and the reports on a capture of N records (2x10^8 by default).

Usage: python benchmarks/big_capture.py [--records N] [--keep PATH] [--reuse PATH]

The capture is made by tracking a workload with memray.Tracker (nothing
synthetic): a loop that puts blocks of varied sizes into a ring of 100,000
slots from eight call sites at three stack depths, so every iteration frees
one block and allocates another (two records) and 100,000 blocks stay alive.
Each reading then runs in a child process of its own, timed from outside,
with the child's peak RSS from wait4; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

WORKLOAD = """
import sys
import memray

RING = 100_000
SIZES = (520, 600, 777, 1024, 1500, 2048, 3000, 4096, 700, 900, 1200)
ring = [None] * RING

def site_a(i):
    ring[i % RING] = bytearray(SIZES[i % 11])

def site_b(i):
    ring[(i * 7) % RING] = bytearray(SIZES[(i + 3) % 11])

def deeper(i):
    if i & 1:
        site_a(i)
    else:
        site_b(i)

def deepest(i):
    deeper(i)

SITES = (site_a, site_b, deeper, deepest)

iterations = int(sys.argv[2])
with memray.Tracker(sys.argv[1]):
    for i in range(iterations):
        SITES[i & 3](i)
"""

# name -> code run in the child (CAPTURE is the path)
READINGS = {
    "FileReader (scan: metadata, peak, leaks)": (
        "from memray import FileReader\n"
        "r = FileReader(CAPTURE)\n"
        "n = sum(1 for _ in r.get_high_watermark_allocation_records())\n"
    ),
    "get_allocation_records (every event)": (
        "from memray import FileReader\n"
        "r = FileReader(CAPTURE)\n"
        "n = sum(1 for _ in r.get_allocation_records())\n"
    ),
    "get_temporary_allocation_records": (
        "from memray import FileReader\n"
        "r = FileReader(CAPTURE)\n"
        "n = sum(1 for _ in r.get_temporary_allocation_records())\n"
    ),
    "compute_statistics": ("import memray\nmemray.compute_statistics(CAPTURE)\n"),
    "memray flamegraph": (
        "from memray.commands import main\n"
        "main(['flamegraph', '-f', '-o', CAPTURE + '.html', CAPTURE])\n"
    ),
    "memray summary": (
        "import io, contextlib\n"
        "from memray.commands import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['summary', CAPTURE])\n"
    ),
}


def timed_child(code: str) -> tuple[float, int]:
    """Runs code in a fresh interpreter: (wall seconds, peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"reading failed (exit {os.waitstatus_to_exitcode(status)}): {code}")
    return wall, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=float, default=2e8, help="records to make (about)")
    parser.add_argument("--keep", type=Path, help="write the capture here and keep it")
    parser.add_argument("--reuse", type=Path, help="read this capture instead of making one")
    parser.add_argument(
        "--only", help="comma list of readings to run (by the start of their name), default all"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memray-big-") as tmp:
        if args.reuse:
            capture = args.reuse
        else:
            capture = args.keep or Path(tmp) / "big.bin"
            script = Path(tmp) / "workload.py"
            script.write_text(textwrap.dedent(WORKLOAD))
            iterations = int(args.records) // 2
            start = time.perf_counter()
            subprocess.run([sys.executable, str(script), str(capture), str(iterations)], check=True)
            print(f"made {capture} in {time.perf_counter() - start:.1f} s", flush=True)
        from memray import FileReader

        with FileReader(capture) as reader:
            records = reader.metadata.total_allocations
        size = capture.stat().st_size
        print(f"{records:,} records, {size / 2**20:.1f} MiB on disk\n", flush=True)
        rows = [("reading", "seconds", "records/s", "peak RSS")]
        wanted = [w.strip() for w in args.only.split(",")] if args.only else None
        for name, body in READINGS.items():
            if wanted is not None and not any(name.startswith(w) for w in wanted):
                continue
            wall, rss = timed_child(f"CAPTURE = {str(capture)!r}\n" + body)
            rows.append(
                (name, f"{wall:.1f}", f"{records / wall / 1e6:.1f} M", f"{rss / 1024:.0f} MiB")
            )
            print(f"  {name}: {wall:.1f} s, {rss / 1024:.0f} MiB", file=sys.stderr, flush=True)
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for i, row in enumerate(rows):
            print(
                "  ".join(
                    c.ljust(w) if j == 0 else c.rjust(w)
                    for j, (c, w) in enumerate(zip(row, widths))
                )
            )
            if i == 0:
                print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
