"""End-to-end tests of the tracking engine: a program runs in a fresh
interpreter under memray.Tracker, allocating exact sizes at known lines through
libtestalloc.so; the capture is read back with memray.FileReader and sizes,
counts, allocator types and stacks are asserted exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TIMEOUT, line_of, run_python

import memray
from memray import AllocatorType, FileFormat, FileReader

PRELUDE = """
import ctypes, os, sys, threading
import memray
lib = ctypes.CDLL(os.environ["TESTALLOC"])
for name in ("ta_malloc", "ta_calloc", "ta_realloc", "ta_posix_memalign", "ta_aligned_alloc",
             "ta_memalign", "ta_valloc", "ta_pvalloc", "ta_mmap"):
    getattr(lib, name).restype = ctypes.c_void_p
lib.ta_realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
lib.ta_free.argtypes = [ctypes.c_void_p]
lib.ta_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
lib.ta_calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
for name in ("ta_posix_memalign", "ta_aligned_alloc", "ta_memalign"):
    getattr(lib, name).argtypes = [ctypes.c_size_t, ctypes.c_size_t]
"""


def program(code: str) -> str:
    """The prelude followed by the test's code, both at column 0."""
    return PRELUDE + textwrap.dedent(code)


def run(code: str, tmp_path: Path, testalloc: Path, **kw) -> subprocess.CompletedProcess:
    return run_python(program(code), tmp_path, env={"TESTALLOC": str(testalloc)}, **kw)


def records_of(reader_records, size: int) -> list:
    return [r for r in reader_records if r.size == size]


def test_every_allocator_exact_size_type_and_line(tmp_path: Path, testalloc: Path) -> None:
    code = """
    def alloc_all():
        keep = []
        keep.append(lib.ta_malloc(1001))  # MALLOC
        keep.append(lib.ta_calloc(3, 1002))  # CALLOC
        p = lib.ta_malloc(1003)  # TEMP
        keep.append(lib.ta_realloc(p, 1004))  # REALLOC
        keep.append(lib.ta_posix_memalign(64, 1005))  # POSIX_MEMALIGN
        keep.append(lib.ta_aligned_alloc(64, 1024 * 64))  # ALIGNED_ALLOC
        keep.append(lib.ta_memalign(64, 1007))  # MEMALIGN
        keep.append(lib.ta_valloc(1008))  # VALLOC
        keep.append(lib.ta_pvalloc(1009))  # PVALLOC
        keep.append(lib.ta_mmap(1 << 20))  # MMAP
        return keep

    with memray.Tracker("out.bin"):
        kept = alloc_all()  # CALLER
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    caller = line_of(full, "# CALLER")
    expected = {
        1001: (AllocatorType.MALLOC, "# MALLOC"),
        3 * 1002: (AllocatorType.CALLOC, "# CALLOC"),
        1004: (AllocatorType.REALLOC, "# REALLOC"),
        1005: (AllocatorType.POSIX_MEMALIGN, "# POSIX_MEMALIGN"),
        1024 * 64: (AllocatorType.ALIGNED_ALLOC, "# ALIGNED_ALLOC"),
        1007: (AllocatorType.MEMALIGN, "# MEMALIGN"),
        1008: (AllocatorType.VALLOC, "# VALLOC"),
        1009: (AllocatorType.PVALLOC, "# PVALLOC"),  # requested, not the page it gets
        1 << 20: (AllocatorType.MMAP, "# MMAP"),
    }
    with FileReader(tmp_path / "out.bin") as reader:
        leaks = list(reader.get_leaked_allocation_records(merge_threads=False))
        events = list(reader.get_allocation_records())
    script = str(tmp_path / "prog.py")
    for size, (allocator, marker) in expected.items():
        found = [r for r in leaks if r.size == size and r.allocator == allocator]
        assert len(found) == 1, (size, allocator, leaks)
        rec = found[0]
        assert rec.n_allocations == 1
        assert rec.stack_trace() == [
            ("alloc_all", script, line_of(full, marker)),
            ("<module>", script, caller),
        ]
        assert rec.tid == threading_main_tid(reader_path=tmp_path / "out.bin")
    # realloc: the 1003-byte block was allocated, then freed by realloc.
    kinds = [(e.allocator, e.size) for e in events if e.size in (1003, 1004)]
    assert kinds == [(AllocatorType.MALLOC, 1003), (AllocatorType.REALLOC, 1004)]
    frees = [e for e in events if e.allocator == AllocatorType.FREE]
    assert len(frees) >= 1


def threading_main_tid(reader_path: Path) -> int:
    with FileReader(reader_path) as reader:
        return reader.metadata.main_thread_id


def test_high_water_mark_leaks_and_temporary(tmp_path: Path, testalloc: Path) -> None:
    code = """
    with memray.Tracker("out.bin"):
        a = lib.ta_malloc(500_000)  # A
        b = lib.ta_malloc(300_000)  # B
        lib.ta_free(a)
        c = lib.ta_malloc(100_000)  # C
        for _ in range(5):
            t = lib.ta_malloc(7777)  # T
            lib.ta_free(t)
        lib.ta_free(b)
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    with FileReader(tmp_path / "out.bin") as reader:
        peak = {
            r.size: r
            for r in reader.get_high_watermark_allocation_records()
            if r.size in (500_000, 300_000, 100_000)
        }
        leaks = [r for r in reader.get_leaked_allocation_records() if r.size == 100_000]
        temps = [r for r in reader.get_temporary_allocation_records() if r.size == 5 * 7777]
        meta = reader.metadata
    assert set(peak) == {500_000, 300_000}
    assert peak[500_000].stack_trace()[0][2] == line_of(full, "# A")
    assert len(leaks) == 1 and leaks[0].n_allocations == 1
    assert leaks[0].stack_trace()[0][2] == line_of(full, "# C")
    assert len(temps) == 1 and temps[0].n_allocations == 5
    assert temps[0].stack_trace()[0][2] == line_of(full, "# T")
    assert meta.peak_memory >= 800_000
    assert meta.total_allocations >= 8
    assert meta.file_format == FileFormat.ALL_ALLOCATIONS
    assert meta.pid > 0 and meta.python_allocator == "pymalloc"
    assert not meta.has_native_traces and not meta.trace_python_allocators


