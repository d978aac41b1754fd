"""The statistics report: totals, a histogram of allocation sizes, the
allocator mix, the top locations and the top modules by size and by count.

The numbers come computed (memray.compute_statistics, in C); this module bins
the size histogram and lays everything out as text or JSON.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import enum
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from ._text import format_location, rich_console, rss_notes, rss_parts, size_fmt

Frame = tuple[str, str, int]


def _size(num: float) -> str:
    """Sizes as memray 1.x's stats print them: powers of 1000 (kB, MB)."""
    return size_fmt(num, base=1000)


@dataclass(frozen=True)
class HistogramBin:
    min_bytes: int  # inclusive
    max_bytes: int  # inclusive
    count: int


def size_histogram(count_by_size: Mapping[int, int], bins: int = 10) -> list[HistogramBin]:
    """Log-spaced bins from the smallest to the largest size seen; integer
    bounds, no empty duplicates when the range is narrower than ``bins``."""
    if bins <= 0:
        raise ValueError("bins must be positive")
    counts = {int(size): int(n) for size, n in count_by_size.items() if n}
    if not counts:
        return []
    positive = [s for s in counts if s > 0]
    low = min(positive) if positive else 0
    high = max(counts)
    if high <= low or low == 0:
        uppers = [high]
    else:
        ratio = high / low
        uppers = sorted(
            {min(high, math.floor(low * ratio ** ((i + 1) / bins))) for i in range(bins)}
        )
        uppers[-1] = high
    tallies = [0] * len(uppers)
    for size, n in counts.items():
        tallies[min(bisect.bisect_left(uppers, size), len(uppers) - 1)] += n
    result = []
    lower = min(counts)
    for upper, tally in zip(uppers, tallies):
        result.append(HistogramBin(lower, upper, tally))
        lower = upper + 1
    return result


def _allocator_name(key: Any) -> str:
    if isinstance(key, enum.Enum):
        return key.name
    if isinstance(key, int):
        from memray import AllocatorType

        try:
            return AllocatorType(key).name
        except ValueError:
            return str(key)
    return str(key)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name.lower() if not isinstance(value, int) else int(value)
    if isinstance(value, tuple) and all(hasattr(v, "_asdict") for v in value):
        return [v._asdict() for v in value]  # a merged capture's processes
    return value


