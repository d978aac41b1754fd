"""memray merge, and reporters and FileReader given several captures: one
capture of many processes. Hand-built captures pin the semantics exactly
(the time axis, sums, processes and threads kept apart, addresses that
collide); real process trees (--follow-children) check sizes per child; bad
input gets one line. Every tracked program runs in a subprocess with a
timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from capture_builder import (
    FLAG_AGGREGATED,
    FREE,
    MALLOC,
    START_MS,
    CaptureBuilder,
)
from conftest import TIMEOUT, line_of

import memray
from memray import AllocatorType, FileFormat, FileReader, ProcessInfo


def memray_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def two_processes(tmp_path: Path) -> tuple[Path, Path]:
    """Process 101 (a.py) and process 202 (b.py, started 15 ms later), both
    with a main thread of tid 100 and a block at 0x1000.

    On the merged clock: a's samples at 10, 20, 30 ms, b's at 25, 35 ms.
    Heap: a 1000 -> 1500 -> 500; b 4000 from 25 ms, 0 at 35 ms. The sum
    peaks at 5500 when b's block joins a's two."""
    a = CaptureBuilder(pid=101, main_tid=100, command_line="python a.py")
    a.thread_name(100, "MainThread")
    big = a.stack(("<module>", "a.py", 10), ("grow", "a.py", 3))
    small = a.stack(("<module>", "a.py", 11), ("keep", "a.py", 6))
    a.alloc(100, MALLOC, 0x1000, 1000, big)
    a.memory(10, rss=5000, heap=1000)
    a.alloc(100, MALLOC, 0x2000, 500, small)
    a.memory(20, rss=6000, heap=1500)
    a.free(100, FREE, 0x1000)
    a.memory(30, rss=5000, heap=500)
    a.trailer(30, 2, 0)
    b = CaptureBuilder(pid=202, main_tid=100, start_ms=START_MS + 15, command_line="python b.py")
    b.thread_name(100, "MainThread")
    other = b.stack(("<module>", "b.py", 9), ("load", "b.py", 4))
    b.alloc(100, MALLOC, 0x1000, 4000, other)
    b.memory(10, rss=9000, heap=4000)
    b.free(100, FREE, 0x1000)
    b.memory(20, rss=8000, heap=0)
    b.trailer(20, 1, 0)
    return a.write(tmp_path / "a.bin"), b.write(tmp_path / "b.bin")


def rows(records) -> list[tuple[int, int, tuple[str, str, int], str]]:
    return sorted((r.size, r.n_allocations, r.stack_trace()[0], r.thread_name) for r in records)


def test_merge_puts_processes_on_one_time_axis(tmp_path: Path) -> None:
    a, b = two_processes(tmp_path)
    proc = memray_cli("merge", "-o", "all.bin", "a.bin", "b.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Wrote all.bin: 2 processes (pid 101, 202)\n"

    with FileReader(tmp_path / "all.bin") as reader:
        md = reader.metadata
        assert md.pid == 101
        assert md.command_line == "python a.py"
        assert md.file_format == FileFormat.ALL_ALLOCATIONS
        assert md.processes == (
            ProcessInfo(101, 0, "python a.py", 0),
            ProcessInfo(202, 0, "python b.py", 15),
        )
        assert md.peak_memory == 5500
        assert md.total_allocations == 5  # 3 allocations and 2 frees
        # The sums: a alone until b starts, then both; a's end drops it.
        assert [(s.time - START_MS, s.rss, s.heap) for s in reader.get_memory_snapshots()] == [
            (10, 5000, 1000),
            (20, 6000, 1500),
            (25, 15000, 5500),
            (30, 14000, 4500),
            (30, 9000, 4000),
            (35, 8000, 0),
        ]
        # Both blocks at 0x1000 are alive at the peak: the address is per process.
        assert rows(reader.get_high_watermark_allocation_records(merge_threads=False)) == [
            (500, 1, ("keep", "a.py", 6), "MainThread (pid 101)"),
            (1000, 1, ("grow", "a.py", 3), "MainThread (pid 101)"),
            (4000, 1, ("load", "b.py", 4), "MainThread (pid 202)"),
        ]
        assert rows(reader.get_leaked_allocation_records(merge_threads=False)) == [
            (500, 1, ("keep", "a.py", 6), "MainThread (pid 101)"),
        ]
        events = list(reader.get_allocation_records())
    # tid 100 ran in both: b's thread got an id of its own.
    assert sorted({(e.tid, e.thread_name) for e in events}) == [
        (100, "MainThread (pid 101)"),
        (1 << 30, "MainThread (pid 202)"),
    ]
    assert [e.address >> 48 for e in events] == [1, 1, 2, 1, 2]


def test_an_ended_process_leaves_the_heap_but_keeps_its_leaks(tmp_path: Path) -> None:
    """a (1000 bytes never freed) ends at 10 ms; b starts at 20 ms and holds
    800: the sum never holds both, so the peak is a's 1000, and each keeps
    what it leaked."""
    a = CaptureBuilder(pid=1, main_tid=1)
    a.alloc(1, MALLOC, 0x1000, 1000, a.stack(("<module>", "a.py", 1)))
    a.memory(5, rss=100, heap=1000)
    a.trailer(10, 1, 1000)
    a.write(tmp_path / "a.bin")
    b = CaptureBuilder(pid=2, main_tid=2, start_ms=START_MS + 20)
    b.alloc(2, MALLOC, 0x1000, 800, b.stack(("<module>", "b.py", 1)))
    b.memory(5, rss=100, heap=800)
    b.trailer(10, 1, 800)
    b.write(tmp_path / "b.bin")
    with FileReader([tmp_path / "a.bin", tmp_path / "b.bin"]) as reader:
        assert reader.metadata.peak_memory == 1000
        assert [(s.time - START_MS, s.heap) for s in reader.get_memory_snapshots()] == [
            (5, 1000),
            (10, 0),
            (25, 800),
        ]
        assert rows(reader.get_high_watermark_allocation_records()) == [
            (1000, 1, ("<module>", "a.py", 1), "merged thread"),
        ]
        assert rows(reader.get_leaked_allocation_records()) == [
            (800, 1, ("<module>", "b.py", 1), "merged thread"),
            (1000, 1, ("<module>", "a.py", 1), "merged thread"),
        ]
        assert rows(reader.get_temporal_high_water_mark_allocation_records()[0]) == [
            (800, 1, ("<module>", "b.py", 1), "merged thread"),
            (1000, 1, ("<module>", "a.py", 1), "merged thread"),
        ]
        # Peaks per snapshot interval: a until it ends at 10 ms, then b.
        assert reader.get_temporal_high_water_mark_allocation_records()[1] == [1000, 1000, 800, 800]
    stats = memray.compute_statistics([tmp_path / "a.bin", tmp_path / "b.bin"])
    assert stats.peak_memory_allocated == 1000
    assert stats.total_memory_allocated == 1800


def test_readers_and_reporters_merge_several_captures_on_the_fly(tmp_path: Path) -> None:
    two_processes(tmp_path)
    assert memray_cli("merge", "-o", "all.bin", "a.bin", "b.bin", cwd=tmp_path).returncode == 0
    with (
        FileReader(tmp_path / "all.bin") as merged,
        FileReader([tmp_path / "a.bin", tmp_path / "b.bin"]) as direct,
    ):
        assert direct.metadata == merged.metadata
        assert list(direct.get_memory_snapshots()) == list(merged.get_memory_snapshots())
        for query in ("get_high_watermark_allocation_records", "get_leaked_allocation_records"):
            assert rows(getattr(direct, query)(merge_threads=False)) == rows(
                getattr(merged, query)(merge_threads=False)
            )
        assert rows(direct.get_temporary_allocation_records()) == rows(
            merged.get_temporary_allocation_records()
        )
    assert memray.compute_statistics(
        [tmp_path / "a.bin", tmp_path / "b.bin"]
    ) == memray.compute_statistics(tmp_path / "all.bin")
    for command in (["summary"], ["tree"], ["stats"]):
        one = memray_cli(*command, "all.bin", cwd=tmp_path)
        several = memray_cli(*command, "a.bin", "b.bin", cwd=tmp_path)
        assert one.returncode == several.returncode == 0, several.stderr
        assert one.stdout == several.stdout
    proc = memray_cli(
        "flamegraph", "--split-threads", "-o", "tree.html", "a.bin", "b.bin", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "tree.html").read_text()
    assert "MainThread (pid 101)" in page and "MainThread (pid 202)" in page
    proc = memray_cli("table", "-o", "table.html", "a.bin", "b.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def aggregated(path: Path, pid: int, start: int, sizes: list[int]) -> Path:
    cap = CaptureBuilder(flags=FLAG_AGGREGATED, pid=pid, main_tid=pid, start_ms=START_MS + start)
    cap.thread_name(pid, "MainThread")
    for line, size in enumerate(sizes, 1):
        stack = cap.stack(("f", "agg.py", line))
        cap.agg(pid, MALLOC, stack, 0, 1, size, 1 if line == 1 else 0, size if line == 1 else 0)
    cap.memory(5, rss=10 * sum(sizes), heap=sum(sizes))
    cap.trailer(50, len(sizes), sum(sizes))
    return cap.write(path)


def test_merging_aggregated_captures_gives_an_aggregated_capture(tmp_path: Path) -> None:
    aggregated(tmp_path / "p.bin", 11, 0, [100, 200])
    aggregated(tmp_path / "q.bin", 22, 2, [1000])
    proc = memray_cli("merge", "-o", "all.bin", "p.bin", "q.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with FileReader(tmp_path / "all.bin") as reader:
        md = reader.metadata
        assert md.file_format == FileFormat.AGGREGATED_ALLOCATIONS
        assert [p.pid for p in md.processes] == [11, 22]
        assert md.total_allocations == 3
        # Each process at its own peak; the heap peaks at the sum of both,
        # at q's sample (7 ms on the merged clock, both running).
        assert md.peak_memory == 1300
        assert rows(reader.get_high_watermark_allocation_records(merge_threads=False)) == [
            (100, 1, ("f", "agg.py", 1), "MainThread (pid 11)"),
            (200, 1, ("f", "agg.py", 2), "MainThread (pid 11)"),
            (1000, 1, ("f", "agg.py", 1), "MainThread (pid 22)"),
        ]
        assert rows(reader.get_leaked_allocation_records(merge_threads=False)) == [
            (100, 1, ("f", "agg.py", 1), "MainThread (pid 11)"),
            (1000, 1, ("f", "agg.py", 1), "MainThread (pid 22)"),
        ]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("memray: error: ")
    return lines[0].removeprefix("memray: error: ")


def test_bad_input_gets_one_line(tmp_path: Path) -> None:
    two_processes(tmp_path)
    aggregated(tmp_path / "agg.bin", 33, 0, [10])
    (tmp_path / "text.bin").write_text("hello\n")
    high = CaptureBuilder(pid=44)
    high.alloc(44, MALLOC, 1 << 48, 10)
    high.write(tmp_path / "high.bin")
    assert memray_cli("merge", "-o", "all.bin", "a.bin", "b.bin", cwd=tmp_path).returncode == 0

    def merge(*inputs: str) -> str:
        return one_line_error(memray_cli("merge", "-o", "out.bin", *inputs, cwd=tmp_path))

    assert merge("a.bin", "agg.bin") == (
        "agg.bin is an aggregated capture and a.bin is not: merge captures of one file format"
    )
    assert merge("a.bin", "b.bin.1234") == "No such file: b.bin.1234"
    assert merge("a.bin", "b.bin", "a.bin") == "a.bin is given twice (also as a.bin)"
    assert merge("a.bin", "all.bin") == (
        "all.bin is already a merge of several captures: merge its inputs"
    )
    assert merge("a.bin", "text.bin") == "text.bin: not a memray capture file"
    assert (
        merge("a.bin", "high.bin")
        == "high.bin: address 0x1000000000000 is above 2^48: cannot merge it"
    )
    assert not (tmp_path / "out.bin").exists()
    # A copy of a capture is the same run twice.
    (tmp_path / "copy.bin").write_bytes((tmp_path / "a.bin").read_bytes())
    assert merge("a.bin", "copy.bin") == "a.bin and copy.bin are captures of the same run (pid 101)"
    assert (
        one_line_error(memray_cli("merge", "-o", "all.bin", "a.bin", "b.bin", cwd=tmp_path))
        == "File already exists, will not overwrite (use -f): all.bin"
    )
    assert (
        one_line_error(memray_cli("merge", "-f", "-o", "a.bin", "a.bin", "b.bin", cwd=tmp_path))
        == "The output a.bin is also an input"
    )
    # Reporters given several captures say the same.
    assert one_line_error(memray_cli("summary", "a.bin", "agg.bin", cwd=tmp_path)) == (
        "agg.bin is an aggregated capture and a.bin is not: merge captures of one file format"
    )
    assert one_line_error(memray_cli("flamegraph", "a.bin", "gone.bin", cwd=tmp_path)) == (
        "No such file: gone.bin"
    )
    with pytest.raises(ValueError, match="a.bin is given twice"):
        FileReader([tmp_path / "a.bin", tmp_path / "a.bin"])


TREE = """
import json, multiprocessing, os, subprocess, sys
import memray
from memray._test import MemoryAllocator

