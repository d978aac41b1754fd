"""Answers as memray 1.x gives them for the same program: how munmap,
pymalloc after fork, memory snapshots, record counts, statistics and
greenlets are counted."""

from __future__ import annotations

import mmap
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