def test_frames_above_with_are_hidden_and_lines_exact(tmp_path: Path, testalloc: Path) -> None:
    code = """
    def gen():
        yield lib.ta_malloc(2001)  # GEN
        yield lib.ta_malloc(2002)  # GEN2

    def recurse(n):
        if n == 0:
            return lib.ta_malloc(2003)  # LEAF
        return recurse(n - 1)  # RECURSE

    def raiser():
        try:
            raise ValueError("x")
        except ValueError:
            return lib.ta_malloc(2004)  # EXCEPT

    async def coro():
        return lib.ta_malloc(2005)  # CORO

    def outer():
        with memray.Tracker("out.bin"):
            g = gen()
            keep = [next(g), next(g)]  # NEXT
            keep.append(recurse(3))  # CALL_RECURSE
            keep.append(raiser())  # CALL_RAISER
            import asyncio
            keep.append(asyncio.run(coro()))  # CALL_CORO
        return keep

    outer()
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    script = str(tmp_path / "prog.py")
    L = lambda m: line_of(full, m)
    with FileReader(tmp_path / "out.bin") as reader:
        leaks = {r.size: r.stack_trace() for r in reader.get_leaked_allocation_records()}
    assert leaks[2001] == [("gen", script, L("# GEN")), ("outer", script, L("# NEXT"))]
    assert leaks[2002] == [("gen", script, L("# GEN2")), ("outer", script, L("# NEXT"))]
    assert leaks[2003] == [("recurse", script, L("# LEAF"))] + [
        ("recurse", script, L("# RECURSE"))
    ] * 3 + [("outer", script, L("# CALL_RECURSE"))]
    assert leaks[2004] == [("raiser", script, L("# EXCEPT")), ("outer", script, L("# CALL_RAISER"))]
    coro_stack = leaks[2005]
    assert coro_stack[0] == ("coro", script, L("# CORO"))
    assert coro_stack[-1] == ("outer", script, L("# CALL_CORO"))


def test_threads_python_and_native(tmp_path: Path, testalloc: Path) -> None:
    code = """
    def work(n):
        keep.append(lib.ta_malloc(3000 + n))  # THREAD_ALLOC

    keep = []
    early = threading.Thread(target=lambda: (started.wait(), work(1)), name="early-bird")
    started = threading.Event()
    early.start()
    with memray.Tracker("out.bin"):
        started.set()
        early.join()
        late = threading.Thread(target=work, args=(2,), name="latecomer")
        late.start()
        late.join()
        lib.ta_run_pthread(3003, 1, b"native-w")
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    script = str(tmp_path / "prog.py")
    with FileReader(tmp_path / "out.bin") as reader:
        split = {r.size: r for r in reader.get_leaked_allocation_records(merge_threads=False)}
        merged = {r.size: r for r in reader.get_leaked_allocation_records(merge_threads=True)}
        main_tid = reader.metadata.main_thread_id
    assert split[3001].thread_name == "early-bird"
    assert split[3002].thread_name == "latecomer"
    assert split[3003].thread_name == "native-w"
    tids = {split[s].tid for s in (3001, 3002, 3003)}
    assert len(tids) == 3 and main_tid not in tids
    assert split[3001].stack_trace()[0] == ("work", script, line_of(full, "# THREAD_ALLOC"))
    assert split[3003].stack_trace() == []
    assert merged[3002].tid == -1 and merged[3002].thread_name == "merged thread"