def work(size):
    MemoryAllocator().valloc(size)  # WORK
    return os.getpid(), size

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    with memray.Tracker("out.bin", follow_children=True):
        with ctx.Pool(2) as pool:
            results = pool.map(work, [40960, 81920], chunksize=1)
        child = subprocess.run(
            [sys.executable, "-c",
             "import os; from memray._test import MemoryAllocator; "
             "MemoryAllocator().valloc(12288); print(os.getpid())"],
            check=True, capture_output=True, text=True,
        )
    print(json.dumps({"results": results, "child": int(child.stdout)}))
"""


def test_merge_of_a_process_tree_keeps_each_childs_sizes(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(TREE))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    expected: dict[int, list[int]] = {}
    for pid, size in out["results"]:
        expected.setdefault(pid, []).append(size)
    expected[out["child"]] = [12288]
    inputs = sorted(p.name for p in tmp_path.glob("out.bin*"))
    proc = memray_cli("merge", "-o", "all.bin", *inputs, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Wrote all.bin: {len(inputs)} processes (pid ")

    with FileReader(tmp_path / "all.bin") as reader:
        pids = {p.pid for p in reader.metadata.processes}
        assert len(pids) == len(inputs)
        assert set(expected) <= pids
        got: dict[int, list[int]] = {}
        for r in reader.get_allocation_records():
            if r.allocator == AllocatorType.VALLOC:
                pid = int(r.thread_name.rsplit("(pid ", 1)[1].rstrip(")"))
                got.setdefault(pid, []).append(r.size)
        work_line = line_of(TREE, "# WORK")
        work = [
            r.size
            for r in reader.get_leaked_allocation_records()
            if r.allocator == AllocatorType.VALLOC
            and r.stack_trace()[0] == ("work", str(script), work_line)
        ]
    assert {pid: sorted(sizes) for pid, sizes in got.items()} == expected
    # One record per process (stacks of two processes are two stacks, though
    # their frames are the same) whether or not one worker ran both tasks.
    assert sum(work) == 40960 + 81920 and len(work) in (1, 2)
    # The reporters read the tree directly too.
    proc = memray_cli("flamegraph", "-o", "tree.html", *inputs, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


CONCURRENT = """
import multiprocessing, os, sys, time
import memray
from memray._test import MemoryAllocator

