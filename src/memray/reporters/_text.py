"""Helpers shared by the terminal reporters: sizes, locations, plain tables.

Plain output (stdout not a terminal) has no colour, no markup and no emoji,
and is not wrapped, so scripts can read it; rich output is for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any, NamedTuple

Location = tuple  # (function, file, line) as AllocationRecord.stack_trace() gives

UNKNOWN_FUNCTION = "<unknown>"


def size_fmt(num: float, suffix: str = "B", *, base: int = 1024) -> str:
    """1536 -> '1.500KB', as memray 1.x prints sizes in its reports (powers of
    1024); with base=1000, 1536 -> '1.536kB', as its `stats` prints them."""
    units = (
        ("", "K", "M", "G", "T", "P", "E", "Z")
        if base == 1024
        else ("", "k", "M", "G", "T", "P", "E", "Z")
    )
    for unit in units:
        if abs(num) < base:
            return f"{num:5.3f}{unit}{suffix}"
        num /= base
    return f"{num:.1f}Y{suffix}"


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "0.00%"


def format_location(function: str, file: str, line: int | None = None) -> str:
    if function == UNKNOWN_FUNCTION and file == UNKNOWN_FUNCTION:
        return "<stack trace unavailable>"
    return f"{function}:{file}" if line is None else f"{function}:{file}:{line}"


def plain_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right_aligned: Sequence[bool],
    file: IO[str],
) -> None:
    """Columns separated by two spaces, padded to the widest cell; the last
    column is not padded, so lines carry no trailing blanks."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (cell, width, right) in enumerate(zip(cells, widths, right_aligned)):
            last = i == len(cells) - 1
            if right:
                out.append(cell.rjust(width))
            else:
                out.append(cell if last else cell.ljust(width))
        return "  ".join(out)

    print(line(header), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in rows:
        print(line(row), file=file)


class RssPart(NamedTuple):
    """One part of a memory sample's resident set (see docs/memory.rst)."""

    key: str  # the JSON key
    label: str  # what a user reads
    size: int  # bytes
    what: str  # which memory that is


def rss_parts(snapshot: Any) -> list[RssPart] | None:
    """A MemorySnapshot's resident set in four parts that add up to its rss:
    the tracked heap in anonymous memory (as far as it is resident), the
    anonymous memory beyond it, file-backed mappings and shared memory; None
    when the capture did not record the split."""
    if snapshot is None or not getattr(snapshot, "has_rss_breakdown", False):
        return None
    anon = int(snapshot.anon_rss)
    heap = min(int(snapshot.anon_heap), anon)
    return [
        RssPart(
            "heap",
            "heap tracked by memray",
            heap,
            "allocations alive at that moment"
            + (
                ", but for the mapped files and shared memory below" if snapshot.mapped_heap else ""
            ),
        ),
        RssPart(
            "untracked_anonymous",
            "untracked anonymous memory",
            anon - heap,
            "the interpreter's own memory, static data, allocator free lists and fragmentation",
        ),
        RssPart(
            "file_backed",
            "file-backed mappings",
            int(snapshot.file_rss),
            "code of Python and its libraries, memory-mapped files",
        ),
        RssPart(
            "shared",
            "shared memory",
            int(snapshot.shared_rss),
            "/dev/shm and tmpfs files, shared anonymous mappings",
        ),
    ]


def rss_notes(snapshot: Any, fmt: Any) -> list[str]:
    """What the parts of rss_parts() leave unsaid about the heap."""
    notes = []
    mapped = int(snapshot.mapped_heap)
    if mapped:
        notes.append(
            f"{fmt(mapped)} of the heap is files or shared memory mapped with mmap, "
            "counted above as file-backed or shared memory as far as it is resident"
        )
    anon_heap = int(snapshot.anon_heap)
    if anon_heap > int(snapshot.anon_rss):
        notes.append(
            f"the heap outside such mappings ({fmt(anon_heap)}) is more than the anonymous "
            "memory: part of it was allocated but never touched, so it is not resident"
        )
    return notes


def rss_summary(snapshot: Any, fmt: Any) -> str | None:
    """rss_parts() on one line ("RSS 120MB = heap 50MB + ..."), or None."""
    parts = rss_parts(snapshot)
    if parts is None:
        return None
    short = {
        "heap": "heap",
        "untracked_anonymous": "untracked anonymous",
        "file_backed": "file-backed",
        "shared": "shared",
    }
    terms = " + ".join(f"{short[p.key]} {fmt(p.size)}" for p in parts)
    line = f"RSS {fmt(snapshot.rss)} = {terms}"
    if snapshot.mapped_heap:
        line += (
            f"; the heap also holds {fmt(snapshot.mapped_heap)} of mmap'd files or shared memory"
        )
    return line


def rich_console(file: IO[str] | None = None):  # -> rich.console.Console
    from rich.console import Console

    return Console(file=file, highlight=False)
