"""The summary table: per function, the memory and allocations it holds
itself and those it holds through its callees, in one snapshot (peak, leaks or
temporary allocations).

It folds grouped records (one per distinct stack, from the reader) into rows
and renders them; it never sees individual allocation events.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from ._text import UNKNOWN_FUNCTION, percent, plain_table, rich_console, rss_summary, size_fmt


@dataclass
class LocationData:
    """One function's share of the snapshot (sizes in bytes)."""

    function: str
    file: str
    total_memory: int = 0
    own_memory: int = 0
    total_allocations: int = 0
    own_allocations: int = 0

    @property
    def location(self) -> str:
        if self.function == UNKNOWN_FUNCTION and self.file == UNKNOWN_FUNCTION:
            return "<stack trace unavailable>"
        return f"{self.function} at {self.file}"


class SummaryReporter:
    COLUMNS = (
        "Location",
        "Total Memory",
        "Total Memory %",
        "Own Memory",
        "Own Memory %",
        "Allocation Count",
        "Own Allocation Count",
    )
    RICH_HEADERS = (
        "Location",
        "1 Total",
        "2 Total %",
        "3 Own",
        "4 Own %",
        "5 Allocs",
        "6 Own Allocs",
    )
    # -s N sorts on column N after Location (memray 1.x numbering, 6 is new);
    # a percentage column sorts like the size next to it.
    SORT_KEYS: ClassVar[dict[int, str]] = {
        1: "total_memory",
        2: "total_memory",
        3: "own_memory",
        4: "own_memory",
        5: "total_allocations",
        6: "own_allocations",
    }
    N_COLUMNS = len(SORT_KEYS)

    def __init__(self, locations: list[LocationData], total_memory: int, total_allocations: int):
        self.locations = locations
        self.total_memory = total_memory
        self.total_allocations = total_allocations

    @classmethod
    def from_snapshot(cls, records: Iterable[Any], native: bool = False) -> SummaryReporter:
        """Folds grouped AllocationRecords: a function's total counts a record
        once however often the function recurs in its stack. With native, the
        hybrid stacks (C frames and the Python frames they ran) are used."""
        by_location: dict[tuple[str, str], LocationData] = {}
        total_memory = total_allocations = 0
        for record in records:
            size, count = record.size, record.n_allocations
            total_memory += size
            total_allocations += count
            stack = (record.hybrid_stack_trace() if native else record.stack_trace()) or [
                (UNKNOWN_FUNCTION, UNKNOWN_FUNCTION, 0)
            ]
            seen = set()
            for depth, (function, file, _line) in enumerate(stack):
                key = (function, file)
                data = by_location.get(key)
                if data is None:
                    data = by_location[key] = LocationData(function, file)
                if depth == 0:
                    data.own_memory += size
                    data.own_allocations += count
                if key not in seen:
                    seen.add(key)
                    data.total_memory += size
                    data.total_allocations += count
        return cls(list(by_location.values()), total_memory, total_allocations)

    def sorted_rows(self, sort_column: int = 1, max_rows: int | None = None) -> list[LocationData]:
        key = self.SORT_KEYS[sort_column]
        rows = sorted(self.locations, key=lambda d: (-getattr(d, key), d.function, d.file))
        return rows if max_rows is None else rows[:max_rows]

    def render(
        self,
        sort_column: int = 1,
        *,
        max_rows: int | None = None,
        file: IO[str] | None = None,
        use_rich: bool | None = None,
        title: str = "allocations alive at peak memory",
        memory: Any = None,
        memory_seconds: float | None = None,
    ) -> None:
        """memory: the MemorySnapshot taken when the heap was highest; with
        the split of RSS recorded, a footer line says what RSS was made of
        (memory_seconds: when, after the start)."""
        out = file if file is not None else sys.stdout
        if use_rich is None:
            use_rich = out.isatty()
        rows = self.sorted_rows(sort_column, max_rows)
        caption = (
            f"Summary of {title}: {size_fmt(self.total_memory)} in "
            f"{self.total_allocations} allocations, {len(self.locations)} locations"
        )
        cells = [
            (
                d.location,
                size_fmt(d.total_memory),
                percent(d.total_memory, self.total_memory),
                size_fmt(d.own_memory),
                percent(d.own_memory, self.total_memory),
                str(d.total_allocations),
                str(d.own_allocations),
            )
            for d in rows
        ]
        footer = self.memory_footer(memory, memory_seconds)
        if not use_rich:
            print(caption, file=out)
            print(file=out)
            plain_table(
                self.COLUMNS, cells, right_aligned=[False] + [True] * self.N_COLUMNS, file=out
            )
            if footer:
                print(file=out)
                print(footer, file=out)
            return
        self._render_rich(out, caption, cells, sort_column)
        if footer:
            from rich.markup import escape

            rich_console(out).print(escape(footer), style="dim")

    @staticmethod
    def memory_footer(memory: Any, seconds: float | None = None) -> str | None:
        """The footer: what RSS was made of at the heap's peak (heap,
        untracked anonymous, file-backed, shared), or None without the split."""
        line = rss_summary(memory, size_fmt)
        if line is None:
            return None
        when = f" ({seconds:.3f} s after start)" if seconds is not None else ""
        return f"Resident memory at the heap's peak{when}: {line}"

    def _render_rich(
        self, out: IO[str], caption: str, cells: list[tuple[str, ...]], sort_column: int
    ) -> None:
        from rich.markup import escape
        from rich.table import Table

        sorted_by = self.SORT_KEYS[sort_column]
        table = Table(title=escape(caption), expand=False)
        # Short headers (the column number is what -s takes) leave the width
        # to the location, the one column that may wrap.
        for index, name in enumerate(self.RICH_HEADERS):
            highlighted = index > 0 and self.SORT_KEYS[index] == sorted_by
            table.add_column(
                f"<{name}>" if highlighted else name,
                justify="left" if index == 0 else "right",
                style="bold" if highlighted else None,
                overflow="fold",
                no_wrap=index > 0,
                min_width=24 if index == 0 else None,
            )
        for row in cells:
            share = _share(row[2])
            color = "red" if share > 60 else "yellow" if share > 20 else "green"
            table.add_row(escape(row[0]), *(f"[{color}]{c}[/]" for c in row[1:3]), *row[3:])
        rich_console(out).print(table)


def _share(text: str) -> float:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        return 0.0