def child(ready, done):
    MemoryAllocator().valloc(16 << 20)  # CHILD
    ready.set()
    done.wait(30)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    with memray.Tracker("out.bin", follow_children=True, memory_interval_ms=5):
        keep = MemoryAllocator()
        keep.valloc(8 << 20)  # PARENT
        ready, done = ctx.Event(), ctx.Event()
        p = ctx.Process(target=child, args=(ready, done))
        p.start()
        ready.wait(30)
        time.sleep(0.1)
        done.set()
        p.join()
        keep.free()
        time.sleep(0.05)
    print(p.pid)
"""


def test_high_water_mark_is_the_peak_of_the_sum(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(CONCURRENT))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    child_pid = int(proc.stdout.split()[-1])
    with FileReader([tmp_path / "out.bin", tmp_path / f"out.bin.{child_pid}"]) as reader:
        peak = {
            (r.size, r.stack_trace()[0][2])
            for r in reader.get_high_watermark_allocation_records()
            if r.allocator == AllocatorType.VALLOC
        }
        # Alone, neither process reached 24 MiB; together they did.
        assert reader.metadata.peak_memory >= 24 << 20
        assert max(s.heap for s in reader.get_memory_snapshots()) >= 24 << 20
    assert peak == {
        (8 << 20, line_of(CONCURRENT, "# PARENT")),
        (16 << 20, line_of(CONCURRENT, "# CHILD")),
    }
    with FileReader(tmp_path / "out.bin") as parent:
        assert parent.metadata.peak_memory < 16 << 20
