"""Tracker(sample_every=N) and memray run --sample-every: each allocated byte
is sampled with probability 1/N, readers weigh what was recorded, and every
size they give is an unbiased estimate. The same deterministic workload runs
exactly and sampled (each in a subprocess with a timeout); estimates must
fall within six standard deviations of the exact numbers, computed from the
known allocation sizes (a failure by chance: about 1 in 10^9 per check)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TIMEOUT, line_of

import memray
from memray import AllocatorType, FileFormat, FileReader

EVERY = 64 * 1024

# bytearray(n) asks malloc for n + 1 bytes; the lists are made before
# tracking starts so that their growth adds nothing at these lines.
WORKLOAD = """
import sys
import memray
from memray import FileFormat

every = int(sys.argv[2])
fmt = FileFormat[sys.argv[3]]
big, huge, leak = [None] * 4000, [None] * 100, [None] * 5000
small = [None] * 50000
with memray.Tracker(sys.argv[1], sample_every=every, file_format=fmt):
    for i in range(4000):
        big[i] = bytearray(16383)  # BIG
    for i in range(100):
        huge[i] = bytearray(262143)  # HUGE
    for i in range(50000):
        small[i] = bytearray(600)  # SMALL
    for i in range(50000):
        small[i] = None
    for i in range(5000):
        leak[i] = bytearray(2999)  # LEAK
