"""The live view (`memray live`, `memray run --live`): a textual app showing
what a running program holds now, per location, refreshed every second.

It renders snapshots from a source with SocketReader's face (``pid``,
``command_line``, ``is_active``, ``get_current_snapshot(merge_threads=...)``);
it never reads the stream itself, so tests can drive it with a fake source.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Sparkline, Static

from ._text import UNKNOWN_FUNCTION, percent, size_fmt

# Heap samples the memory graph keeps (one per refresh).
HISTORY = 240
# Rows the table shows: the top of the current sort. Redrawing a textual
# DataTable costs about 0.2 ms per row, and the view redraws every second.
MAX_ROWS = 500


class SnapshotSource(Protocol):
    """What the view reads: memray.SocketReader, or a fake in tests."""

    @property
    def pid(self) -> int | None: ...

    @property
    def command_line(self) -> str | None: ...

    @property
    def is_active(self) -> bool: ...

    def get_current_snapshot(self, *, merge_threads: bool) -> Iterable[Any]: ...


@dataclass
class LocationRow:
    """One line of code's share of what is alive (sizes in bytes)."""

    function: str
    file: str
    line: int
    total_memory: int = 0
    own_memory: int = 0
    n_allocations: int = 0  # alive under this location, callees included

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


SORT_KEYS: dict[str, str] = {
    "total": "total_memory",
    "own": "own_memory",
    "allocations": "n_allocations",
}


def aggregate_locations(records: Iterable[Any], native: bool = False) -> list[LocationRow]:
    """Folds snapshot records into rows per (function, file, line): a record
    counts as own memory at its innermost frame, and once towards the total
    of every distinct frame of its stack (the hybrid stack when native)."""
    rows: dict[tuple[str, str, int], LocationRow] = {}
    for record in records:
        size, count = record.size, record.n_allocations
        stack = (record.hybrid_stack_trace() if native else record.stack_trace()) or [
            (UNKNOWN_FUNCTION, UNKNOWN_FUNCTION, 0)
        ]
        seen: set[tuple[str, str, int]] = set()
        for depth, (function, file, line) in enumerate(stack):
            key = (function, file, line)
            row = rows.get(key)
            if row is None:
                row = rows[key] = LocationRow(function, file, line)
            if depth == 0:
                row.own_memory += size
            if key not in seen:
                seen.add(key)
                row.total_memory += size
                row.n_allocations += count
    return list(rows.values())


def sort_locations(rows: list[LocationRow], sort_by: str) -> list[LocationRow]:
    attr = SORT_KEYS[sort_by]
    return sorted(rows, key=lambda r: (-getattr(r, attr), r.function, r.file, r.line))


