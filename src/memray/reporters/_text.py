"""Helpers shared by the terminal reporters: sizes, locations, plain tables.

Plain output (stdout not a terminal) has no colour, no markup and no emoji,
and is not wrapped, so scripts can read it; rich output is for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

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


def rich_console(file: IO[str] | None = None):  # -> rich.console.Console
    from rich.console import Console

    return Console(file=file, highlight=False)
