"""The Python reader API (memray._reader) on capture files built byte by byte
(tests/capture_builder.py): exact grouped records, stacks, threads merged and
split, metadata, snapshots, temporal views, statistics, the record dump, and
the exceptions bad files raise."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from capture_builder import (
    CALLOC,
    FLAG_AGGREGATED,
    FLAG_NATIVE,
    FLAG_PYALLOC,
    FREE,
    MALLOC,
    MMAP,
    MUNMAP,
    PYMALLOC_FREE,
    PYMALLOC_MALLOC,
    START_MS,
    CaptureBuilder,
    tag,
    uvarint,
    zstd_compress,
)

from memray._enums import AllocatorType, FileFormat
from memray._reader import (
    AllocationRecord,
    FileReader,
    Interval,
    MemorySnapshot,
    Metadata,
    TemporalAllocationRecord,
    compute_statistics,
    dump_all_records,
)

WORK = ("work", "prog.py", 20)
MAIN10 = ("main", "prog.py", 10)
HELPER = ("helper", "lib.py", 5)
MAIN11 = ("main", "prog.py", 11)

# Records without a stack: asking them for one raises NotImplementedError.
DEALLOCATORS = {AllocatorType.FREE, AllocatorType.MUNMAP, AllocatorType.PYMALLOC_FREE}


def build_sample(**kwargs) -> tuple[CaptureBuilder, int, int]:
    """Two threads, two stacks, three snapshots; the heap peaks at 3800."""
    b = CaptureBuilder(main_tid=100, **kwargs)
    s_main = b.stack(MAIN10, WORK)
    s_other = b.stack(MAIN11, HELPER)
    b.thread_name(100, "MainThread")
    b.thread_name(200, "worker-1")
    b.alloc(100, MALLOC, 0x1000, 1000, s_main)
    b.alloc(200, MALLOC, 0x2000, 500, s_main)
    b.memory(10, 10_000)  # heap 1500
    b.alloc(100, CALLOC, 0x3000, 300, s_other)
    b.alloc(200, MALLOC, 0x4000, 2000, s_main)  # heap 3800: the peak
    b.free(100, FREE, 0x1000)
    b.memory(20, 20_000)  # heap 2800
    b.free(200, FREE, 0x4000)
    b.alloc(100, PYMALLOC_MALLOC, 0x5000, 64, s_other)
    b.free(100, PYMALLOC_FREE, 0x5000)
    b.memory(30, 30_000)  # heap 800
    return b, s_main, s_other


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, int, int]:
    b, s_main, s_other = build_sample()
    b.trailer(35, 5, 3800)
    return b.write(tmp_path / "sample.bin"), s_main, s_other


def by_key(records, *, tid: bool = False) -> dict:
    out = {}
    for r in records:
        key = (r.tid, r.allocator, r.stack_id) if tid else (r.allocator, r.stack_id)
        assert key not in out
        out[key] = (r.n_allocations, r.size)
    return out


# ---- grouped records -----------------------------------------------------------


def test_high_watermark_merged(sample) -> None:
    path, s_main, s_other = sample
    with FileReader(path) as reader:
        records = list(reader.get_high_watermark_allocation_records())
    assert by_key(records) == {
        (AllocatorType.MALLOC, s_main): (3, 3500),
        (AllocatorType.CALLOC, s_other): (1, 300),
    }
    for r in records:
        assert isinstance(r, AllocationRecord)
        assert r.tid == -1
        assert r.thread_name == "merged thread"
        assert r.native_stack_id == 0
        assert r.native_segment_generation == 0
        assert isinstance(r.allocator, AllocatorType)
    main = next(r for r in records if r.stack_id == s_main)
    assert main.stack_trace() == [WORK, MAIN10]
    assert main.stack_trace(max_stacks=1) == [WORK]
    assert main.stack_trace(0) == []
    assert main.native_stack_trace() == []
    assert main.hybrid_stack_trace() == [WORK, MAIN10]


def test_high_watermark_split_threads(sample) -> None:
    path, s_main, s_other = sample
    with FileReader(path) as reader:
        records = list(reader.get_high_watermark_allocation_records(merge_threads=False))
    assert by_key(records, tid=True) == {
        (100, AllocatorType.MALLOC, s_main): (1, 1000),
        (200, AllocatorType.MALLOC, s_main): (2, 2500),
        (100, AllocatorType.CALLOC, s_other): (1, 300),
    }
    names = {r.tid: r.thread_name for r in records}
    assert names == {100: "MainThread", 200: "worker-1"}


def test_leaked_records(sample) -> None:
    path, s_main, s_other = sample
    with FileReader(path) as reader:
        merged = list(reader.get_leaked_allocation_records())
        split = list(reader.get_leaked_allocation_records(merge_threads=False))
    assert by_key(merged) == {
        (AllocatorType.MALLOC, s_main): (1, 500),
        (AllocatorType.CALLOC, s_other): (1, 300),
    }
    assert by_key(split, tid=True) == {
        (200, AllocatorType.MALLOC, s_main): (1, 500),
        (100, AllocatorType.CALLOC, s_other): (1, 300),
    }


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (0, {"MALLOC": (1, 2000), "PYMALLOC_MALLOC": (1, 64)}),
        (1, {"MALLOC": (2, 3000), "PYMALLOC_MALLOC": (1, 64)}),
        (5, {"MALLOC": (2, 3000), "PYMALLOC_MALLOC": (1, 64)}),
    ],
)
def test_temporary_records(sample, threshold: int, expected: dict) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        records = list(reader.get_temporary_allocation_records(threshold=threshold))
    assert {r.allocator.name: (r.n_allocations, r.size) for r in records} == expected
    assert all(r.tid == -1 for r in records)


def test_temporary_records_split_and_default_threshold(sample) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        records = list(reader.get_temporary_allocation_records(merge_threads=False))
        with pytest.raises(ValueError):
            list(reader.get_temporary_allocation_records(threshold=-1))
    got = {(r.tid, r.allocator.name): (r.n_allocations, r.size) for r in records}
    assert got == {
        (100, "MALLOC"): (1, 1000),
        (200, "MALLOC"): (1, 2000),
        (100, "PYMALLOC_MALLOC"): (1, 64),
    }
    assert {r.tid: r.thread_name for r in records} == {100: "MainThread", 200: "worker-1"}


def test_every_allocation_record_in_order(sample) -> None:
    path, s_main, s_other = sample
    with FileReader(path) as reader:
        records = reader.get_allocation_records()
        assert iter(records) is records  # a generator, read lazily
        got = [
            (r.tid, r.address, r.size, r.allocator, r.n_allocations, r.stack_id) for r in records
        ]
    assert got == [
        (100, 0x1000, 1000, AllocatorType.MALLOC, 1, s_main),
        (200, 0x2000, 500, AllocatorType.MALLOC, 1, s_main),
        (100, 0x3000, 300, AllocatorType.CALLOC, 1, s_other),
        (200, 0x4000, 2000, AllocatorType.MALLOC, 1, s_main),
        (100, 0x1000, 0, AllocatorType.FREE, 1, 0),
        (200, 0x4000, 0, AllocatorType.FREE, 1, 0),
        (100, 0x5000, 64, AllocatorType.PYMALLOC_MALLOC, 1, s_other),
        (100, 0x5000, 0, AllocatorType.PYMALLOC_FREE, 1, 0),
    ]


def test_raw_records_stacks_and_threads(sample) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        records = list(reader.get_allocation_records())
    assert records[0].stack_trace() == [WORK, MAIN10]
    assert records[2].stack_trace() == [HELPER, MAIN11]
    # A free has no stack, and asking for one says so (as memray 1.x).
    for method in ("stack_trace", "native_stack_trace", "hybrid_stack_trace"):
        with pytest.raises(NotImplementedError, match="deallocations aren't captured"):
            getattr(records[4], method)()
    assert [r.thread_name for r in records[:2]] == ["MainThread", "worker-1"]


# ---- metadata and snapshots ------------------------------------------------------


def test_metadata(sample) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        md = reader.metadata
    assert isinstance(md, Metadata)
    assert md.start_time == datetime.fromtimestamp(START_MS / 1000).astimezone()
    assert md.end_time - md.start_time == timedelta(milliseconds=35)
    assert md.start_time.tzinfo is not None
    assert md.total_allocations == 8  # records, frees included (as memray 1.x)
    assert md.total_frames == 4
    assert md.peak_memory == 3800
    assert md.command_line == "python prog.py"
    assert md.pid == 4321
    assert md.main_thread_id == 100
    assert md.python_allocator == "pymalloc"
    assert md.has_native_traces is False
    assert md.trace_python_allocators is False
    assert md.file_format == FileFormat.ALL_ALLOCATIONS
    with pytest.raises(AttributeError):
        md.pid = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "code, name", [(0, "pymalloc"), (1, "pymalloc debug"), (2, "malloc"), (3, "other")]
)
def test_metadata_python_allocator_and_flags(tmp_path: Path, code: int, name: str) -> None:
    b = CaptureBuilder(
        python_allocator=code, flags=FLAG_NATIVE | FLAG_PYALLOC, command_line="python -c 'x'"
    )
    path = b.write(tmp_path / "c.bin")
    with FileReader(path) as reader:
        md = reader.metadata
    assert md.python_allocator == name
    assert md.has_native_traces is True
    assert md.trace_python_allocators is True
    assert md.command_line == "python -c 'x'"
    # Nothing after the header: a capture cut off at once still has metadata.
    assert md.end_time == md.start_time
    assert md.total_allocations == 0
    assert md.peak_memory == 0


def test_end_time_without_trailer_is_last_snapshot(tmp_path: Path) -> None:
    b, _, _ = build_sample()
    path = b.write(tmp_path / "cut.bin")
    with FileReader(path) as reader:
        md = reader.metadata
        assert md.end_time - md.start_time == timedelta(milliseconds=30)
        assert md.total_allocations == 8
        assert md.peak_memory == 3800


def test_memory_snapshots_carry_heap(sample) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        snaps = list(reader.get_memory_snapshots())
    assert snaps == [
        MemorySnapshot(START_MS + 10, 10_000, 1500),
        MemorySnapshot(START_MS + 20, 20_000, 2800),
        MemorySnapshot(START_MS + 30, 30_000, 800),
    ]
    assert snaps[0].time == START_MS + 10 and snaps[0].rss == 10_000 and snaps[0].heap == 1500


def test_max_memory_records_thins_snapshots(tmp_path: Path) -> None:
    b = CaptureBuilder()
    for i in range(10):
        b.alloc(1, MALLOC, 0x1000 + i * 0x100, 10)
        b.memory(i, 1000 + i)
    path = b.write(tmp_path / "many.bin")
    with FileReader(path, max_memory_records=4) as reader:
        snaps = list(reader.get_memory_snapshots())
        # ceil(10 / 4) = 3: snapshots 0, 3, 6, 9
        assert [s.rss for s in snaps] == [1000, 1003, 1006, 1009]
        assert [s.heap for s in snaps] == [10, 40, 70, 100]
        # Only the kept snapshots cut intervals.
        records = list(reader.get_temporal_allocation_records())
        assert [tuple(i) for i in records[0].intervals] == [
            (0, None, 1, 10),
            (1, None, 3, 30),
            (2, None, 3, 30),
            (3, None, 3, 30),
        ]
    with pytest.raises(ValueError):
        FileReader(path, max_memory_records=0)


# ---- temporal views ----------------------------------------------------------------


def test_temporal_allocation_records(sample) -> None:
    path, s_main, s_other = sample
    with FileReader(path) as reader:
        records = list(reader.get_temporal_allocation_records())
    assert all(isinstance(r, TemporalAllocationRecord) for r in records)
    got = {(r.allocator, r.stack_id): r.intervals for r in records}
    assert got == {
        (AllocatorType.MALLOC, s_main): [
            Interval(0, 1, 1, 1000),
            Interval(0, None, 1, 500),
            Interval(1, 2, 1, 2000),
        ],
        (AllocatorType.CALLOC, s_other): [Interval(1, None, 1, 300)],
    }
    main = next(r for r in records if r.stack_id == s_main)
    assert main.tid == -1 and main.thread_name == "merged thread"
    assert main.stack_trace() == [WORK, MAIN10]
    iv = main.intervals[1]
    assert iv.allocated_before_snapshot == 0 and iv.deallocated_before_snapshot is None
    assert iv.n_allocations == 1 and iv.n_bytes == 500
    assert main.n_allocations == 3 and main.size == 3500


def test_temporal_allocation_records_split(sample) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        records = list(reader.get_temporal_allocation_records(merge_threads=False))
    got = {(r.tid, r.allocator.name): r.intervals for r in records}
    assert got == {
        (100, "MALLOC"): [Interval(0, 1, 1, 1000)],
        (200, "MALLOC"): [Interval(0, None, 1, 500), Interval(1, 2, 1, 2000)],
        (100, "CALLOC"): [Interval(1, None, 1, 300)],
    }
    assert {r.tid: r.thread_name for r in records} == {100: "MainThread", 200: "worker-1"}


def test_temporal_high_water_mark(sample) -> None:
    path, s_main, s_other = sample
    with FileReader(path) as reader:
        records, peaks = reader.get_temporal_high_water_mark_allocation_records()
    assert peaks == [1500, 3800, 2800, 800]
    got = {(r.allocator, r.stack_id): r.intervals for r in records}
    assert got == {
        (AllocatorType.MALLOC, s_main): [
            Interval(0, 1, 2, 1500),
            Interval(1, 2, 3, 3500),
            Interval(2, 3, 2, 2500),
            Interval(3, None, 1, 500),
        ],
        (AllocatorType.CALLOC, s_other): [Interval(1, None, 1, 300)],
    }


# ---- statistics and the dump -------------------------------------------------------


def test_compute_statistics(sample) -> None:
    path, _, _ = sample
    stats = compute_statistics(path, num_largest=5)
    assert stats.total_num_allocations == 5
    assert stats.total_memory_allocated == 3864
    assert stats.peak_memory_allocated == 3800
    assert stats.allocation_count_by_size == {1000: 1, 500: 1, 300: 1, 2000: 1, 64: 1}
    assert stats.allocation_count_by_allocator == {
        "MALLOC": 3,
        "CALLOC": 1,
        "PYMALLOC_MALLOC": 1,
    }
    assert stats.top_locations_by_size == [(WORK, 3500), (HELPER, 364)]
    assert stats.top_locations_by_count == [(WORK, 3), (HELPER, 2)]
    assert stats.metadata.total_allocations == 8
    assert stats.metadata.peak_memory == 3800
    assert stats.metadata.end_time - stats.metadata.start_time == timedelta(milliseconds=35)
    assert compute_statistics(path, num_largest=1).top_locations_by_count == [(WORK, 3)]


def test_statistics_merge_equal_locations(tmp_path: Path) -> None:
    # Two code objects with the same name and file (a module executed twice)
    # are one location to the reader.
    b = CaptureBuilder()
    c1 = b.code("f", "m.py", 1)
    c2 = b.code("f", "m.py", 1)
    n1 = b.node(0, b.frame(c1, 3))
    n2 = b.node(0, b.frame(c2, 3))
    b.alloc(1, MALLOC, 0x10, 10, n1)
    b.alloc(1, MALLOC, 0x20, 20, n2)
    b.alloc(1, MALLOC, 0x30, 5, 0)
    stats = compute_statistics(b.write(tmp_path / "s.bin"))
    assert stats.top_locations_by_size == [
        (("f", "m.py", 3), 30),
        (("<unknown>", "<unknown>", 0), 5),
    ]


def test_dump_all_records(sample, capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = sample
    dump_all_records(path)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("HEADER version=1 flags=0x0 python_allocator=0 pid=4321")
    assert lines[0].endswith('command_line="python prog.py"')
    assert 'CODE id=2 function="work" file="prog.py" first_line=1' in lines
    assert "FRAME id=2 code=2 line=20" in lines
    assert "NODE id=1 parent=0 frame=1 entry=1" in lines
    assert 'THREAD_NAME tid=200 name="worker-1"' in lines
    assert "THREAD tid=100" in lines
    assert "ALLOC tid=100 allocator=malloc address=0x1000 size=1000 stack=2" in lines
    assert "FREE tid=100 allocator=pymalloc_free address=0x5000" in lines
    assert "MEMORY ms=20 rss=20000" in lines
    assert lines[-1] == "TRAILER ms=35 total_allocations=5 peak_bytes=3800 flags=0x0"
    # HEADER, 3 CODE, 4 FRAME, 4 NODE, 2 THREAD_NAME, 7 THREAD, 5 ALLOC, 3 FREE,
    # 3 MEMORY, TRAILER
    assert len(lines) == 1 + 3 + 4 + 4 + 2 + 7 + 5 + 3 + 3 + 1


# ---- aggregated captures -------------------------------------------------------------


@pytest.fixture
def aggregated(tmp_path: Path) -> tuple[Path, int]:
    b = CaptureBuilder(flags=FLAG_AGGREGATED)
    s = b.stack(MAIN10, WORK)
    b.thread_name(7, "t7")
    b.memory(5, 1000, heap=600)
    b.memory(9, 2000, heap=900)
    b.agg(7, MALLOC, s, 0, 2, 600, 1, 100)
    b.agg(8, MALLOC, s, 0, 1, 300, 0, 0)
    b.agg(8, CALLOC, 0, 0, 0, 0, 3, 30)
    b.trailer(12, 42, 900)
    return b.write(tmp_path / "agg.bin"), s


def test_aggregated_capture(aggregated) -> None:
    path, s = aggregated
    with FileReader(path) as reader:
        md = reader.metadata
        assert md.file_format == FileFormat.AGGREGATED_ALLOCATIONS
        assert md.total_allocations == 42
        assert md.peak_memory == 900
        assert md.end_time - md.start_time == timedelta(milliseconds=12)
        assert [s.heap for s in reader.get_memory_snapshots()] == [600, 900]
        peak = by_key(reader.get_high_watermark_allocation_records())
        assert peak == {(AllocatorType.MALLOC, s): (3, 900)}
        split = by_key(reader.get_high_watermark_allocation_records(merge_threads=False), tid=True)
        assert split == {
            (7, AllocatorType.MALLOC, s): (2, 600),
            (8, AllocatorType.MALLOC, s): (1, 300),
        }
        leaks = by_key(reader.get_leaked_allocation_records())
        assert leaks == {(AllocatorType.MALLOC, s): (1, 100), (AllocatorType.CALLOC, 0): (3, 30)}
        rec = next(iter(reader.get_high_watermark_allocation_records(merge_threads=False)))
        assert rec.thread_name == "t7"
        assert rec.stack_trace() == [WORK, MAIN10]
        with pytest.raises(NotImplementedError):
            list(reader.get_temporary_allocation_records())
        with pytest.raises(NotImplementedError):
            list(reader.get_allocation_records())
        with pytest.raises(NotImplementedError):
            list(reader.get_temporal_allocation_records())
        with pytest.raises(NotImplementedError):
            reader.get_temporal_high_water_mark_allocation_records()
    with pytest.raises(NotImplementedError):
        compute_statistics(path)


# ---- files in other shapes -------------------------------------------------------------


def test_compressed_capture_reads_identically(tmp_path: Path) -> None:
    b, _, _ = build_sample()
    b.trailer(35, 5, 3800)
    plain = b.write(tmp_path / "plain.bin")
    packed = b.write(tmp_path / "packed.bin", compress=True)
    assert packed.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"

    def everything(path: Path) -> tuple:
        with FileReader(path) as reader:
            return (
                reader.metadata,
                list(reader.get_memory_snapshots()),
                sorted(
                    (r.tid, r.allocator, r.stack_id, r.size, r.n_allocations)
                    for r in reader.get_high_watermark_allocation_records(False)
                ),
                [(r.tid, r.address, r.size, r.allocator) for r in reader.get_allocation_records()],
                [(r.stack_id, r.intervals) for r in reader.get_temporal_allocation_records()],
            )

    assert everything(plain) == everything(packed)
    assert compute_statistics(plain) == compute_statistics(packed)
    # Several concatenated frames read as one stream.
    data = b.data()
    half = len(data) // 2
    split = tmp_path / "split.bin"
    split.write_bytes(zstd_compress(data[:half]) + zstd_compress(data[half:]))
    assert everything(split) == everything(plain)


def test_truncated_capture_reads_up_to_last_record(tmp_path: Path) -> None:
    b, s_main, _ = build_sample()
    data = b.data()
    # Cut inside the first MEMORY record (tag, ms 10, rss 10000 in two bytes).
    cut_at = data.index(bytes([0x08]) + uvarint(10) + uvarint(10_000)) + 3
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:cut_at])
    with FileReader(cut) as reader:
        assert reader.metadata.total_allocations == 2
        assert list(reader.get_memory_snapshots()) == []
        assert by_key(reader.get_leaked_allocation_records()) == {
            (AllocatorType.MALLOC, s_main): (2, 1500)
        }
    # Zero fill after the last record (a killed writer's file) is the end too.
    zeroed = tmp_path / "zero.bin"
    zeroed.write_bytes(data + bytes(4096) + data[-20:])
    with FileReader(zeroed) as reader:
        assert reader.metadata.total_allocations == 8
        assert len(list(reader.get_allocation_records())) == 8


def test_munmap_and_mmap(tmp_path: Path) -> None:
    b = CaptureBuilder()
    s = b.stack(MAIN10)
    b.alloc(1, MMAP, 0x100000, 3 * 4096, s)
    b.free(1, MUNMAP, 0x100000, 4096)
    path = b.write(tmp_path / "m.bin")
    with FileReader(path) as reader:
        assert by_key(reader.get_high_watermark_allocation_records()) == {
            (AllocatorType.MMAP, s): (1, 3 * 4096)
        }
        assert by_key(reader.get_leaked_allocation_records()) == {
            (AllocatorType.MMAP, s): (1, 2 * 4096)
        }
        frees = [r for r in reader.get_allocation_records() if r.allocator == AllocatorType.MUNMAP]
        assert [(f.address, f.size) for f in frees] == [(0x100000, 4096)]


def test_native_stacks_without_symbols(tmp_path: Path) -> None:
    b = CaptureBuilder(flags=FLAG_NATIVE)
    s = b.stack(MAIN10)
    n1 = b.native_node(0, 0x1111)
    n2 = b.native_node(n1, 0x2222)
    b.alloc(1, MALLOC, 0x10, 8, s, n2)
    b.alloc(1, MALLOC, 0x20, 8, s, 0)
    path = b.write(tmp_path / "n.bin")
    with FileReader(path) as reader:
        recs = list(reader.get_allocation_records())
    assert recs[0].native_stack_id == n2
    # No MAPPINGS: the addresses resolve to no object, one frame each.
    native = recs[0].native_stack_trace()
    assert len(native) == 2
    assert all(len(f) == 3 and f[2] == 0 for f in native)
    assert len(recs[0].native_stack_trace(max_stacks=1)) == 1
    assert recs[1].native_stack_trace() == []
    assert recs[1].hybrid_stack_trace() == [MAIN10]


def test_unusual_strings_are_kept_or_replaced(tmp_path: Path) -> None:
    b = CaptureBuilder(command_line="python \u00e9t\u00e9.py")
    code = b.code("f\u00fcr<script>", "d\u00e9j\u00e0/\n.py", 1)
    node = b.node(0, b.frame(code, 2))
    b.thread_name(1, b"bad \xff\xfe utf-8")
    b.alloc(1, MALLOC, 0x10, 8, node)
    path = b.write(tmp_path / "u.bin")
    with FileReader(path) as reader:
        assert reader.metadata.command_line == "python \u00e9t\u00e9.py"
        (rec,) = reader.get_leaked_allocation_records(merge_threads=False)
        assert rec.stack_trace() == [("f\u00fcr<script>", "d\u00e9j\u00e0/\n.py", 2)]
        assert rec.thread_name == "bad \ufffd\ufffd utf-8"


def test_thread_rename_uses_latest_name(tmp_path: Path) -> None:
    b = CaptureBuilder()
    b.thread_name(5, "first")
    b.alloc(5, MALLOC, 0x10, 8)
    b.thread_name(5, "second")
    path = b.write(tmp_path / "t.bin")
    with FileReader(path) as reader:
        (rec,) = reader.get_leaked_allocation_records(merge_threads=False)
        assert rec.thread_name == "second"
        (rec,) = reader.get_allocation_records()
        assert rec.thread_name in ("first", "second")


# ---- reader lifetime and record behaviour -------------------------------------------


def test_closed_reader(sample) -> None:
    path, s_main, _ = sample
    reader = FileReader(path)
    assert not reader.closed
    records = list(reader.get_high_watermark_allocation_records())
    reader.close()
    assert reader.closed
    reader.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        list(reader.get_high_watermark_allocation_records())
    with pytest.raises(ValueError, match="closed"):
        list(reader.get_allocation_records())
    # Records outlive their reader.
    main = next(r for r in records if r.stack_id == s_main)
    assert main.stack_trace() == [WORK, MAIN10]


def test_queries_repeat_and_interleave(sample) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        first = reader.get_allocation_records()
        a = next(first)
        again = list(reader.get_allocation_records())
        rest = list(first)
        assert [a, *rest] == again
        assert list(reader.get_temporary_allocation_records()) == list(
            reader.get_temporary_allocation_records()
        )


def test_file_deleted_after_open_still_reads(tmp_path: Path) -> None:
    b, _, _ = build_sample()
    path = b.write(tmp_path / "gone.bin")
    with FileReader(path) as reader:
        os.unlink(path)
        assert len(list(reader.get_allocation_records())) == 8


def test_record_equality_hash_and_repr(sample) -> None:
    path, _, _ = sample
    with FileReader(path) as reader:
        a = list(reader.get_allocation_records())
        b = list(reader.get_allocation_records())
    assert a == b
    assert {hash(x) for x in a} == {hash(x) for x in b}
    assert a[0] != a[1]
    assert sorted(a) == sorted(b)
    assert repr(a[0]) == (
        "AllocationRecord<tid=100, address=0x1000, size=1000, allocator=MALLOC, allocations=1>"
    )
    made = AllocationRecord((100, 0x1000, 1000, 6, a[0].stack_id, 1, 0, 0))
    assert made == a[0]
    with pytest.raises(ValueError):
        made.stack_trace()
    assert AllocationRecord((1, 2, 3, 6, 0, 1, 0, 0)).stack_trace() == []


def test_progress_reporting_runs(sample) -> None:
    path, _, _ = sample
    with FileReader(path, report_progress=True) as reader:
        assert len(list(reader.get_temporary_allocation_records())) == 2
        assert len(list(reader.get_temporal_allocation_records())) == 2
    assert compute_statistics(path, report_progress=True).total_num_allocations == 5


# ---- bad files ----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileReader(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError):
        compute_statistics(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError):
        dump_all_records(tmp_path / "nope.bin")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        FileReader(tmp_path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "capture file is empty"),
        (b"this is just some text, not a capture file\n" * 3, "not a memray capture file"),
        (b"\x7fELF\x02\x01\x01" + bytes(100), "not a memray capture file"),
        (b"MRYCAP\x00\x02\x01\x00", "truncated capture header (10 of 48 bytes)"),
        (bytes(5000), "not a memray capture file"),
    ],
)
def test_bad_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(data)
    with pytest.raises(OSError) as info:
        FileReader(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert not isinstance(info.value, FileNotFoundError)
    with pytest.raises(OSError, match="bad.bin"):
        compute_statistics(path)


def test_newer_version(tmp_path: Path) -> None:
    path = CaptureBuilder(version=7).write(tmp_path / "new.bin")
    with pytest.raises(OSError, match=r"written by a newer memray \(format version 7\)"):
        FileReader(path)
    path = CaptureBuilder(flags=0x80).write(tmp_path / "flags.bin")
    with pytest.raises(OSError, match="written by a newer memray"):
        FileReader(path)


def test_corrupt_record_names_its_offset(tmp_path: Path) -> None:
    b = CaptureBuilder()
    b.alloc(1, MALLOC, 0x10, 8)
    offset = len(b.data())
    b.raw(tag(0xE))
    path = b.write(tmp_path / "corrupt.bin")
    with pytest.raises(OSError) as info:
        FileReader(path)
    assert f"corrupt capture at byte {offset}: unknown record tag 0x0e" in str(info.value)
    # A record pointing at a stack never defined.
    b = CaptureBuilder()
    b.alloc(1, MALLOC, 0x10, 8, stack=3)
    with pytest.raises(OSError, match="ALLOC with undefined stack 3"):
        FileReader(b.write(tmp_path / "stack.bin"))


def test_corruption_after_open_raises_from_the_query(tmp_path: Path) -> None:
    b, _, _ = build_sample()
    b.trailer(35, 5, 3800)
    path = b.write(tmp_path / "later.bin")
    with FileReader(path) as reader:
        data = bytearray(path.read_bytes())
        data[-6] = 0x0F  # the trailer (tag, 35, 5, 3800 in 2 bytes, 0): an unknown tag
        path.write_bytes(bytes(data))
        with pytest.raises(OSError, match="corrupt capture at byte"):
            list(reader.get_allocation_records())


def test_progress_callback_can_abort_a_pass(sample) -> None:
    from memray import _memray

    path, _, _ = sample
    seen: list[int] = []

    def tick(done: int) -> None:
        seen.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _memray.CapturePass(str(path)).scan(tick)
    assert seen == [8]  # called once the events were read: 5 allocations, 3 frees
    one_pass = _memray.CapturePass(str(path))
    one_pass.scan()
    with pytest.raises(RuntimeError, match="already read"):
        one_pass.scan()


def test_mutated_captures_raise_or_read(tmp_path: Path) -> None:
    """Every single-byte change of a capture either reads or raises OSError
    (NotImplementedError when a flag turns it into an aggregated capture)."""
    import contextlib
    import io

    b, _, _ = build_sample(flags=FLAG_NATIVE)
    b.native_node(0, 0x1234)
    b.trailer(35, 5, 3800)
    data = b.data()
    path = tmp_path / "mutated.bin"
    outcomes = {"read": 0, "error": 0}
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[i] ^= flip
            path.write_bytes(bytes(mutated))
            try:
                with FileReader(path) as reader:
                    for rec in reader.get_high_watermark_allocation_records(False):
                        rec.stack_trace()
                        rec.hybrid_stack_trace()
                        _ = rec.thread_name
                    list(reader.get_leaked_allocation_records())
                    if reader.metadata.file_format == FileFormat.ALL_ALLOCATIONS:
                        list(reader.get_temporary_allocation_records(threshold=2))
                        list(reader.get_temporal_allocation_records())
                        reader.get_temporal_high_water_mark_allocation_records()
                        for rec in reader.get_allocation_records():
                            if rec.allocator not in DEALLOCATORS:
                                rec.native_stack_trace()
                        compute_statistics(path)
                with contextlib.redirect_stdout(io.StringIO()):
                    dump_all_records(path)
                outcomes["read"] += 1
            except OSError:
                outcomes["error"] += 1
    assert outcomes["read"] > 0 and outcomes["error"] > 0