class LiveApp(App[None]):
    """The live view. ``refresh_interval`` is in seconds; the app polls the
    source that often until the program ends."""

    TITLE = "memray live"
    CSS = """
    #info { height: auto; padding: 0 1; }
    #status { height: 1; padding: 0 1; }
    #status.ended { background: $error; color: $text; text-style: bold; }
    #status.paused { background: $warning; color: $text; }
    #graph { height: 3; margin: 0 1; }
    #table { height: 1fr; }
    """
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("p", "toggle_pause", "Pause"),
        Binding("t", "sort('total')", "Sort total"),
        Binding("o", "sort('own')", "Sort own"),
        Binding("a", "sort('allocations')", "Sort allocs"),
        Binding("m", "toggle_merge", "Merge threads"),
        Binding("less_than_sign", "previous_thread", "Prev thread", key_display="<"),
        Binding("greater_than_sign", "next_thread", "Next thread", key_display=">"),
        # DataTable would take the arrows for its cursor: ours go first.
        Binding("left", "previous_thread", show=False, priority=True),
        Binding("right", "next_thread", show=False, priority=True),
    ]
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "Function",
        "File:line",
        "Total memory",
        "Total %",
        "Own memory",
        "Own %",
        "Allocations",
    )

    def __init__(self, source: SnapshotSource, *, refresh_interval: float = 1.0) -> None:
        super().__init__()
        self.source = source
        self.refresh_interval = refresh_interval
        self.paused = False
        self.merge_threads = False
        self.sort_by = "total"
        self.thread_index = 0
        self.threads: list[tuple[int, str]] = []  # (tid, name), tids ascending
        self.records: list[Any] = []  # the latest snapshot, threads apart
        self.heap = 0
        self.peak = 0
        self.history: deque[float] = deque([0.0], maxlen=HISTORY)
        self.ended = False  # the program stopped tracking, or the stream broke
        self.final = False  # ... and its last snapshot is shown: polling stopped
        self.error: str | None = None  # why the stream broke, if it did
        self.rows: list[LocationRow] = []  # every location, in the current order
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="info")
            yield Static(id="status")
            yield Sparkline(list(self.history), id="graph")
            yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#table", DataTable)
        for name in self.COLUMNS:
            table.add_column(name, key=name)
        self.refresh_data()
        if not self.final:
            self._timer = self.set_interval(self.refresh_interval, self.refresh_data)

    # -- data

    def refresh_data(self) -> None:
        """Polls the source once and redraws. While paused the view stays as it
        is, except for noticing that the program ended."""
        if self.final:
            return
        # is_active before the snapshot: a snapshot taken once the program is
        # known to have ended is complete.
        active = bool(self.source.is_active)
        if not active:
            self.ended = True
        if self.paused:
            self.update_view()
            return
        try:
            self.records = list(self.source.get_current_snapshot(merge_threads=False))
        except OSError as error:
            self.error = str(error)
            self.ended = True
        self._take_heap_sample()
        if self.ended:
            self.final = True
            if self._timer is not None:
                self._timer.stop()
        self._update_threads()
        self.update_view()

    def _take_heap_sample(self) -> None:
        self.heap = sum(record.size for record in self.records)
        self.peak = max(self.peak, self.heap)
        self.history.append(float(self.heap))

    def _update_threads(self) -> None:
        names: dict[int, str] = {}
        for record in self.records:
            if record.tid not in names:
                names[record.tid] = record.thread_name
        selected = self.selected_tid
        self.threads = sorted(names.items())
        # Stay on the thread the user picked, as threads come and go.
        tids = [tid for tid, _ in self.threads]
        if selected in tids:
            self.thread_index = tids.index(selected)
        elif self.thread_index >= len(self.threads):
            self.thread_index = max(0, len(self.threads) - 1)

    @property
    def selected_tid(self) -> int | None:
        if self.merge_threads or not self.threads:
            return None
        return self.threads[min(self.thread_index, len(self.threads) - 1)][0]

    def visible_records(self) -> list[Any]:
        if self.merge_threads:
            return self.records
        tid = self.selected_tid
        return [record for record in self.records if record.tid == tid]

    # -- drawing

    def update_view(self) -> None:
        records = self.visible_records()
        shown = sum(record.size for record in records)
        native = bool(getattr(self.source, "has_native_traces", False))
        self.rows = sort_locations(aggregate_locations(records, native), self.sort_by)
        table = self.query_one("#table", DataTable)
        cursor = table.cursor_row
        table.clear()
        # Names come from the tracked program: Text, so a "[" in one is never
        # taken for markup.
        for row in self.rows[:MAX_ROWS]:
            table.add_row(
                Text(row.function),
                Text(row.where),
                *(
                    Text(cell, justify="right")
                    for cell in (
                        size_fmt(row.total_memory),
                        percent(row.total_memory, shown),
                        size_fmt(row.own_memory),
                        percent(row.own_memory, shown),
                        str(row.n_allocations),
                    )
                ),
            )
        if self.rows:
            table.move_cursor(row=min(cursor, min(len(self.rows), MAX_ROWS) - 1))
        self.query_one("#info", Static).update(Text(self._info_text()))
        status = self.query_one("#status", Static)
        status.update(Text(self._status_text()))
        status.set_class(self.ended, "ended")
        status.set_class(self.paused and not self.ended, "paused")
        self.query_one("#graph", Sparkline).data = list(self.history)

    def _info_text(self) -> str:
        pid = self.source.pid
        command = self.source.command_line or ""
        heap = f"Current heap: {size_fmt(self.heap)}   Peak heap: {size_fmt(self.peak)}"
        heap += f"   Locations: {len(self.rows)}"
        if len(self.rows) > MAX_ROWS:
            heap += f" (top {MAX_ROWS} shown)"
        return f"PID: {pid if pid is not None else '?'}   Command: {command}\n{heap}"

    def _thread_text(self) -> str:
        if self.merge_threads:
            return f"Threads: all {len(self.threads)} merged"
        if not self.threads:
            return "Thread: none yet"
        tid, name = self.threads[min(self.thread_index, len(self.threads) - 1)]
        label = f"{tid} ({name})" if name else str(tid)
        return f"Thread {self.thread_index + 1} of {len(self.threads)}: {label}"

    def _status_text(self) -> str:
        if self.error is not None:
            state = f"PROGRAM ENDED - the stream broke: {self.error}"
        elif self.ended and not self.final:
            state = "PROGRAM ENDED - paused: press p to see what was alive at its end"
        elif self.ended:
            state = "PROGRAM ENDED - showing what was alive at its end"
        elif self.paused:
            state = "PAUSED - press p to resume"
        else:
            state = "Running"
        sort = self.SORT_LABELS[self.sort_by]
        return f"{state}   |   {self._thread_text()}   |   Sorted by {sort}"

    SORT_LABELS: ClassVar[dict[str, str]] = {
        "total": "total memory",
        "own": "own memory",
        "allocations": "allocations",
    }

    # -- actions

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.refresh_data()
        else:
            self.update_view()

    def action_sort(self, key: str) -> None:
        if key in SORT_KEYS:
            self.sort_by = key
            self.update_view()

    def action_toggle_merge(self) -> None:
        self.merge_threads = not self.merge_threads
        self.update_view()

    def _switch_thread(self, step: int) -> None:
        if self.merge_threads or not self.threads:
            return
        self.thread_index = (self.thread_index + step) % len(self.threads)
        self.update_view()

    def action_previous_thread(self) -> None:
        self._switch_thread(-1)

    def action_next_thread(self) -> None:
        self._switch_thread(1)