def metadata_dict(metadata: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(metadata) and not isinstance(metadata, type):
        fields = [f.name for f in dataclasses.fields(metadata)]
    elif hasattr(metadata, "_fields"):
        fields = list(metadata._fields)
    else:
        fields = [
            "start_time",
            "end_time",
            "total_allocations",
            "total_frames",
            "peak_memory",
            "command_line",
            "pid",
            "main_thread_id",
            "python_allocator",
            "has_native_traces",
            "trace_python_allocators",
            "file_format",
        ]
    return {name: _json_value(getattr(metadata, name, None)) for name in fields}


class StatsReporter:
    HISTOGRAM_BINS = 10
    BAR_WIDTH = 25

    def __init__(self, stats: Any, num_largest: int = 5) -> None:
        if num_largest < 1:
            raise ValueError(f"num_largest must be at least 1, not {num_largest}")
        self.stats = stats
        self.num_largest = num_largest

    # What is shown, in the order shown.
    def allocator_distribution(self) -> list[tuple[str, int]]:
        items = [
            (_allocator_name(k), int(v))
            for k, v in self.stats.allocation_count_by_allocator.items()
            if v
        ]
        return sorted(items, key=lambda item: (-item[1], item[0]))

    def top_by_size(self) -> list[tuple[Frame, int]]:
        return [(tuple(loc), int(n)) for loc, n in self.stats.top_locations_by_size][
            : self.num_largest
        ]

    def top_by_count(self) -> list[tuple[Frame, int]]:
        return [(tuple(loc), int(n)) for loc, n in self.stats.top_locations_by_count][
            : self.num_largest
        ]

    def top_modules_by_size(self) -> list[tuple[str, int, int]]:
        """(module, allocations, bytes): see compute_statistics."""
        rows = getattr(self.stats, "top_modules_by_allocation_size", [])
        return [(str(m), int(n), int(b)) for m, n, b in rows][: self.num_largest]

    def top_modules_by_count(self) -> list[tuple[str, int, int]]:
        rows = getattr(self.stats, "top_modules_by_allocation_count", [])
        return [(str(m), int(n), int(b)) for m, n, b in rows][: self.num_largest]

    def histogram(self) -> list[HistogramBin]:
        return size_histogram(self.stats.allocation_count_by_size, self.HISTOGRAM_BINS)

    def peak_memory(self) -> int:
        peak = getattr(self.stats, "peak_memory_allocated", None)
        if peak is None:
            peak = self.stats.metadata.peak_memory
        return int(peak)

    def memory_samples(self) -> list[tuple[str, str, Any]]:
        """(JSON key, heading, MemorySnapshot) of the samples whose resident
        set is shown split: where the heap and where RSS were highest; none
        when the capture did not record the split (memray 1.x's output)."""
        samples = []
        for key, heading, snapshot in (
            ("at_heap_peak", "at the heap's peak", "memory_at_heap_peak"),
            ("at_rss_peak", "at its highest", "memory_at_rss_peak"),
        ):
            snapshot = getattr(self.stats, snapshot, None)
            if rss_parts(snapshot) is not None:
                samples.append((key, heading, snapshot))
        return samples

    def _ms_after_start(self, snapshot: Any) -> int:
        start = self.stats.metadata.start_time
        return int(snapshot.time) - round(start.timestamp() * 1000)

    def _rss_breakdown_json(self) -> dict[str, Any]:
        out = {}
        for key, _heading, snapshot in self.memory_samples():
            entry = {
                "ms_since_start": self._ms_after_start(snapshot),
                "rss": int(snapshot.rss),
                "heap": int(snapshot.heap),
                "heap_in_mappings": int(snapshot.mapped_heap),
                "anonymous": int(snapshot.anon_rss),
            }
            for part in rss_parts(snapshot) or ():
                entry[part.key if part.key != "heap" else "heap_resident"] = part.size
            out[key] = entry
        return out

    def to_json(self) -> dict[str, Any]:
        """memray 1.x's `stats --json` layout, plus the peak and, when the
        capture recorded it, the split of RSS (``rss_breakdown``)."""
        data = self._to_json_1x()
        breakdown = self._rss_breakdown_json()
        if breakdown:
            data["rss_breakdown"] = breakdown
        return data

    def _to_json_1x(self) -> dict[str, Any]:
        return {
            "total_num_allocations": int(self.stats.total_num_allocations),
            "total_bytes_allocated": int(self.stats.total_memory_allocated),
            "peak_memory": self.peak_memory(),
            "allocation_size_histogram": [dataclasses.asdict(b) for b in self.histogram()],
            "allocator_type_distribution": dict(self.allocator_distribution()),
            "top_allocations_by_size": [
                {"location": format_location(*loc), "size": size}
                for loc, size in self.top_by_size()
            ],
            "top_allocations_by_count": [
                {"location": format_location(*loc), "count": count}
                for loc, count in self.top_by_count()
            ],
            "top_modules_by_allocation_size": [
                {"module": m, "num_allocations": n, "total_bytes": b}
                for m, n, b in self.top_modules_by_size()
            ],
            "top_modules_by_allocation_count": [
                {"module": m, "num_allocations": n, "total_bytes": b}
                for m, n, b in self.top_modules_by_count()
            ],
            "metadata": metadata_dict(self.stats.metadata),
        }

    def render(self, *, file: IO[str] | None = None, use_rich: bool | None = None) -> None:
        out = file if file is not None else sys.stdout
        if use_rich is None:
            use_rich = out.isatty()
        if use_rich:
            console = rich_console(out)

            def heading(icon: str, text: str) -> None:
                console.print(f"{icon} [bold]{text}[/]")

            bar = "▇"
        else:

            def heading(icon: str, text: str) -> None:
                print(text, file=out)

            bar = "#"

        def line(text: str = "") -> None:
            print(text, file=out)

        from rich.markup import escape

        every = int(getattr(self.stats.metadata, "sample_every", 0) or 0)
        if every:  # a sampled capture: say so before any number
            heading("🎲", f"Sampled every {every:,} bytes: the sizes below are estimates")
            line()
        heading("📏", "Total allocations:")
        line(f"\t{self.stats.total_num_allocations}")
        line()
        heading("📦", "Total memory allocated:")
        line(f"\t{_size(self.stats.total_memory_allocated)}")
        line()
        heading("📦", "Peak memory usage:")
        line(f"\t{_size(self.peak_memory())}")
        line()
        for text in self._rss_lines():
            if text.startswith("\t") or not text:
                line(text)
            else:
                heading("🧮", escape(text))
        processes = getattr(self.stats.metadata, "processes", ())
        if processes:  # a merged capture (memray merge, or several captures)
            heading("🌳", f"Processes merged: {len(processes)}")
            for p in processes:
                parent = f"parent {p.parent_pid}" if p.parent_pid else "no parent"
                line(f"\t- pid {p.pid} ({parent}): {p.command_line}")
            line()
        heading("📊", "Histogram of allocation size:")
        for text in self._histogram_lines(bar):
            line(f"\t{text}")
        line()
        heading("📂", "Allocator type distribution:")
        for name, count in self.allocator_distribution():
            line(f"\t {name}: {count}")
        line()
        heading("🥇", escape(f"Top {self.num_largest} largest allocating locations (by size):"))
        for loc, size in self.top_by_size():
            line(f"\t- {format_location(*loc)} -> {_size(size)}")
        line()
        heading(
            "🥇",
            escape(
                f"Top {self.num_largest} largest allocating locations (by number of allocations):"
            ),
        )
        for loc, count in self.top_by_count():
            line(f"\t- {format_location(*loc)} -> {count}")
        line()
        line()
        heading("🥇", escape(f"Top {self.num_largest} allocating modules (by size):"))
        for module, count, size in self.top_modules_by_size():
            line(f"\t- {module}: {_size(size)} total | {count} allocations")
        line()
        heading(
            "🥇", escape(f"Top {self.num_largest} allocating modules (by number of allocations):")
        )
        for module, count, size in self.top_modules_by_count():
            line(f"\t- {module}: {_size(size)} total | {count} allocations")

    def _rss_lines(self) -> list[str]:
        """The resident set split at the samples of memory_samples(): a
        heading, then tab-indented lines, then a blank line, for each."""
        lines: list[str] = []
        shown: set[int] = set()
        for key, heading, snapshot in self.memory_samples():
            if snapshot.time in shown:
                continue  # the heap and RSS peaked in the same sample
            shown.add(snapshot.time)
            seconds = self._ms_after_start(snapshot) / 1000
            also = ""
            if key == "at_heap_peak":
                rss_peak = getattr(self.stats, "memory_at_rss_peak", None)
                if rss_peak is not None and rss_peak.time == snapshot.time:
                    also = ", also its highest"
            lines.append(f"Resident memory (RSS) {heading}{also}, {seconds:.3f} s after start:")
            lines.append(f"\tRSS: {_size(snapshot.rss)}")
            for part in rss_parts(snapshot) or ():
                lines.append(f"\t- {part.label}: {_size(part.size)} ({part.what})")
            for note in rss_notes(snapshot, _size):
                lines.append(f"\tNote: {note}")
            lines.append("")
        return lines

    def _histogram_lines(self, bar: str) -> list[str]:
        bins = self.histogram()
        if not bins:
            return ["<no data for histogram>"]
        biggest = max(b.count for b in bins) or 1
        count_width = max(len(str(b.count)) for b in bins)
        lines = [
            f"min: {_size(bins[0].min_bytes)}",
            "-" * (9 + 4 + count_width + self.BAR_WIDTH),
        ]
        for b in bins:
            length = math.ceil(b.count / biggest * self.BAR_WIDTH)
            text = f"<={_size(b.max_bytes):<9} : {b.count:>{count_width}} {bar * length}"
            lines.append(text.rstrip())
        lines.append("-" * (9 + 4 + count_width + self.BAR_WIDTH))
        lines.append(f"max: {_size(bins[-1].max_bytes)}")
        return lines