def test_dlopen_after_start(tmp_path: Path, testalloc: Path, testalloc_copy: Path) -> None:
    code = f"""
    with memray.Tracker("out.bin"):
        late = ctypes.CDLL({str(testalloc_copy)!r})
        late.ta_malloc.restype = ctypes.c_void_p
        p = late.ta_malloc(4242)  # LATE
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    with FileReader(tmp_path / "out.bin") as reader:
        recs = [r for r in reader.get_leaked_allocation_records() if r.size == 4242]
    assert len(recs) == 1
    assert recs[0].allocator == AllocatorType.MALLOC
    assert recs[0].stack_trace()[0][2] == line_of(full, "# LATE")


def test_hooks_removed_after_stop(tmp_path: Path, testalloc: Path) -> None:
    code = """
    with memray.Tracker("out.bin"):
        lib.ta_malloc(5151)
    lib.ta_malloc(5252)
    with memray.Tracker("out2.bin"):
        lib.ta_malloc(5353)
    """
    run(code, tmp_path, testalloc)
    with FileReader(tmp_path / "out.bin") as reader:
        sizes = {r.size for r in reader.get_allocation_records()}
    assert 5151 in sizes and 5252 not in sizes and 5353 not in sizes
    with FileReader(tmp_path / "out2.bin") as reader:
        sizes = {r.size for r in reader.get_allocation_records()}
    assert 5353 in sizes and 5151 not in sizes and 5252 not in sizes


def test_trace_python_allocators(tmp_path: Path, testalloc: Path) -> None:
    code = """
    def make():
        return [object() for _ in range(10)]  # OBJS

    with memray.Tracker("out.bin", trace_python_allocators=True):
        keep = make()  # CALL
    with memray.Tracker("plain.bin"):
        keep2 = make()
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    # 3.12 inlines comprehensions into the function that runs them (PEP 709).
    comprehension = "<listcomp>" if sys.version_info < (3, 12) else "make"
    with FileReader(tmp_path / "out.bin") as reader:
        assert reader.metadata.trace_python_allocators
        recs = [
            r
            for r in reader.get_leaked_allocation_records()
            if r.allocator == AllocatorType.PYMALLOC_MALLOC
            and r.stack_trace()[:1]
            == [(comprehension, str(tmp_path / "prog.py"), line_of(full, "# OBJS"))]
        ]
    assert sum(r.n_allocations for r in recs) >= 10
    assert sum(r.size for r in recs) >= 10 * 16
    with FileReader(tmp_path / "plain.bin") as reader:
        allocators = {r.allocator for r in reader.get_allocation_records()}
    assert not allocators & {AllocatorType.PYMALLOC_MALLOC, AllocatorType.PYMALLOC_FREE}


def test_fork_follow_fork(tmp_path: Path, testalloc: Path) -> None:
    code = """
    with memray.Tracker("out.bin", follow_fork=True):
        lib.ta_malloc(6001)  # PARENT
        pid = os.fork()
        if pid == 0:
            lib.ta_malloc(6002)  # CHILD
            os._exit(0)
        os.waitpid(pid, 0)
        lib.ta_malloc(6003)
    print(pid)
    """
    proc = run(code, tmp_path, testalloc)
    child = int(proc.stdout.strip())
    with FileReader(tmp_path / "out.bin") as reader:
        parent_sizes = {r.size for r in reader.get_allocation_records()}
    assert {6001, 6003} <= parent_sizes and 6002 not in parent_sizes
    child_file = tmp_path / f"out.bin.{child}"
    assert child_file.exists()
    with FileReader(child_file) as reader:
        assert reader.metadata.pid == child
        child_recs = [r for r in reader.get_allocation_records() if r.size == 6002]
    assert len(child_recs) == 1
    assert child_recs[0].stack_trace()[0][2] == line_of(program(code), "# CHILD")


