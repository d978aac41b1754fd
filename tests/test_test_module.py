"""memray._test, the allocators memray 1.x ships for tests (and that memray
plugins' test suites import): each call is recorded with its allocator, the
exact size and the calling line."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from conftest import line_of, run_python

from memray import AllocatorType, FileReader

LIBC_HAS_FREE_SIZED = hasattr(ctypes.CDLL(None), "free_sized")


def _records(path: Path, sizes: set[int]) -> tuple[list[tuple], set[int]]:
    """The allocations of these sizes, in order, and the sizes still leaked."""
    with FileReader(path) as reader:
        allocations = [
            (AllocatorType(r.allocator).name, r.size, r.stack_trace()[:1])
            for r in reader.get_allocation_records()
            if r.size in sizes
        ]
        leaked = {r.size for r in reader.get_leaked_allocation_records()} & sizes
    return allocations, leaked


def test_memory_allocator_records_each_call(tmp_path: Path) -> None:
    code = """
    import memray
    from memray._test import MemoryAllocator

    a = MemoryAllocator()
    with memray.Tracker("out.bin"):
        for name in ("malloc", "calloc", "posix_memalign", "aligned_alloc",
                     "memalign", "valloc", "pvalloc"):
            # A multiple of the alignment: C11 aligned_alloc asks for one.
            assert getattr(a, name)(7040)  # ALLOC
            a.free()  # FREE
        assert a.malloc(7002)  # MALLOC
        assert a.realloc(7003)  # REALLOC
        a.free()  # FREE2
    """
    run_python(code, tmp_path)
    script = str(tmp_path / "prog.py")
    at = lambda marker: [("<module>", script, line_of(code, marker))]  # noqa: E731
    kinds = ("MALLOC", "CALLOC", "POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN", "VALLOC")
    expected = []
    for kind in (*kinds, "PVALLOC"):
        expected.append((kind, 7040, at("# ALLOC")))
    expected += [("MALLOC", 7002, at("# MALLOC")), ("REALLOC", 7003, at("# REALLOC"))]
    # Every block was freed (realloc freed the 7002-byte one).
    assert _records(tmp_path / "out.bin", {7040, 7002, 7003}) == (expected, set())


@pytest.mark.parametrize(
    "domain", ["PYMALLOC_RAW", "PYMALLOC_MEM", "PYMALLOC_OBJECT"], ids=["raw", "mem", "object"]
)
def test_pymalloc_allocator_records_each_domain(tmp_path: Path, domain: str) -> None:
    code = f"""
    import memray
    from memray._test import PymallocDomain, PymallocMemoryAllocator

    a = PymallocMemoryAllocator(PymallocDomain.{domain})
    with memray.Tracker("out.bin", trace_python_allocators=True):
        assert a.malloc(7101)  # MALLOC
        assert a.realloc(7102)  # REALLOC
        a.free()
        assert a.calloc(7103)  # CALLOC
        a.free()
    """
    run_python(code, tmp_path)
    script = str(tmp_path / "prog.py")
    at = lambda marker: [("<module>", script, line_of(code, marker))]  # noqa: E731
    assert _records(tmp_path / "out.bin", {7101, 7102, 7103}) == (
        [
            ("PYMALLOC_MALLOC", 7101, at("# MALLOC")),
            ("PYMALLOC_REALLOC", 7102, at("# REALLOC")),
            ("PYMALLOC_CALLOC", 7103, at("# CALLOC")),
        ],
        set(),
    )


def test_pymalloc_allocator_rejects_unknown_domains(tmp_path: Path) -> None:
    from memray._test import PymallocMemoryAllocator

    with pytest.raises(ValueError):
        PymallocMemoryAllocator(7)


def test_mmap_allocator_maps_and_unmaps_by_range(tmp_path: Path) -> None:
    code = """
    import memray
    from memray._test import MmapAllocator

    with memray.Tracker("out.bin"):
        m = MmapAllocator(3 * 4096)  # MMAP
        m.munmap(4096, offset=4096)  # MIDDLE
        m.munmap(4096)  # HEAD
    print(m.address)
    """
    proc = run_python(code, tmp_path)
    address = int(proc.stdout)
    with FileReader(tmp_path / "out.bin") as reader:
        maps = [
            (AllocatorType(r.allocator).name, r.address, r.size)
            for r in reader.get_allocation_records()
            if r.allocator in (AllocatorType.MMAP, AllocatorType.MUNMAP)
        ]
    assert maps == [
        ("MMAP", address, 3 * 4096),
        ("MUNMAP", address + 4096, 4096),
        ("MUNMAP", address, 4096),
    ]


def test_thread_helpers(tmp_path: Path) -> None:
    code = """
    import threading
    import memray
    from memray._test import MemoryAllocator, set_thread_name

    a, b = MemoryAllocator(), MemoryAllocator()
    with memray.Tracker("out.bin"):
        a.run_in_pthread(lambda: b.malloc(7201))  # PTHREAD
        try:
            a.run_in_pthread(lambda: 1 / 0)
        except ZeroDivisionError:
            print("raised")
        assert set_thread_name("renamed-main") == 0
        a.malloc(7202)
    print(threading.main_thread().native_id)
    """
    proc = run_python(code, tmp_path)
    raised, main_tid = proc.stdout.split()
    assert raised == "raised"
    with FileReader(tmp_path / "out.bin") as reader:
        recs = {r.size: r for r in reader.get_allocation_records() if r.size in (7201, 7202)}
    assert recs[7201].tid != int(main_tid)
    assert recs[7201].stack_trace()[:1] == [
        ("<lambda>", str(tmp_path / "prog.py"), line_of(code, "# PTHREAD"))
    ]
    assert recs[7202].tid == int(main_tid)
    assert recs[7202].thread_name == "renamed-main"


def test_sized_frees_where_libc_has_them(tmp_path: Path) -> None:
    from memray._test import MemoryAllocator

    a = MemoryAllocator()
    assert a.malloc(64)
    assert a.free_sized(64) is LIBC_HAS_FREE_SIZED
    if not LIBC_HAS_FREE_SIZED:
        a.free()
    assert a.aligned_alloc(64)
    assert a.free_aligned_sized(64) is LIBC_HAS_FREE_SIZED
    if not LIBC_HAS_FREE_SIZED:
        a.free()
