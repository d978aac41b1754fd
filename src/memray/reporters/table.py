"""The table page: one row per (thread, allocator, innermost location), sortable,
searchable and paginated by assets/table.js.

Rows are embedded columnar, strings deduplicated:
  rows  thread/size/count/allocator/location  (thread, allocator, location index
        into ``strings``)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._enums import AllocatorType
from ._common import (
    Record,
    StringTable,
    arena_leaks_warning,
    describe_metadata,
    format_bytes,
    format_location,
    render_template,
    report_title,
)


def allocator_name(value: int) -> str:
    try:
        return AllocatorType(value).name.lower()
    except ValueError:
        return f"allocator {value}"


def table_rows(records: Iterable[Record], *, native_traces: bool) -> dict[str, Any]:
    """Sums records per (thread, allocator, innermost frame)."""
    strings = StringTable()
    index: dict[tuple[int, int, int], int] = {}
    rows: dict[str, list[int]] = {
        "thread": [],
        "size": [],
        "count": [],
        "allocator": [],
        "location": [],
    }
    for record in records:
        stack = record.hybrid_stack_trace()[:1] if native_traces else record.stack_trace(1)
        location = strings.add(format_location(tuple(stack[0]) if stack else None))
        thread = strings.add(str(record.thread_name))
        allocator = strings.add(allocator_name(record.allocator))
        key = (thread, allocator, location)
        row = index.get(key)
        if row is None:
            row = index[key] = len(rows["size"])
            rows["thread"].append(thread)
            rows["size"].append(0)
            rows["count"].append(0)
            rows["allocator"].append(allocator)
            rows["location"].append(location)
        rows["size"][row] += int(record.size)
        rows["count"][row] += int(record.n_allocations)
    return {"strings": strings.strings, "rows": rows}


def render_table(
    records: Iterable[Record],
    *,
    metadata: Any,
    kind: str = "high_water_mark",
    merge_threads: bool = True,
    temporary_threshold: int = 1,
) -> str:
    """The complete, self-contained HTML page."""
    native = bool(getattr(metadata, "has_native_traces", False))
    data = table_rows(records, native_traces=native)
    data["options"] = {"kind": kind, "split_threads": not merge_threads}
    title = report_title(kind, temporary_threshold)
    return render_template(
        "table.html",
        data=data,
        title=f"memray table: {title}",
        meta=describe_metadata(metadata),
        leaks_warning=arena_leaks_warning(kind, metadata),
        total=format_bytes(sum(data["rows"]["size"])),
        rows=f"{len(data['rows']['size']):,}",
    )