def test_fork_without_follow_fork_writes_only_parent(tmp_path: Path, testalloc: Path) -> None:
    code = """
    with memray.Tracker("out.bin"):
        pid = os.fork()
        if pid == 0:
            lib.ta_malloc(6102)
            os._exit(0)
        os.waitpid(pid, 0)
        lib.ta_malloc(6103)
    """
    run(code, tmp_path, testalloc)
    assert sorted(p.name for p in tmp_path.glob("out.bin*")) == ["out.bin"]
    with FileReader(tmp_path / "out.bin") as reader:
        sizes = {r.size for r in reader.get_allocation_records()}
    assert 6103 in sizes and 6102 not in sizes


def test_sigkill_mid_run_leaves_readable_capture(tmp_path: Path, testalloc: Path) -> None:
    code = """
    import time
    tracker = memray.Tracker("out.bin")
    tracker.__enter__()
    for i in range(1000):
        lib.ta_malloc(7000 + i)  # KILLED
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    time.sleep(60)
    """
    script = tmp_path / "prog.py"
    script.write_text(program(code))
    env = dict(os.environ, TESTALLOC=str(testalloc))
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    finally:
        proc.kill()
    with FileReader(tmp_path / "out.bin") as reader:
        sizes = sorted(r.size for r in reader.get_allocation_records() if 7000 <= r.size < 8000)
        leaked = [
            r
            for r in reader.get_leaked_allocation_records()
            if r.stack_trace()[:1]
            == [("<module>", str(script), line_of(program(code), "# KILLED"))]
        ]
    assert sizes == list(range(7000, 8000))
    assert len(leaked) == 1
    assert leaked[0].n_allocations == 1000
    assert leaked[0].size == sum(range(7000, 8000))


def test_aggregated_matches_all_allocations(tmp_path: Path, testalloc: Path) -> None:
    code = """
    def work():
        keep = []
        for i in range(50):
            keep.append(lib.ta_malloc(1000 + i))  # KEEP
            lib.ta_free(lib.ta_malloc(50_000))  # TEMP
        big = lib.ta_malloc(2_000_000)  # BIG
        lib.ta_free(big)
        return keep

    with memray.Tracker(sys.argv[1], file_format=memray.FileFormat[sys.argv[2]]):
        kept = work()
    """
    script = tmp_path / "prog.py"
    script.write_text(program(code))
    env = dict(os.environ, TESTALLOC=str(testalloc))
    for name, fmt in (("all.bin", "ALL_ALLOCATIONS"), ("agg.bin", "AGGREGATED_ALLOCATIONS")):
        subprocess.run(
            [sys.executable, str(script), name, fmt],
            cwd=tmp_path,
            env=env,
            check=True,
            timeout=TIMEOUT,
        )

    def summary(path: Path):
        with FileReader(path) as reader:
            hwm = sorted(
                (r.stack_trace(), r.allocator, r.size, r.n_allocations)
                for r in reader.get_high_watermark_allocation_records()
            )
            leaks = sorted(
                (r.stack_trace(), r.allocator, r.size, r.n_allocations)
                for r in reader.get_leaked_allocation_records()
            )
            return hwm, leaks, reader.metadata

    all_hwm, all_leaks, all_meta = summary(tmp_path / "all.bin")
    agg_hwm, agg_leaks, agg_meta = summary(tmp_path / "agg.bin")
    full = program(code)

    def mine(rows):
        # ta_malloc's blocks (a pymalloc arena, mapped at any line, is not
        # the program's own).
        return [r for r in rows if r[0] and r[0][0][0] == "work" and r[1] == AllocatorType.MALLOC]

    assert [(r[0][0][2], r[2], r[3]) for r in mine(agg_hwm)] == [
        (line_of(full, "# KEEP"), sum(1000 + i for i in range(50)), 50),
        (line_of(full, "# BIG"), 2_000_000, 1),
    ]
    assert [(r[0][0][2], r[2], r[3]) for r in mine(agg_leaks)] == [
        (line_of(full, "# KEEP"), sum(1000 + i for i in range(50)), 50),
    ]
    assert mine(all_hwm) == mine(agg_hwm)
    assert mine(all_leaks) == mine(agg_leaks)
    assert agg_meta.file_format == FileFormat.AGGREGATED_ALLOCATIONS
    assert agg_meta.peak_memory >= 2_000_000
    assert os.path.getsize(tmp_path / "agg.bin") < os.path.getsize(tmp_path / "all.bin")
    with FileReader(tmp_path / "agg.bin") as reader:
        with pytest.raises(NotImplementedError):
            list(reader.get_temporary_allocation_records())
        with pytest.raises(NotImplementedError):
            list(reader.get_allocation_records())
        assert (
            len(list(reader.get_memory_snapshots())) >= 1
        )  # one per interval: a short run has one


