"""Answers as memray 1.x gives them for the same program: how munmap,
pymalloc after fork, memory snapshots, record counts, statistics and
greenlets are counted."""

from __future__ import annotations

import mmap
import re
from pathlib import Path

import pytest
from conftest import run_python

from memray import AllocatorType, FileFormat, FileReader

P = mmap.PAGESIZE


@pytest.mark.parametrize("file_format", ["ALL_ALLOCATIONS", "AGGREGATED_ALLOCATIONS"])
def test_munmap_works_by_address_range(tmp_path: Path, file_format: str) -> None:
    # Two mappings with a gap between them: the first loses its middle (two
    # pieces), then one munmap takes the end of its second piece, the gap
    # and the head of the other.
    code = f"""
    import mmap
    import memray
    from memray._test import MmapAllocator

    P = mmap.PAGESIZE
    hole = MmapAllocator(16 * P)  # a free range at a known address
    base = hole.address
    with memray.Tracker("out.bin", file_format=memray.FileFormat.{file_format}):
        hole.munmap(16 * P)  # untracked: changes nothing
        a = MmapAllocator(10 * P, address=base)
        b = MmapAllocator(3 * P, address=base + 12 * P)
        assert (a.address, b.address) == (base, base + 12 * P)
        a.munmap(4 * P, offset=2 * P)
        a.munmap(5 * P, offset=8 * P)
    """
    run_python(code, tmp_path)

    def mmaps(records) -> list[tuple[int, int]]:
        return sorted(
            (r.size, r.n_allocations) for r in records if r.allocator == AllocatorType.MMAP
        )

    with FileReader(tmp_path / "out.bin") as reader:
        assert reader.metadata.file_format == FileFormat[file_format]
        # Both mappings whole at the peak; then 2 + 2 pages of the first,
        # in two pieces, and 2 of the second.
        assert mmaps(reader.get_high_watermark_allocation_records()) == [(3 * P, 1), (10 * P, 1)]
        assert mmaps(reader.get_leaked_allocation_records()) == [(2 * P, 1), (4 * P, 2)]
        assert reader.metadata.peak_memory - 13 * P < P
        if file_format == "ALL_ALLOCATIONS":
            alive = sorted(
                (
                    sum(
                        i.n_allocations
                        for i in r.intervals
                        if i.deallocated_before_snapshot is None
                    ),
                    sum(i.n_bytes for i in r.intervals if i.deallocated_before_snapshot is None),
                )
                for r in reader.get_temporal_allocation_records()
                if r.allocator == AllocatorType.MMAP
            )
            # Over time, a mapping split in two is still one allocation.
            assert alive == [(1, 2 * P), (1, 4 * P)]


def test_total_allocations_counts_every_record_frees_included(tmp_path: Path) -> None:
    code = """
    import memray
    from memray._test import MemoryAllocator, MmapAllocator

    with memray.Tracker("out.bin"):
        a = MemoryAllocator()
        a.malloc(100)
        a.realloc(200)
        a.realloc(300)
        a.free()
        a.calloc(10)
        a.free()
        m = MmapAllocator(8192)
        m.munmap(4096)
        m.munmap(4096, 4096)
    """
    run_python(code, tmp_path)
    with FileReader(tmp_path / "out.bin") as reader:
        records = list(reader.get_allocation_records())
        assert reader.metadata.total_allocations == len(records)
    kinds = [(AllocatorType(r.allocator).name, r.size) for r in records]
    # (The interpreter's own calls may be there too, as with PYTHONMALLOC=malloc.)
    assert kinds.count(("REALLOC", 200)) == kinds.count(("REALLOC", 300)) == 1
    assert kinds.count(("CALLOC", 10)) == 1 and kinds.count(("MUNMAP", 4096)) == 2
    assert kinds.count(("MMAP", 8192)) == 1


def test_memory_snapshots_are_an_interval_apart(tmp_path: Path) -> None:
    code = """
    import time
    import memray

    with memray.Tracker("out.bin", memory_interval_ms=50):
        end = time.monotonic() + 0.6
        blocks = []
        while time.monotonic() < end:
            blocks.append(bytearray(1000))
            if len(blocks) > 1000:
                blocks.clear()
    """
    run_python(code, tmp_path)
    with FileReader(tmp_path / "out.bin") as reader:
        times = [s.time for s in reader.get_memory_snapshots()]
        start = reader.metadata.start_time.timestamp() * 1000
        end = reader.metadata.end_time.timestamp() * 1000
    gaps = [b - a for a, b in zip(times, times[1:])]
    # One per 50 ms, never closer (the one at stop is left out when the
    # last came less than an interval before).
    assert len(times) >= 3 and min(gaps) >= 50
    assert len(times) <= (end - start) / 50 + 1


