"""Heap vs RSS (docs/memory.rst): MEMORY records carry the split of the
resident set into anonymous, file-backed and shared memory, and the part of
the heap that is mmap'd files or shared memory. Hand-built captures give
exact numbers through the reader and the reporters; tracked programs (each
in a subprocess with a timeout) check what the kernel reports: a file mapped
and read through adds its size to file-backed memory, shared memory to
shared, and small blocks freed without going back to the system stay in
anonymous memory while the heap drops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from capture_builder import MALLOC, MMAP, MUNMAP, START_MS, CaptureBuilder
from conftest import TIMEOUT, run_python

from memray import FileReader, MemorySnapshot, compute_statistics
from memray.reporters._common import iter_snapshots
from memray.reporters.stats import StatsReporter
from memray.reporters.summary import SummaryReporter

MB = 1 << 20
PAGE = 4096


def memray_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


# ---- the API -------------------------------------------------------------------


def test_memory_snapshot_keeps_positional_construction() -> None:
    old = MemorySnapshot(5, 100, 40)
    assert old == (5, 100, 40, 0, 0, 0, 0)
    assert not old.has_rss_breakdown
    new = MemorySnapshot(5, 100, 40, anon_rss=70, file_rss=20, shared_rss=10, mapped_heap=15)
    assert new.has_rss_breakdown
    assert new.anon_heap == 25
    assert new.untracked_anon_rss == 45
    # A heap larger than anonymous memory (allocated, never touched).
    assert MemorySnapshot(5, 100, 90, 70, 30, 0).untracked_anon_rss == 0


def build_split_capture(with_split: bool = True) -> CaptureBuilder:
    """A capture whose heap peaks (4 MB) at the 20 ms sample and whose RSS
    peaks (40 MB) at the 30 ms one, after the heap dropped to 1 MB without
    RSS following (the freed memory stays in the allocator)."""
    b = CaptureBuilder()
    s = b.stack(("main", "prog.py", 3))
    split = (lambda *parts: parts) if with_split else (lambda *parts: None)
    b.memory(10, 20 * MB, split=split(12 * MB, 8 * MB, 0, 0))
    b.alloc(100, MALLOC, 0x10000, 3 * MB, s)
    b.alloc(100, MMAP, 0x7F0000000000, 1 * MB, s)
    b.memory(20, 30 * MB, split=split(17 * MB, 12 * MB, 1 * MB, 1 * MB))
    b.free(100, MUNMAP, 0x7F0000000000, 1 * MB)
    b.alloc(100, MALLOC, 0x500000, 1 * MB, s)
    b.free(100, 5, 0x10000)  # FREE
    b.memory(30, 40 * MB, split=split(30 * MB, 10 * MB, 0, 0))
    b.trailer(35, 3, 0)
    return b


def test_reader_gives_the_split_and_the_peak_samples(tmp_path: Path) -> None:
    path = build_split_capture().write(tmp_path / "split.bin")
    with FileReader(path) as reader:
        snaps = list(reader.get_memory_snapshots())
        heap_peak = reader.get_heap_peak_snapshot()
        rss_peak = reader.get_rss_peak_snapshot()
    assert snaps == [
        MemorySnapshot(START_MS + 10, 20 * MB, 0, 12 * MB, 8 * MB, 0, 0),
        MemorySnapshot(START_MS + 20, 30 * MB, 4 * MB, 17 * MB, 12 * MB, 1 * MB, 1 * MB),
        MemorySnapshot(START_MS + 30, 40 * MB, 1 * MB, 30 * MB, 10 * MB, 0, 0),
    ]
    assert heap_peak == snaps[1]
    assert rss_peak == snaps[2]
    assert rss_peak.untracked_anon_rss == 29 * MB
    # The peaks are those of every sample, however few are kept.
    with FileReader(path, max_memory_records=1) as reader:
        assert [s.time for s in reader.get_memory_snapshots()] == [START_MS + 10]
        assert reader.get_heap_peak_snapshot() == snaps[1]
        assert reader.get_rss_peak_snapshot() == snaps[2]


def test_old_captures_have_no_split(tmp_path: Path) -> None:
    path = build_split_capture(with_split=False).write(tmp_path / "old.bin")
    with FileReader(path) as reader:
        snaps = list(reader.get_memory_snapshots())
        assert reader.get_heap_peak_snapshot() == MemorySnapshot(START_MS + 20, 30 * MB, 4 * MB)
    assert not any(s.has_rss_breakdown for s in snaps)
    assert set(iter_snapshots(snaps)) == {"time", "rss", "heap"}
    stats = compute_statistics(path)
    reporter = StatsReporter(stats)
    assert reporter.memory_samples() == []
    assert "rss_breakdown" not in reporter.to_json()
    assert SummaryReporter.memory_footer(stats.memory_at_heap_peak) is None


def test_no_samples(tmp_path: Path) -> None:
    b = CaptureBuilder()
    b.alloc(100, MALLOC, 0x1000, 10, b.stack(("f", "f.py", 1)))
    path = b.write(tmp_path / "none.bin")
    with FileReader(path) as reader:
        assert reader.get_heap_peak_snapshot() is None
        assert reader.get_rss_peak_snapshot() is None
    stats = compute_statistics(path)
    assert stats.memory_at_heap_peak is None and stats.memory_at_rss_peak is None


# ---- the reporters on exact numbers --------------------------------------------


STATS_SECTION = """\
Resident memory (RSS) at the heap's peak, 0.020 s after start:
\tRSS: 31.457MB
\t- heap tracked by memray: 3.146MB (allocations alive at that moment, but for the mapped files and shared memory below)
\t- untracked anonymous memory: 14.680MB (the interpreter's own memory, static data, allocator free lists and fragmentation)
\t- file-backed mappings: 12.583MB (code of Python and its libraries, memory-mapped files)
\t- shared memory: 1.049MB (/dev/shm and tmpfs files, shared anonymous mappings)
\tNote: 1.049MB of the heap is files or shared memory mapped with mmap, counted above as file-backed or shared memory as far as it is resident

Resident memory (RSS) at its highest, 0.030 s after start:
\tRSS: 41.943MB
\t- heap tracked by memray: 1.049MB (allocations alive at that moment)
\t- untracked anonymous memory: 30.409MB (the interpreter's own memory, static data, allocator free lists and fragmentation)
\t- file-backed mappings: 10.486MB (code of Python and its libraries, memory-mapped files)
\t- shared memory: 0.000B (/dev/shm and tmpfs files, shared anonymous mappings)

"""


def test_stats_shows_the_split_after_the_peak(tmp_path: Path) -> None:
    path = build_split_capture().write(tmp_path / "split.bin")
    proc = memray_cli("stats", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # memray 1.x's lines stay as they were; the section follows the peak.
    head = "Total allocations:\n\t3\n\nTotal memory allocated:\n\t5.243MB\n\n"
    head += "Peak memory usage:\n\t4.194MB\n\n"
    assert out.startswith(head + STATS_SECTION + "Histogram of allocation size:\n"), out

    proc = memray_cli("stats", "--json", "-o", str(tmp_path / "s.json"), str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["rss_breakdown"] == {
        "at_heap_peak": {
            "ms_since_start": 20,
            "rss": 30 * MB,
            "heap": 4 * MB,
            "heap_in_mappings": 1 * MB,
            "anonymous": 17 * MB,
            "heap_resident": 3 * MB,
            "untracked_anonymous": 14 * MB,
            "file_backed": 12 * MB,
            "shared": 1 * MB,
        },
        "at_rss_peak": {
            "ms_since_start": 30,
            "rss": 40 * MB,
            "heap": 1 * MB,
            "heap_in_mappings": 0,
            "anonymous": 30 * MB,
            "heap_resident": 1 * MB,
            "untracked_anonymous": 29 * MB,
            "file_backed": 10 * MB,
            "shared": 0,
        },
    }


def test_stats_one_section_when_both_peak_together(tmp_path: Path) -> None:
    b = CaptureBuilder()
    b.alloc(100, MALLOC, 0x1000, 2 * MB, b.stack(("f", "f.py", 1)))
    b.memory(5, 10 * MB, split=(6 * MB, 3 * MB, 1 * MB, 0))
    path = b.write(tmp_path / "one.bin")
    reporter = StatsReporter(compute_statistics(path))
    lines = reporter._rss_lines()
    assert (
        lines[0]
        == "Resident memory (RSS) at the heap's peak, also its highest, 0.005 s after start:"
    )
    assert lines[2:6] == [
        "\t- heap tracked by memray: 2.097MB (allocations alive at that moment)",
        "\t- untracked anonymous memory: 4.194MB (the interpreter's own memory, static data, "
        "allocator free lists and fragmentation)",
        "\t- file-backed mappings: 3.146MB (code of Python and its libraries, memory-mapped files)",
        "\t- shared memory: 1.049MB (/dev/shm and tmpfs files, shared anonymous mappings)",
    ]
    assert lines[6:] == [""]


def test_summary_footer(tmp_path: Path) -> None:
    path = build_split_capture().write(tmp_path / "split.bin")
    proc = memray_cli("summary", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == (
        "Resident memory at the heap's peak (0.020 s after start): RSS 30.000MB = "
        "heap 3.000MB + untracked anonymous 14.000MB + file-backed 12.000MB + shared 1.000MB; "
        "the heap also holds 1.000MB of mmap'd files or shared memory"
    )


def test_flamegraph_plot_data_and_legend(tmp_path: Path) -> None:
    path = build_split_capture().write(tmp_path / "split.bin")
    out = tmp_path / "fg.html"
    proc = memray_cli("flamegraph", "-o", str(out), str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert '<span class="legend-split"' in html
    start = html.index('id="memray-data">') + len('id="memray-data">')
    data = json.loads(html[start : html.index("</script>", start)])
    assert data["snapshots"]["anon"] == [12 * MB, 17 * MB, 30 * MB]
    assert data["snapshots"]["file"] == [8 * MB, 12 * MB, 10 * MB]
    assert data["snapshots"]["shared"] == [0, 1 * MB, 0]
    assert data["snapshots"]["mapped"] == [0, 1 * MB, 0]

    old = build_split_capture(with_split=False).write(tmp_path / "old.bin")
    proc = memray_cli("flamegraph", "-f", "-o", str(out), str(old), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '<span class="legend-split"' not in out.read_text()


# ---- tracked programs -----------------------------------------------------------

MAPPED_FILE = """
    import mmap, time
    import memray

    SIZE = 64 << 20
    SHARED = 32 << 20

    def read_through(path):
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        total = 0
        for off in range(0, len(m), mmap.PAGESIZE):
            total += m[off]
        return m, total

    def fill(m):
        for off in range(0, len(m), mmap.PAGESIZE):
            m[off] = 1

    with open("warm.bin", "wb") as f:
        f.write(b"w" * (1 << 20))
    with open("big.bin", "wb") as f:
        f.write(b"\\x01" * SIZE)
    # Every code path below runs once before tracking, so the samples see
    # the file's pages come and go and little else.
    warm, _ = read_through("warm.bin")
    warm.close()
    fill(mmap.mmap(-1, mmap.PAGESIZE))
    with memray.Tracker("out.bin", memory_interval_ms=10):
        time.sleep(0.1)
        m, total = read_through("big.bin")
        assert total == SIZE // mmap.PAGESIZE
        time.sleep(0.1)
        m.close()
        time.sleep(0.1)
        shared = mmap.mmap(-1, SHARED)  # MAP_SHARED | MAP_ANONYMOUS
        fill(shared)
        time.sleep(0.1)
        shared.close()
        time.sleep(0.1)
"""


def test_mapped_file_is_file_backed(tmp_path: Path) -> None:
    """A 64 MiB file mapped and read through adds 64 MiB to file-backed RSS
    (to the page, give or take the few pages anything else maps meanwhile)
    and leaves anonymous memory alone; 32 MiB of shared anonymous memory
    touched adds 32 MiB to shared memory. memray counts both mmaps in the
    heap, and says so (mapped_heap), so neither shows as heap in RSS."""
    run_python(MAPPED_FILE, tmp_path)
    with FileReader(tmp_path / "out.bin") as reader:
        snaps = list(reader.get_memory_snapshots())
    assert all(s.has_rss_breakdown for s in snaps)
    assert all(s.anon_rss + s.file_rss + s.shared_rss == s.rss for s in snaps)
    file_mapped = [s for s in snaps if s.mapped_heap == 64 * MB]
    shm_mapped = [s for s in snaps if s.mapped_heap == 32 * MB]
    assert file_mapped and shm_mapped, [s.mapped_heap for s in snaps]
    before = [s for s in snaps if s.time < file_mapped[0].time][-1]
    read = file_mapped[-1]
    between = [s for s in snaps if read.time < s.time < shm_mapped[0].time][-1]
    filled = shm_mapped[-1]
    after = snaps[-1]
    slack = 16 * PAGE
    assert before.mapped_heap == 0 and between.mapped_heap == 0 and after.mapped_heap == 0
    assert abs(read.file_rss - before.file_rss - 64 * MB) <= slack
    assert abs(read.anon_rss - before.anon_rss) <= slack
    assert abs(between.file_rss - before.file_rss) <= slack  # unmapped: gone again
    assert abs(filled.shared_rss - between.shared_rss - 32 * MB) <= slack
    assert abs(filled.anon_rss - between.anon_rss) <= slack
    assert abs(after.shared_rss - between.shared_rss) <= slack
    # The mappings are in the heap, not in its anonymous part.
    assert read.heap >= 64 * MB and read.anon_heap == read.heap - 64 * MB

    proc = memray_cli("stats", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # The heap and RSS peak together, with the file read through.
    assert "Resident memory (RSS) at the heap's peak, also its highest" in proc.stdout
    assert "of the heap is files or shared memory mapped with mmap" in proc.stdout


FREED_SMALL_BLOCKS = """
    import time
    import memray
    from memray._test import MemoryAllocator

    N, SIZE = 50_000, 1000  # 50 MB in small blocks
    blocks = [MemoryAllocator() for _ in range(N)]
    with memray.Tracker("out.bin", memory_interval_ms=10):
        time.sleep(0.05)
        for a in blocks:
            a.malloc(SIZE)
        time.sleep(0.05)
        # Nine in ten go back to malloc, one in ten stays: every stretch of
        # the allocator's heap keeps a live block, so nothing can return to
        # the system and RSS stays where it was.
        for i, a in enumerate(blocks):
            if i % 10:
                a.free()
        time.sleep(0.1)
"""


def test_freed_small_blocks_stay_resident(tmp_path: Path) -> None:
    """90% of 50 MB of 1000-byte blocks freed: the heap falls to 5 MB while
    anonymous RSS stays, so untracked anonymous memory grows by ~45 MB."""
    run_python(FREED_SMALL_BLOCKS, tmp_path)
    with FileReader(tmp_path / "out.bin") as reader:
        peak = reader.get_heap_peak_snapshot()
        end = list(reader.get_memory_snapshots())[-1]
    assert 50_000_000 <= peak.heap < 50_000_000 + 1 * MB
    assert 5_000_000 <= end.heap < 5_000_000 + 1 * MB
    assert end.anon_rss >= peak.anon_rss - 1 * MB
    assert end.untracked_anon_rss - peak.untracked_anon_rss >= 44_000_000
    assert end.rss - end.heap >= 45_000_000

    proc = memray_cli("stats", "--json", "-o", "s.json", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "s.json").read_text())["rss_breakdown"]
    at_peak = data["at_heap_peak"]
    assert at_peak["heap"] == peak.heap and at_peak["heap_resident"] == peak.heap
    assert at_peak["heap_resident"] + at_peak["untracked_anonymous"] == at_peak["anonymous"]
    assert at_peak["anonymous"] + at_peak["file_backed"] + at_peak["shared"] == at_peak["rss"]


FORKED = """
    import os, time
    import memray

    with memray.Tracker("out.bin", follow_fork=True, memory_interval_ms=10):
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            data = b"\\x01" * (64 << 20)  # resident in the child only
            time.sleep(0.1)
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.05)
    print(pid)
"""


def test_followed_fork_child_samples_its_own_memory(tmp_path: Path) -> None:
    """A followed child's samples are the child's (the /proc files the
    parent opened would go on naming the parent)."""
    proc = run_python(FORKED, tmp_path)
    child = int(proc.stdout.split()[-1])
    with FileReader(tmp_path / "out.bin") as reader:
        parent_max = max(s.rss for s in reader.get_memory_snapshots())
    with FileReader(tmp_path / f"out.bin.{child}") as reader:
        snaps = list(reader.get_memory_snapshots())
    # (A child starts with less RSS than its parent: it maps the parent's
    # file pages again only as it touches them.)
    assert max(s.rss for s in snaps) >= parent_max + 40 * MB
    assert max(s.anon_rss for s in snaps) >= 64 * MB