def test_memory_snapshots(tmp_path: Path, testalloc: Path) -> None:
    code = """
    import time
    with memray.Tracker("out.bin", memory_interval_ms=5):
        p = lib.ta_malloc(10_000_000)
        ctypes.memset(p, 1, 10_000_000)
        time.sleep(0.2)
    """
    run(code, tmp_path, testalloc)
    with FileReader(tmp_path / "out.bin") as reader:
        snaps = list(reader.get_memory_snapshots())
        meta = reader.metadata
    assert len(snaps) >= 10
    assert all(a.time <= b.time for a, b in zip(snaps, snaps[1:]))
    assert max(s.heap for s in snaps) >= 10_000_000
    assert max(s.rss for s in snaps) >= 10_000_000
    assert meta.end_time >= meta.start_time


@pytest.mark.parametrize("dest", ["compressed", "uncompressed", "buffered"])
def test_destinations(tmp_path: Path, testalloc: Path, dest: str) -> None:
    opts = {
        "compressed": "",
        "uncompressed": ", compress_on_exit=False",
        "buffered": ", buffered=True, compress_on_exit=False",
    }[dest]
    code = f"""
    with memray.Tracker(destination=memray.FileDestination("out.bin"{opts})):
        for i in range(2000):
            lib.ta_malloc(9000 + i)
    """
    run(code, tmp_path, testalloc)
    head = (tmp_path / "out.bin").read_bytes()[:4]
    assert (head == b"\x28\xb5\x2f\xfd") == (dest == "compressed")
    with FileReader(tmp_path / "out.bin") as reader:
        sizes = sorted(
            r.size
            for r in reader.get_allocation_records()
            if r.allocator == AllocatorType.MALLOC and 9000 <= r.size < 11000
        )
        leaked = [r for r in reader.get_leaked_allocation_records() if r.n_allocations == 2000]
    assert sizes == list(range(9000, 11000))
    assert len(leaked) == 1 and leaked[0].size == sum(range(9000, 11000))


def test_disk_full_keeps_program_running(tmp_path: Path, testalloc: Path) -> None:
    code = """
    import resource, warnings
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
    dest = memray.FileDestination("out.bin", compress_on_exit=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with memray.Tracker(destination=dest):
            for i in range(300_000):
                lib.ta_free(lib.ta_malloc(100 + i % 1000))
    print("survived", len(caught), caught[0].category.__name__ if caught else "")
    """
    proc = run(code, tmp_path, testalloc)
    assert proc.stdout.split() == ["survived", "1", "RuntimeWarning"]


def test_api_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        memray.Tracker()
    with pytest.raises(TypeError):
        memray.Tracker("a.bin", destination=memray.FileDestination("b.bin"))
    existing = tmp_path / "exists.bin"
    existing.write_bytes(b"x")
    with pytest.raises(FileExistsError):
        memray.Tracker(existing)
    with pytest.raises(RuntimeError):
        memray.Tracker(destination=memray.SocketDestination(server_port=1), follow_fork=True)
    with pytest.raises(RuntimeError):
        memray.Tracker(
            destination=memray.SocketDestination(server_port=1),
            file_format=FileFormat.AGGREGATED_ALLOCATIONS,
        )