def test_forked_child_records_pymalloc_calls(tmp_path: Path) -> None:
    code = """
    import os
    import time
    import memray
    from memray._test import PymallocDomain, PymallocMemoryAllocator

    with memray.Tracker("out.bin", follow_fork=True, trace_python_allocators=True,
                        memory_interval_ms=10):
        pid = os.fork()
        if pid == 0:
            a = PymallocMemoryAllocator(PymallocDomain.PYMALLOC_OBJECT)
            a.malloc(4321)
            a.free()
            time.sleep(1)  # the child's own sampler records its memory meanwhile
            os._exit(0)
        os.waitpid(pid, 0)
    print(pid)
    """
    pid = int(run_python(code, tmp_path).stdout)
    with FileReader(tmp_path / f"out.bin.{pid}") as reader:
        assert reader.metadata.trace_python_allocators
        mine = [
            (AllocatorType(r.allocator).name, r.size)
            for r in reader.get_allocation_records()
            if r.size == 4321
        ]
        snapshots = list(reader.get_memory_snapshots())
    assert mine == [("PYMALLOC_MALLOC", 4321)]
    assert len(snapshots) >= 2  # the one at fork, then the sampler's


def test_top_modules_credit_the_nearest_frame_outside_the_standard_library(
    tmp_path: Path,
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub.py").write_text(
        "import json\n\ndef encode(n):\n    return json.dumps(list(range(n)))\n"
    )
    code = """
    import threading
    import memray
    import pkg.sub
    from memray._test import MemoryAllocator

    a = MemoryAllocator()
    with memray.Tracker("out.bin"):
        s = pkg.sub.encode(200_000)  # json's allocations are pkg's
        a.malloc(7_654_321)  # the script's
        t = threading.Thread(target=bytearray, args=(3_456_789,))  # nothing but stdlib
        t.start()
        t.join()
    """
    run_python(code, tmp_path)
    from memray import compute_statistics

    stats = compute_statistics(tmp_path / "out.bin", num_largest=100)
    by_size = {m: (n, b) for m, n, b in stats.top_modules_by_allocation_size}
    by_count = {m: (n, b) for m, n, b in stats.top_modules_by_allocation_count}
    assert by_size == by_count

    # The same rule, applied record by record.
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"] + "/"

    def module_of(stack: list) -> str:
        for _function, file, _line in stack:
            if not file.startswith(stdlib) and not file.startswith("<frozen "):
                installed = re.search(r"/(?:site|dist)-packages/([^/.]+)", file)
                if installed:  # memray's own frames, say
                    return installed.group(1)
                return "pkg" if "/pkg/" in file else file.rsplit("/", 1)[-1].removesuffix(".py")
        return "<root>"

    expected: dict[str, list[int]] = {}
    with FileReader(tmp_path / "out.bin") as reader:
        for r in reader.get_allocation_records():
            if AllocatorType(r.allocator).name in ("FREE", "PYMALLOC_FREE", "MUNMAP"):
                continue
            entry = expected.setdefault(module_of(r.stack_trace()), [0, 0])
            entry[0] += 1
            entry[1] += r.size
    assert by_size == {m: tuple(v) for m, v in expected.items()}
    assert by_size["pkg"][1] > 1_000_000  # the encoded text, made inside json
    assert by_size["prog"][1] >= 7_654_321
    assert by_size["<root>"][1] >= 3_456_789
    assert not any("json" in m or "threading" in m for m in by_size)


@pytest.mark.parametrize("when", ["before", "after"])
def test_each_greenlet_is_a_thread_of_its_own(tmp_path: Path, when: str) -> None:
    pytest.importorskip("greenlet", reason="greenlet is installed by the Makefile")
    code = f"""
    import memray
    from memray._test import MemoryAllocator

    a = MemoryAllocator()
    if {when!r} == "before":
        import greenlet
    with memray.Tracker("out.bin"):
        if {when!r} == "after":
            import greenlet

        def child(n):
            a.malloc(6100 + n)
            main_g.switch()
            a.malloc(6200 + n)

        main_g = greenlet.getcurrent()
        gs = []
        for n in range(2):
            g = greenlet.greenlet(child)
            g.switch(n)
            gs.append(g)
        a.malloc(6300)
        for g in gs:
            g.switch()
        a.malloc(6400)
    """
    run_python(code, tmp_path)
    with FileReader(tmp_path / "out.bin") as reader:
        main_tid = reader.metadata.main_thread_id
        got = {
            r.size: (r.tid, [f[0] for f in r.stack_trace()])
            for r in reader.get_allocation_records()
            if r.size in (6100, 6101, 6200, 6201, 6300, 6400)
        }
    first, second = got[6100][0], got[6101][0]
    assert len({first, second, main_tid}) == 3
    assert got == {
        6100: (first, ["child"]),
        6101: (second, ["child"]),
        6200: (first, ["child"]),
        6201: (second, ["child"]),
        6300: (main_tid, ["<module>"]),
        6400: (main_tid, ["<module>"]),
    }
