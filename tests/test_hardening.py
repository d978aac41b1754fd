"""Bad input gets a clear error, never a wrong answer, a hang or a crash
(issue 14's findings, each with the test that showed it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TIMEOUT, line_of, run_python

from memray import AllocatorType, FileReader


@pytest.fixture(scope="module")
def small_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("small")
    code = """
    import memray
    from memray._test import MemoryAllocator

    a = MemoryAllocator()
    with memray.Tracker("out.bin"):
        for _ in range(3):
            a.malloc(4321)
            a.free()
    """
    run_python(code, where)
    return where / "out.bin"


def test_temporary_threshold_too_large_is_an_overflow(small_capture: Path) -> None:
    with FileReader(small_capture) as reader:
        biggest = list(reader.get_temporary_allocation_records(threshold=2**64 - 1))
        assert [(r.size, r.n_allocations) for r in biggest if r.size == 4321 * 3] == [(4321 * 3, 3)]
        # Not wrapped around to 0.
        with pytest.raises(OverflowError):
            list(reader.get_temporary_allocation_records(threshold=2**64))
        with pytest.raises(OverflowError):
            list(reader.get_temporary_allocation_records(threshold=2**70))
    proc = subprocess.run(
        [sys.executable, "-m", "memray", "flamegraph", "--temporary-allocation-threshold",
         str(2**64), "-o", str(small_capture.parent / "x.html"), str(small_capture)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].endswith(
        f"argument --temporary-allocation-threshold: too large: at most {2**64 - 1}, not {2**64}"
    )
    assert not (small_capture.parent / "x.html").exists()


def test_format_document_lists_the_record_types_the_reader_knows(tmp_path: Path) -> None:
    """docs/format.rst's table of record types agrees with format.h, and every
    tag it calls unknown is refused by the reader as corrupt."""
    from capture_builder import CaptureBuilder, tag, uvarint
    from rst_blocks import list_tables

    root = Path(__file__).resolve().parent.parent
    rows = list_tables(root / "docs" / "format.rst")["Record types"][1:]
    header = (root / "src" / "memray" / "_core" / "format.h").read_text()
    known = {
        int(value, 16): name
        for name, value in re.findall(r"MR_REC_(\w+) = (0x[0-9A-Fa-f]+)", header)
    }
    documented, unknown = {}, []
    for row in rows:
        first, _, last = row[0].partition("–")
        name = row[1]
        lo, hi = int(first, 16), int(last or first, 16)
        for t in range(lo, hi + 1):
            if name == "—":
                unknown.append(t)
            else:
                assert t not in documented, f"tag {t:#x} documented twice"
                documented[t] = name
    assert documented == known
    assert sorted(unknown) == [t for t in range(16) if t not in known]
    for t in unknown:
        b = CaptureBuilder()
        b.raw(tag(t) + uvarint(0))
        path = b.write(tmp_path / f"tag{t}.bin")
        with pytest.raises(OSError, match=f"unknown record tag {t:#04x}"):
            with FileReader(path) as reader:
                list(reader.get_allocation_records())


def test_compression_failure_says_the_capture_is_complete(tmp_path: Path) -> None:
    # The capture is written whole; only the compressed copy made at exit
    # cannot be (here its temporary file's name is taken by a folder, as
    # deterministic a stand-in as a full disk).
    (tmp_path / "out.bin.zst-tmp").mkdir()
    code = """
    import warnings
    import memray
    from memray._test import MemoryAllocator

    a = MemoryAllocator()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with memray.Tracker("out.bin"):
            for i in range(2000):
                a.malloc(100 + i)
                a.free()
    for w in caught:
        print(w.category.__name__, w.message)
    """
    proc = run_python(code, tmp_path)
    assert proc.stdout.splitlines() == [
        "RuntimeWarning memray could not compress out.bin (Is a directory); "
        "the capture is complete, and left uncompressed"
    ]
    line = line_of(code, "a.malloc(100 + i)")
    with FileReader(tmp_path / "out.bin") as reader:
        sizes = [
            r.size
            for r in reader.get_allocation_records()
            if r.allocator == AllocatorType.MALLOC
            and r.size >= 100
            and r.stack_trace()[0][2] == line
        ]
    assert sizes == [100 + i for i in range(2000)]


def test_paths_in_a_capture_never_open_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """MAPPINGS and CODE records name files; symbolizing and source lines
    open them only when they are regular files: a FIFO would block forever,
    /dev/zero would never end."""
    from capture_builder import FLAG_NATIVE, MALLOC, CaptureBuilder

    fifo = tmp_path / "libfifo.so"
    os.mkfifo(fifo)
    source_fifo = tmp_path / "src.py"
    os.mkfifo(source_fifo)
    b = CaptureBuilder(flags=FLAG_NATIVE)
    b.mappings(
        1,
        [
            (str(fifo), 0x400000, 0x400000, 0x500000, b""),
            ("/dev/zero", 0x600000, 0x600000, 0x700000, b""),
            ("/proc/self/fd/0", 0x800000, 0x800000, 0x900000, b""),
        ],
    )
    stack = b.stack(("f", str(source_fifo), 3), ("g", "/dev/zero", 1))
    n1 = b.native_node(0, 0x400100)
    n2 = b.native_node(n1, 0x600100)
    n3 = b.native_node(n2, 0x800100)
    b.alloc(1, MALLOC, 0x1000, 100, stack, n3)
    b.trailer(10, 1, 100)
    capture = b.write(tmp_path / "hostile.bin")
    code = f"""
    import memray
    with memray.FileReader({str(capture)!r}) as reader:
        (record,) = reader.get_leaked_allocation_records()
        print(len(record.native_stack_trace()), len(record.hybrid_stack_trace()))
    """
    # stdin is a pipe no one writes: /proc/self/fd/0 must not be read either.
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "5"]
    for reporter in ("flamegraph", "table"):
        out = tmp_path / f"{reporter}.html"
        proc = subprocess.run(
            [sys.executable, "-m", "memray", reporter, "-o", str(out), str(capture)],
            stdin=subprocess.PIPE, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert out.exists()


def test_mappings_of_empty_objects_cost_no_reader_memory(tmp_path: Path) -> None:
    """MAPPINGS records claiming a million objects that cover no address
    (5 bytes each on disk) once took 20-30 times their size in memory."""
    from capture_builder import FLAG_NATIVE, MALLOC, REC_MAPPINGS, CaptureBuilder, tag, uvarint

    count = 1 << 20
    b = CaptureBuilder(flags=FLAG_NATIVE)
    for gen in range(1, 13):
        b.raw(tag(REC_MAPPINGS) + uvarint(gen) + uvarint(count) + bytes(5 * count))
    b.mappings(13, [("/nonexistent/libx.so", 0x400000, 0x400000, 0x500000, b"")])
    native = b.native_node(0, 0x400100)
    b.alloc(1, MALLOC, 0x1000, 100, 0, native)
    b.trailer(10, 1, 100)
    capture = b.write(tmp_path / "empty-objects.bin")
    assert capture.stat().st_size > 60 << 20
    code = f"""
    import resource
    import memray
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with memray.FileReader({str(capture)!r}) as reader:
        (record,) = reader.get_leaked_allocation_records()
        frames = record.native_stack_trace()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(len(frames), frames[0][1], grown // 1024)
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    n_frames, file, grown_mib = proc.stdout.split()
    assert (n_frames, file) == ("1", "/nonexistent/libx.so")
    assert int(grown_mib) < 64  # the capture is over 60 MiB; it was 1.25 GB to read


def test_no_environment_variable_injects_faults(tmp_path: Path) -> None:
    """Fault injection is reached only through a test-only function; the
    variable that once armed it in every build does nothing."""
    code = """
    import warnings
    import memray
    from memray._test import MemoryAllocator

    a = MemoryAllocator()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with memray.Tracker("out.bin"):
            for i in range(500):
                a.malloc(30_000 + i)
                a.free()
    print(len(caught))
    """
    proc = run_python(code, tmp_path, env={"MEMRAY_TEST_FAIL_WRITE_AFTER": "3"})
    assert proc.stdout.split() == ["0"]
    with FileReader(tmp_path / "out.bin") as reader:
        sizes = [r.size for r in reader.get_allocation_records() if 30_000 <= r.size < 30_500]
    assert sizes == list(range(30_000, 30_500))


def test_invariant_checks_are_compiled_in_only_for_checked_builds() -> None:
    # check.h's asserts are on in the sanitizer build `make test-asan` runs
    # this suite with, and compiled out of the release build users get.
    from memray import _memray

    assert _memray._checks == (os.environ.get("MEMRAY_TEST_ASAN") == "1")