def test_api_errors_while_tracking(tmp_path: Path, testalloc: Path) -> None:
    code = """
    t = memray.Tracker("one.bin")
    with t:
        try:
            with memray.Tracker("two.bin"):
                pass
        except RuntimeError as e:
            print("nested:", e)
    try:
        with t:
            pass
    except RuntimeError as e:
        print("reuse:", e)
    try:
        with memray.Tracker("/nonexistent-dir/x.bin"):
            pass
    except OSError as e:
        print("oserror:", e.filename)
    with memray.Tracker("three.bin"):
        pass
    print("ok")
    """
    proc = run(code, tmp_path, testalloc)
    out = proc.stdout
    assert "nested: No more than one Tracker" in out
    assert "reuse:" in out
    assert "oserror: /nonexistent-dir/x.bin" in out
    assert out.strip().endswith("ok")
    assert not (tmp_path / "two.bin").exists()


def test_injected_write_failure_keeps_program_running(tmp_path: Path, testalloc: Path) -> None:
    code = """
    import warnings
    from memray import _memray
    dest = memray.FileDestination("out.bin", compress_on_exit=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _memray._test_fail_writes_after(300)  # a test-only entry point, no variable
        with memray.Tracker(destination=dest):
            for i in range(2000):
                lib.ta_free(lib.ta_malloc(20_000 + i))
    print("survived", len(caught), "Input/output error" in str(caught[0].message))
    """
    proc = run_python(
        program(code),
        tmp_path,
        env={"TESTALLOC": str(testalloc)},
    )
    assert proc.stdout.split() == ["survived", "1", "True"]
    # What was written before the failure is still a readable capture.
    with FileReader(tmp_path / "out.bin") as reader:
        sizes = [r.size for r in reader.get_allocation_records() if r.size >= 20_000]
    assert 0 < len(sizes) < 300
    assert sizes == list(range(20_000, 20_000 + len(sizes)))


def test_native_thread_calling_into_python(tmp_path: Path, testalloc: Path) -> None:
    code = """
    keep = []

    def from_native_thread():
        keep.append(lib.ta_malloc(8181))  # CALLBACK

    CB = ctypes.CFUNCTYPE(None)
    cb = CB(from_native_thread)
    with memray.Tracker("out.bin"):
        lib.ta_call_in_pthread(cb)
    """
    run(code, tmp_path, testalloc)
    script = str(tmp_path / "prog.py")
    with FileReader(tmp_path / "out.bin") as reader:
        recs = [
            r for r in reader.get_leaked_allocation_records(merge_threads=False) if r.size == 8181
        ]
        main_tid = reader.metadata.main_thread_id
    assert len(recs) == 1
    assert recs[0].tid != main_tid
    assert recs[0].stack_trace() == [
        ("from_native_thread", script, line_of(program(code), "# CALLBACK"))
    ]


def test_many_forks_while_sampling_never_deadlock(tmp_path: Path, testalloc: Path) -> None:
    code = """
    pids = []
    child = False
    with memray.Tracker("out.bin", follow_fork=True, memory_interval_ms=1):
        for i in range(40):
            pid = os.fork()
            if pid == 0:
                child = True
                if i % 2:
                    lib.ta_malloc(7700 + i)
                    os._exit(0)
                break  # this child leaves the with block: its Tracker stops
            pids.append(pid)
    if child:
        os._exit(0)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
    print("parent", len(pids))
    """
    proc = run(code, tmp_path, testalloc, timeout=120)
    assert proc.stdout.split() == ["parent", "40"]
    children = sorted(tmp_path.glob("out.bin.*"))
    assert len(children) == 40
    for child in children:
        with FileReader(child) as reader:
            assert reader.metadata.pid == int(child.suffix[1:])