"""

# (marker, allocations, bytes each)
AT_PEAK = [("# BIG", 4000, 16384), ("# HUGE", 100, 262144), ("# SMALL", 50000, 601)]
LEAKED = [("# BIG", 4000, 16384), ("# HUGE", 100, 262144), ("# LEAK", 5000, 3000)]


def run_workload(tmp_path: Path, name: str, every: int, fmt: str = "ALL_ALLOCATIONS") -> Path:
    script = tmp_path / "workload.py"
    script.write_text(textwrap.dedent(WORKLOAD))
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(every), fmt],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def by_line(records, script: Path) -> dict[int, tuple[int, int]]:
    """(bytes, allocations) by malloc per line of the workload script (the
    interpreter's own arenas, by mmap, are never sampled)."""
    out: dict[int, tuple[int, int]] = {}
    for r in records:
        if r.allocator != AllocatorType.MALLOC:
            continue
        stack = r.stack_trace()
        if stack and stack[0][1] == str(script):
            size, n = out.get(stack[0][2], (0, 0))
            out[stack[0][2]] = (size + r.size, n + r.n_allocations)
    return out


def sigma(n: int, size: int, every: int) -> float:
    """Standard deviation of the estimate of n allocations of size bytes."""
    p = -math.expm1(-size / every)
    return math.sqrt(n * size * size * (1 - p) / p)


def check_estimates(exact, sampled, expected, every: int) -> None:
    code = textwrap.dedent(WORKLOAD)
    for marker, n, size in expected:
        line = line_of(code, marker)
        assert exact[line] == (n * size, n), marker
        estimate = sampled.get(line, (0, 0))[0]
        bound = 6 * sigma(n, size, every) + n  # + rounding: half a byte per record
        assert abs(estimate - n * size) <= bound, (marker, estimate, n * size, bound)


@pytest.mark.parametrize("fmt", ["ALL_ALLOCATIONS", "AGGREGATED_ALLOCATIONS"])
def test_estimates_agree_with_an_exact_capture(tmp_path: Path, fmt: str) -> None:
    exact_path = run_workload(tmp_path, "exact.bin", 0, fmt)
    sampled_path = run_workload(tmp_path, "sampled.bin", EVERY, fmt)
    script = tmp_path / "workload.py"
    with FileReader(exact_path) as exact, FileReader(sampled_path) as sampled:
        assert exact.metadata.sample_every == 0
        assert sampled.metadata.sample_every == EVERY
        assert sampled.metadata.file_format == FileFormat[fmt]
        check_estimates(
            by_line(exact.get_high_watermark_allocation_records(), script),
            by_line(sampled.get_high_watermark_allocation_records(), script),
            AT_PEAK,
            EVERY,
        )
        check_estimates(
            by_line(exact.get_leaked_allocation_records(), script),
            by_line(sampled.get_leaked_allocation_records(), script),
            LEAKED,
            EVERY,
        )
        # The whole heap's peak: the same, within the three locations'
        # deviations and what the interpreter itself holds.
        spread = math.sqrt(sum(sigma(n, s, EVERY) ** 2 for _, n, s in AT_PEAK))
        assert abs(sampled.metadata.peak_memory - exact.metadata.peak_memory) <= (
            6 * spread + (1 << 20)
        )
        if fmt == "ALL_ALLOCATIONS":
            # A sample is far smaller: a few percent of the records.
            assert sampled.metadata.total_allocations * 10 < exact.metadata.total_allocations


def test_only_sampled_blocks_are_freed_and_statistics_estimate(tmp_path: Path) -> None:
    exact_path = run_workload(tmp_path, "exact.bin", 0)
    sampled_path = run_workload(tmp_path, "sampled.bin", EVERY)
    script = tmp_path / "workload.py"
    big_line = line_of(textwrap.dedent(WORKLOAD), "# BIG")
    with FileReader(sampled_path) as reader:
        allocated: set[int] = set()
        frees = big_events = 0
        for r in reader.get_allocation_records():
            if r.allocator in (AllocatorType.FREE, AllocatorType.PYMALLOC_FREE):
                assert r.address in allocated, hex(r.address)
                allocated.discard(r.address)
                frees += 1
            elif r.allocator != AllocatorType.MUNMAP:
                allocated.add(r.address)
                # Events keep the size that was allocated; sums weigh them.
                stack = r.stack_trace()
                if (
                    r.allocator == AllocatorType.MALLOC
                    and stack
                    and stack[0][2] == big_line
                    and stack[0][1] == str(script)
                ):
                    assert r.size == 16384
                    big_events += 1
        # The 50,000 blocks at SMALL were freed: those sampled show, ~460.
        assert 0 < frees < 5000
        # 4000 blocks of 16 KiB, each sampled with probability 0.22: ~885.
        assert 600 < big_events < 1200
    exact = memray.compute_statistics(exact_path)
    sampled = memray.compute_statistics(sampled_path)
    assert sampled.metadata.sample_every == EVERY
    spread = math.sqrt(
        sum(sigma(n, s, EVERY) ** 2 for _, n, s in AT_PEAK + [("# LEAK", 5000, 3000)])
    )
    assert abs(sampled.total_memory_allocated - exact.total_memory_allocated) <= (
        6 * spread + (1 << 20)
    )


def memray_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_run_sample_every_and_reports_say_estimates(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("keep = [bytearray(5000) for _ in range(3000)]\n")
    proc = memray_cli(
        "run", "-q", "--sample-every", "64KiB", "-o", "s.bin", "prog.py", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    with FileReader(tmp_path / "s.bin") as reader:
        assert reader.metadata.sample_every == 65536
    note = "estimated from allocations sampled every 65,536 bytes"
    summary = memray_cli("summary", "s.bin", cwd=tmp_path)
    assert summary.returncode == 0 and note in summary.stdout.splitlines()[0]
    tree = memray_cli("tree", "s.bin", cwd=tmp_path)
    assert tree.returncode == 0 and note in tree.stdout
    stats = memray_cli("stats", "s.bin", cwd=tmp_path)
    assert stats.returncode == 0
    assert stats.stdout.splitlines()[0] == (
        "Sampled every 65,536 bytes: the sizes below are estimates"
    )
    for reporter in ("flamegraph", "table"):
        proc = memray_cli(reporter, "-o", f"{reporter}.html", "s.bin", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        page = (tmp_path / f"{reporter}.html").read_text()
        assert "Estimated sizes." in page and "every 64.00 KiB" in page
    # An exact capture says nothing of the kind.
    proc = memray_cli("run", "-q", "-o", "e.bin", "prog.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "estimated" not in memray_cli("summary", "e.bin", cwd=tmp_path).stdout
    proc = memray_cli("flamegraph", "-o", "e.html", "e.bin", cwd=tmp_path)
    assert "Estimated sizes." not in (tmp_path / "e.html").read_text()
    # Sampled and exact captures do not merge.
    proc = memray_cli("merge", "-o", "m.bin", "s.bin", "e.bin", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "memray: error: s.bin and e.bin were sampled differently (every 65536 and 0 bytes; "
        "0: not sampled): merge captures sampled alike"
    )


def test_bad_sampling_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_every must be 0"):
        memray.Tracker(tmp_path / "x.bin", sample_every=-1)
    with pytest.raises(TypeError, match="sample_every must be an int"):
        memray.Tracker(tmp_path / "x.bin", sample_every=1.5)  # type: ignore[arg-type]
    (tmp_path / "prog.py").write_text("pass\n")
    for value, message in [
        ("-5", "invalid size: '-5' (must be 0 or more)"),
        ("5XB", "invalid size: '5XB' (expected bytes or a number with a unit"),
    ]:
        proc = memray_cli("run", "--sample-every", value, "prog.py", cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert message in proc.stderr.splitlines()[-1]
    assert not list(tmp_path.glob("*.bin"))
