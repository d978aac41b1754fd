"""The flame graph page: grouped records -> a compact path trie embedded as JSON,
drawn on a <canvas> by assets/flamegraph.js.

Data layout (all columnar, every string an index into ``strings``):
  frames   func/file/line/flags/src  one entry per distinct (function, file, line)
  nodes    parent/frame              trie of root-first paths; node 0 is the root,
                                     a parent always precedes its children
  samples  node/thread/size/count    one per record: the trie node its stack ends at
  temporal intervals (sample, allocated_before, deallocated_before or -1, count,
           size) when the page is temporal; the page sums them per selected range
The page rebuilds its view tree from samples for every filter (thread, hidden
frames, inversion, time range), so the file holds each path once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._common import (
    Frame,
    Record,
    StringTable,
    arena_leaks_warning,
    describe_metadata,
    format_bytes,
    frame_flags,
    iter_snapshots,
    record_stack,
    render_template,
    report_title,
    source_line,
)


class FlameGraphBuilder:
    """Accumulates records into the page's columnar trie."""

    def __init__(self, *, native_traces: bool) -> None:
        self.native_traces = native_traces
        self.strings = StringTable()
        self._frame_ids: dict[Frame, int] = {}
        self.frames: dict[str, list[int]] = {
            "func": [],
            "file": [],
            "line": [],
            "flags": [],
            "src": [],
        }
        self._children: dict[tuple[int, int], int] = {}
        self.parent: list[int] = [-1]
        self.node_frame: list[int] = [-1]
        self._thread_ids: dict[int, int] = {}
        self.threads: list[int] = []
        self.samples: dict[str, list[int]] = {"node": [], "thread": [], "size": [], "count": []}
        self.intervals: dict[str, list[int]] = {
            "sample": [],
            "allocated": [],
            "deallocated": [],
            "count": [],
            "size": [],
        }

    def _frame_id(self, frame: Frame) -> int:
        function, file, line = frame
        frames = self.frames
        fid = self._frame_ids[frame] = len(frames["func"])
        frames["func"].append(self.strings.add(str(function)))
        frames["file"].append(self.strings.add(str(file)))
        frames["line"].append(int(line))
        frames["flags"].append(frame_flags(function, file, self.native_traces))
        frames["src"].append(self.strings.add(source_line(file, int(line))))
        return fid

    def _thread(self, record: Record) -> int:
        index = self._thread_ids.get(record.tid)
        if index is None:
            index = self._thread_ids[record.tid] = len(self.threads)
            self.threads.append(self.strings.add(str(record.thread_name)))
        return index

    def _leaf(self, stack: Sequence[Frame]) -> int:
        frame_ids = self._frame_ids
        children = self._children
        node = 0
        for frame in reversed(stack):
            fid = frame_ids.get(frame)
            if fid is None:
                fid = self._frame_id(frame)
            key = (node, fid)
            child = children.get(key)
            if child is None:
                child = children[key] = len(self.parent)
                self.parent.append(node)
                self.node_frame.append(fid)
            node = child
        return node

    def add(self, record: Record) -> int:
        """Adds one grouped record; returns its sample index."""
        samples = self.samples
        index = len(samples["node"])
        samples["node"].append(self._leaf(record_stack(record, self.native_traces)))
        samples["thread"].append(self._thread(record))
        samples["size"].append(int(record.size))
        samples["count"].append(int(record.n_allocations))
        return index

    def add_temporal(self, record: Any) -> None:
        """Adds a temporal record: its size comes from its intervals at view time."""
        index = self.add(record)
        self.samples["size"][index] = 0
        self.samples["count"][index] = 0
        iv = self.intervals
        for interval in record.intervals:
            allocated, deallocated, n_allocations, n_bytes = interval
            iv["sample"].append(index)
            iv["allocated"].append(int(allocated))
            iv["deallocated"].append(-1 if deallocated is None else int(deallocated))
            iv["count"].append(int(n_allocations))
            iv["size"].append(int(n_bytes))

    def data(self) -> dict[str, Any]:
        return {
            "strings": self.strings.strings,
            "frames": self.frames,
            "nodes": {"parent": self.parent, "frame": self.node_frame},
            "threads": self.threads,
            "samples": self.samples,
        }


def render_flamegraph(
    records: Iterable[Record],
    *,
    metadata: Any,
    snapshots: Iterable[Any],
    kind: str = "high_water_mark",
    merge_threads: bool = True,
    inverted: bool = False,
    temporary_threshold: int = 1,
    temporal: bool = False,
    high_water_mark_by_snapshot: Sequence[int] | None = None,
) -> str:
    """The complete, self-contained HTML page.

    ``records`` are AllocationRecords (or, with ``temporal``, temporal records
    carrying ``intervals``). ``kind`` names what they hold: "high_water_mark",
    "leaks" or "temporary". For a temporal high-water-mark page pass the peak
    heap per snapshot as ``high_water_mark_by_snapshot``.
    """
    native = bool(getattr(metadata, "has_native_traces", False))
    builder = FlameGraphBuilder(native_traces=native)
    if temporal:
        for record in records:
            builder.add_temporal(record)
    else:
        for record in records:
            builder.add(record)
    data = builder.data()
    data["snapshots"] = iter_snapshots(snapshots)
    data["options"] = {
        "kind": kind,
        "split_threads": not merge_threads,
        "inverted": inverted,
        "native_traces": native,
        "temporal": temporal,
    }
    if temporal:
        data["temporal"] = {
            "intervals": builder.intervals,
            "high_water_mark_by_snapshot": (
                None
                if high_water_mark_by_snapshot is None
                else [int(x) for x in high_water_mark_by_snapshot]
            ),
        }
    total = sum(data["samples"]["size"])
    rss_split = "anon" in data["snapshots"]
    title = report_title(kind, temporary_threshold)
    if temporal:
        title += ", over time (temporal)"
    return render_template(
        "flamegraph.html",
        data=data,
        title=f"memray flame graph: {title}",
        kind_title=title,
        meta=describe_metadata(metadata),
        leaks_warning=arena_leaks_warning(kind, metadata),
        total=format_bytes(total),
        temporal=temporal,
        split_threads=not merge_threads,
        inverted=inverted,
        rss_split=rss_split,
    )