def test_trace_python_allocators_all_three_domains(tmp_path: Path, testalloc: Path) -> None:
    code = """
    api = ctypes.pythonapi
    DOMAINS = ("PyMem_Raw", "PyMem_", "PyObject_")
    for dom in DOMAINS:
        for fn, args in (("Malloc", [ctypes.c_size_t]),
                         ("Calloc", [ctypes.c_size_t, ctypes.c_size_t]),
                         ("Realloc", [ctypes.c_void_p, ctypes.c_size_t])):
            f = getattr(api, dom + fn)
            f.restype, f.argtypes = ctypes.c_void_p, args
        getattr(api, dom + "Free").argtypes = [ctypes.c_void_p]

    with memray.Tracker("out.bin", trace_python_allocators=True):
        keep = []
        for i, dom in enumerate(DOMAINS):
            p = getattr(api, dom + "Malloc")(41000 + i)  # MALLOC
            q = getattr(api, dom + "Calloc")(3, 13000 + i)  # CALLOC
            r = getattr(api, dom + "Realloc")(p, 52000 + i)  # REALLOC
            getattr(api, dom + "Free")(q)  # FREE
            keep.append(r)
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    script = str(tmp_path / "prog.py")
    with FileReader(tmp_path / "out.bin") as reader:
        recs = [
            (r.allocator, r.size, r.n_allocations, r.stack_trace())
            for r in reader.get_allocation_records()
            if r.size in {41000, 41001, 41002, 39000, 39003, 39006, 52000, 52001, 52002}
        ]
        leaks = {r.size: r.stack_trace() for r in reader.get_leaked_allocation_records()}
        frees = [
            r.size
            for r in reader.get_allocation_records()
            if r.allocator == AllocatorType.PYMALLOC_FREE
        ]
    expected = []
    for i in range(3):
        expected += [
            (
                AllocatorType.PYMALLOC_MALLOC,
                41000 + i,
                1,
                [("<module>", script, line_of(full, "# MALLOC"))],
            ),
            (
                AllocatorType.PYMALLOC_CALLOC,
                39000 + 3 * i,
                1,
                [("<module>", script, line_of(full, "# CALLOC"))],
            ),
            (
                AllocatorType.PYMALLOC_REALLOC,
                52000 + i,
                1,
                [("<module>", script, line_of(full, "# REALLOC"))],
            ),
        ]
    assert recs == expected
    # The three reallocated blocks stay, merged at their line.
    assert leaks[52000 + 52001 + 52002] == [("<module>", script, line_of(full, "# REALLOC"))]
    # Freed: the three calloc'ed blocks, and the three malloc'ed ones by realloc.
    assert len(frees) >= 6 and set(frees) == {0}
    # ctypes may keep a few small objects from the calloc line, not the blocks.
    calloc_line = [("<module>", script, line_of(full, "# CALLOC"))]
    assert sum(size for size, stack in leaks.items() if stack[:1] == calloc_line) < 13000


def test_greenlets_keep_their_own_stacks(tmp_path: Path, testalloc: Path) -> None:
    pytest.importorskip("greenlet", reason="greenlet is installed by the Makefile")
    code = """
    import greenlet

    def child(n):
        lib.ta_malloc(6100 + n)  # CHILD1
        main_g.switch()
        lib.ta_malloc(6200 + n)  # CHILD2

    def spawn(n):
        g = greenlet.greenlet(child)
        g.switch(n)  # SPAWN
        return g

    main_g = greenlet.getcurrent()
    with memray.Tracker("out.bin"):
        gs = [spawn(n) for n in range(2)]
        lib.ta_malloc(6300)  # BETWEEN
        for g in gs:
            g.switch()  # RESUME
    """
    run(code, tmp_path, testalloc)
    full = program(code)
    script = str(tmp_path / "prog.py")
    L = lambda m: line_of(full, m)
    with FileReader(tmp_path / "out.bin") as reader:
        stacks = {
            r.size: r.stack_trace()
            for r in reader.get_allocation_records()
            if r.allocator == AllocatorType.MALLOC
        }
    # A greenlet's first frame starts its own stack: what switched to it is
    # not its caller.
    for n in range(2):
        assert stacks[6100 + n] == [("child", script, L("# CHILD1"))]
        assert stacks[6200 + n] == [("child", script, L("# CHILD2"))]
    assert stacks[6300] == [("<module>", script, L("# BETWEEN"))]


def test_thread_renamed_after_start_names_what_follows(tmp_path: Path, testalloc: Path) -> None:
    code = """
    from memray._test import MemoryAllocator

    original = threading.Thread.name
    a = MemoryAllocator()

    def work():
        threading.current_thread().name = "renamed"
        a.malloc(9002)  # AFTER

    with memray.Tracker("out.bin"):
        t = threading.Thread(target=work, name="first")
        t.start()
        t.join()
    assert threading.Thread.name is original  # the standard property again
    """
    run(code, tmp_path, testalloc)
    with FileReader(tmp_path / "out.bin") as reader:
        recs = [r for r in reader.get_allocation_records() if r.size == 9002]
    assert [r.thread_name for r in recs] == ["renamed"]
