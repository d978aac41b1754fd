"""The difference of two captures (``memray diff``): per location and per
stack, what BASE and NEW hold (peak, leaks or everything allocated), with
BASE's files and lines matched to NEW's; rendered as a terminal table, JSON or
an HTML flame graph of NEW's tree with BASE's sizes beside.

It takes the grouped totals per Python stack that commands/diff.py reads
(one entry per distinct stack, never one per allocation) and never opens a
capture itself.

Matching (documented for users in docs/regressions.rst):
  files   a BASE file that NEW also has is itself; otherwise the NEW file with
          the same name and the longest common tail of directories, when that
          one is unique (``/ci/base/app/x.py`` ~ ``/ci/pr/app/x.py``,
          ``.../python3.11/json/decoder.py`` ~ ``.../python3.12/json/...``).
  lines   per function and matched file, over every line the function shows
          in either capture (allocating lines and call sites): the offset
          that lines up the most of BASE's lines with NEW's (0 when tied),
          so a function that moved keeps its rows; lines left over are paired
          in order when as many are left on each side, else they stand alone
          as "only in BASE" / "only in NEW". The reader does not expose a code
          object's first line, hence the vote rather than ``line - first``.
A location is the innermost Python frame of a stack: function, file, line.
"""

from __future__ import annotations

import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from ._common import (
    StringTable,
    arena_leaks_warning,
    describe_metadata,
    format_bytes,
    frame_flags,
    render_template,
    source_line,
)
from ._text import UNKNOWN_FUNCTION, plain_table, rich_console

Frame = tuple[str, str, int]  # (function, file, line) as stack_trace() gives it
Stack = tuple[Frame, ...]  # innermost frame first
# A frame in the diff's coordinates: function, file (NEW's name when the file
# was matched), NEW's line (None: only in BASE), BASE's line (None: only in NEW).
DiffFrame = tuple[str, str, int | None, int | None]

# The location of a stack without Python frames (a thread that runs no Python).
UNKNOWN_FRAME: Frame = (UNKNOWN_FUNCTION, UNKNOWN_FUNCTION, 0)

# Above this many (BASE line, NEW line) pairs in one function, lines are only
# matched where they are equal: the vote would cost more than it is worth.
MAX_VOTE_PAIRS = 1_000_000

KIND_TITLES = {
    "high_water_mark": "allocations alive at peak memory",
    "leaks": "leaked allocations",
    "total": "all allocations made",
}

JSON_SCHEMA_VERSION = 1


@dataclass
class Capture:
    """One side of the diff: its totals per distinct Python stack."""

    path: str
    metadata: Any
    stacks: dict[Stack, list[int]]  # stack -> [bytes, allocations]


def fold_records(records: Iterable[Any]) -> dict[Stack, list[int]]:
    """Totals per Python stack of grouped AllocationRecords (records that
    differ only in thread, allocator or native stack fold together)."""
    stacks: dict[Stack, list[int]] = {}
    for record in records:
        stack = tuple(record.stack_trace()) or (UNKNOWN_FRAME,)
        entry = stacks.get(stack)
        if entry is None:
            stacks[stack] = [int(record.size), int(record.n_allocations)]
        else:
            entry[0] += int(record.size)
            entry[1] += int(record.n_allocations)
    return stacks


@dataclass
class Location:
    """One row: an allocating place in both captures (or in one of them)."""

    function: str
    file: str  # NEW's name for it, when NEW has it
    new_line: int | None
    base_line: int | None
    base_file: str | None = None  # BASE's name for it (None: only in NEW)
    base_bytes: int = 0
    new_bytes: int = 0
    base_count: int = 0
    new_count: int = 0

    @property
    def delta_bytes(self) -> int:
        return self.new_bytes - self.base_bytes

    @property
    def delta_count(self) -> int:
        return self.new_count - self.base_count

    @property
    def changed(self) -> bool:
        return self.delta_bytes != 0 or self.delta_count != 0

    def label(self) -> str:
        if (self.function, self.file) == (UNKNOWN_FUNCTION, UNKNOWN_FUNCTION):
            return "<stack trace unavailable>"
        if self.new_line is None:
            return f"{self.function} at {self.file}:{self.base_line} (only in BASE)"
        text = f"{self.function} at {self.file}:{self.new_line}"
        if self.base_line is None:
            return text + " (only in NEW)"
        if self.base_line != self.new_line:
            return text + f" (BASE line {self.base_line})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "new_line": self.new_line,
            "base_file": self.base_file,
            "base_line": self.base_line,
            "base_bytes": self.base_bytes,
            "new_bytes": self.new_bytes,
            "delta_bytes": self.delta_bytes,
            "base_count": self.base_count,
            "new_count": self.new_count,
            "delta_count": self.delta_count,
        }


def growth_order(location: Location) -> tuple[int, int, str]:
    """Largest growth first, largest shrinkage last; ties by label."""
    return (-location.delta_bytes, -location.delta_count, location.label())


# --- matching ---------------------------------------------------------------


def _tail_score(a: str, b: str) -> int:
    """How many trailing path components two file names share."""
    pa, pb = a.split("/"), b.split("/")
    n = 0
    while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
        n += 1
    return n


def match_files(base_files: Iterable[str], new_files: Iterable[str]) -> dict[str, str]:
    """BASE file -> NEW file, one to one (see the module's docstring)."""
    new_set = set(new_files)
    mapping = {f: f for f in base_files if f in new_set}
    taken = set(mapping.values())
    by_name: dict[str, list[str]] = defaultdict(list)
    for f in new_set - taken:
        if not f.startswith("<"):
            by_name[os.path.basename(f)].append(f)
    proposals: list[tuple[int, str, str]] = []
    for f in base_files:
        if f in mapping or f.startswith("<"):
            continue
        scored = sorted(
            ((_tail_score(f, n), n) for n in by_name.get(os.path.basename(f), ())), reverse=True
        )
        if scored and (len(scored) == 1 or scored[0][0] > scored[1][0]):
            proposals.append((scored[0][0], f, scored[0][1]))
    for _score, f, n in sorted(proposals, key=lambda p: (-p[0], p[1])):
        if n not in taken:
            mapping[f] = n
            taken.add(n)
    return mapping


def match_lines(base_lines: Iterable[int], new_lines: Iterable[int]) -> dict[int, int]:
    """BASE line -> NEW line within one function (see the module's docstring)."""
    b_sorted = sorted(set(base_lines))
    n_sorted = sorted(set(new_lines))
    n_set = set(n_sorted)
    offset = 0
    if (
        b_sorted
        and n_sorted
        and b_sorted != n_sorted
        and len(b_sorted) * len(n_sorted) <= MAX_VOTE_PAIRS
    ):
        votes = Counter(n - b for b in b_sorted for n in n_sorted)
        # Most votes; among equals no move, then the smallest move.
        offset = max(votes.items(), key=lambda kv: (kv[1], kv[0] == 0, -abs(kv[0]), -kv[0]))[0]
    mapping = {b: b + offset for b in b_sorted if b + offset in n_set}
    used = set(mapping.values())
    rest_b = [b for b in b_sorted if b not in mapping]
    rest_n = [n for n in n_sorted if n not in used]
    if rest_b and len(rest_b) == len(rest_n):
        mapping.update(zip(rest_b, rest_n))
    return mapping


@dataclass
class Diff:
    """Both captures in NEW's coordinates: rows per location, totals per stack."""

    kind: str
    base: Capture
    new: Capture
    locations: list[Location]
    # Translated stack (innermost first) -> [base bytes, base count, new bytes, new count].
    stacks: dict[tuple[DiffFrame, ...], list[int]] = field(default_factory=dict)

    @property
    def base_bytes(self) -> int:
        return sum(loc.base_bytes for loc in self.locations)

    @property
    def new_bytes(self) -> int:
        return sum(loc.new_bytes for loc in self.locations)

    @property
    def base_count(self) -> int:
        return sum(loc.base_count for loc in self.locations)

    @property
    def new_count(self) -> int:
        return sum(loc.new_count for loc in self.locations)

    @property
    def delta_bytes(self) -> int:
        return self.new_bytes - self.base_bytes

    @property
    def delta_count(self) -> int:
        return self.new_count - self.base_count

    def sorted_locations(self) -> list[Location]:
        return sorted(self.locations, key=growth_order)

    def arena_leaks(self) -> bool:
        """Whether leaks of either capture may be memory pymalloc keeps for
        reuse (see reporters._common.arena_leaks_warning)."""
        return any(arena_leaks_warning(self.kind, c.metadata) for c in (self.base, self.new))


def _distinct_frames(stacks: Iterable[Stack]) -> set[Frame]:
    frames: set[Frame] = set()
    for stack in stacks:
        frames.update(stack)
    return frames


def compute_diff(kind: str, base: Capture, new: Capture) -> Diff:
    """Matches BASE's files and lines to NEW's, then adds both up per
    location (innermost frame) and per whole stack. Python work is per
    distinct frame; per stack it is a lookup of each frame (in C, by map)."""
    base_frames = _distinct_frames(base.stacks)
    new_frames = _distinct_frames(new.stacks)
    new_files = {frame[1] for frame in new_frames}
    file_map = match_files(sorted({frame[1] for frame in base_frames}), sorted(new_files))

    base_lines: dict[tuple[str, str], set[int]] = defaultdict(set)
    new_lines: dict[tuple[str, str], set[int]] = defaultdict(set)
    for function, file, line in base_frames:
        base_lines[function, file_map.get(file, file)].add(line)
    for function, file, line in new_frames:
        new_lines[function, file].add(line)
    to_new: dict[tuple[str, str], dict[int, int]] = {}
    to_base: dict[tuple[str, str], dict[int, int]] = {}
    for key, lines in base_lines.items():
        if key[1] in new_files and key in new_lines:
            forward = match_lines(lines, new_lines[key])
            to_new[key] = forward
            to_base[key] = {n: b for b, n in forward.items()}

    translations: list[dict[Frame, DiffFrame]] = [{}, {}]
    for function, file, line in base_frames:
        if file in file_map:
            mapped = file_map[file]
            moved = to_new.get((function, mapped), {}).get(line)
            translations[0][function, file, line] = (function, mapped, moved, line)
        else:
            translations[0][function, file, line] = (function, file, None, line)
    for function, file, line in new_frames:
        old = to_base.get((function, file), {}).get(line)
        translations[1][function, file, line] = (function, file, line, old)

    stacks: dict[tuple[DiffFrame, ...], list[int]] = {}
    for side, capture in ((0, base), (1, new)):
        translate = translations[side].__getitem__
        for stack, (nbytes, count) in capture.stacks.items():
            key = tuple(map(translate, stack))
            entry = stacks.get(key)
            if entry is None:
                entry = stacks[key] = [0, 0, 0, 0]
            entry[2 * side] += nbytes
            entry[2 * side + 1] += count

    base_file_of = {n: b for b, n in file_map.items()}
    locations: dict[DiffFrame, Location] = {}
    for stack, (b_bytes, b_count, n_bytes, n_count) in stacks.items():
        top = stack[0]
        loc = locations.get(top)
        if loc is None:
            function, file, new_line, base_line = top
            base_file = None if base_line is None else base_file_of.get(file, file)
            loc = locations[top] = Location(function, file, new_line, base_line, base_file)
        loc.base_bytes += b_bytes
        loc.base_count += b_count
        loc.new_bytes += n_bytes
        loc.new_count += n_count
    return Diff(kind, base, new, list(locations.values()), stacks)


# --- text -------------------------------------------------------------------


def signed_bytes(n: int) -> str:
    if n == 0:
        return "0 B"
    return ("+" if n > 0 else "-") + format_bytes(abs(n))


def signed_count(n: int) -> str:
    return f"{n:+d}" if n else "0"


def describe_capture(capture: Capture) -> str:
    metadata = capture.metadata
    fmt = getattr(getattr(metadata, "file_format", None), "name", "")
    parts = [str(getattr(metadata, "command_line", "") or "")]
    if fmt:
        parts.append(fmt)
    return f"{capture.path} ({'; '.join(p for p in parts if p)})"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


COLUMNS = (
    "Location",
    "Base bytes",
    "New bytes",
    "Delta bytes",
    "Base count",
    "New count",
    "Delta count",
)


def _cells(loc: Location) -> tuple[str, ...]:
    return (
        loc.label(),
        format_bytes(loc.base_bytes),
        format_bytes(loc.new_bytes),
        signed_bytes(loc.delta_bytes),
        str(loc.base_count),
        str(loc.new_count),
        signed_count(loc.delta_count),
    )


def render_table(
    diff: Diff,
    *,
    max_rows: int | None = None,
    file: IO[str] | None = None,
    use_rich: bool | None = None,
) -> None:
    """The changed locations, largest growth first, and a total line; rich
    on a terminal, plain text (no colour, no wrapping) otherwise."""
    out = file if file is not None else sys.stdout
    if use_rich is None:
        use_rich = out.isatty()
    changed = [loc for loc in diff.sorted_locations() if loc.changed]
    shown = changed if max_rows is None else changed[:max_rows]
    n_unchanged = len(diff.locations) - len(changed)
    total = (
        f"Total ({_plural(len(diff.locations), 'location')})",
        format_bytes(diff.base_bytes),
        format_bytes(diff.new_bytes),
        signed_bytes(diff.delta_bytes),
        str(diff.base_count),
        str(diff.new_count),
        signed_count(diff.delta_count),
    )
    notes = []
    if len(shown) < len(changed):
        more = _plural(len(changed) - len(shown), "more changed location")
        notes.append(f"{more} not shown (-r)")
    if n_unchanged:
        notes.append(f"{_plural(n_unchanged, 'unchanged location')} not shown")
    if diff.arena_leaks():
        notes.append(
            "leaks of a capture made with pymalloc and without --trace-python-allocators "
            "include memory pymalloc keeps for reuse; for leaks you can trust, record with "
            "--trace-python-allocators or PYTHONMALLOC=malloc"
        )
    title = f"memray diff: {KIND_TITLES.get(diff.kind, diff.kind)}"
    if not use_rich:
        print(title, file=out)
        print(f"BASE: {describe_capture(diff.base)}", file=out)
        print(f"NEW:  {describe_capture(diff.new)}", file=out)
        print(file=out)
        cells = [_cells(loc) for loc in shown] + [total]
        plain_table(COLUMNS, cells, right_aligned=[False] + [True] * 6, file=out)
        for note in notes:
            print(f"({note})", file=out)
        return
    _render_rich(out, diff, title, shown, total, notes)


def _render_rich(
    out: IO[str],
    diff: Diff,
    title: str,
    shown: list[Location],
    total: tuple[str, ...],
    notes: list[str],
) -> None:
    """The same rows for a person: the counts share one column ("3 -> 5 (+2)")
    and there are no vertical rules, so that an 80-column terminal leaves
    room for the location, the one column that folds."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    caption = (
        f"BASE: {escape(describe_capture(diff.base))}\nNEW:  {escape(describe_capture(diff.new))}"
    )
    table = Table(
        title=escape(title),
        caption=caption,
        caption_justify="left",
        show_footer=True,
        box=box.SIMPLE_HEAD,
        expand=False,
    )

    def paint(text: str, delta: int) -> str:
        color = "red" if delta > 0 else "green" if delta < 0 else "dim"
        return f"[{color}]{escape(text)}[/]"

    def counts(base: str, new: str, delta: str) -> str:
        return f"{base} -> {new} ({delta})"

    headers = ("Location", "Base", "New", "Change", "Allocations")
    footers = (total[0], total[1], total[2], total[3], counts(*total[4:7]))
    for index, (name, footer) in enumerate(zip(headers, footers)):
        table.add_column(
            name,
            footer=escape(footer),
            justify="left" if index == 0 else "right",
            overflow="fold",
            no_wrap=index > 0,
            ratio=1 if index == 0 else None,
        )
    for loc in shown:
        cells = _cells(loc)
        table.add_row(
            escape(cells[0]),
            cells[1],
            cells[2],
            paint(cells[3], loc.delta_bytes),
            paint(counts(cells[4], cells[5], cells[6]), loc.delta_count),
        )
    console = rich_console(out)
    console.print(table)
    for note in notes:
        console.print(f"[dim]({escape(note)})[/]")


# --- JSON -------------------------------------------------------------------


def capture_json(capture: Capture) -> dict[str, Any]:
    metadata = capture.metadata
    return {
        "path": capture.path,
        "command_line": str(getattr(metadata, "command_line", "") or ""),
        "file_format": getattr(getattr(metadata, "file_format", None), "name", None),
        "peak_memory": int(getattr(metadata, "peak_memory", 0) or 0),
    }


def to_json(diff: Diff, *, fail_over: int | None = None) -> dict[str, Any]:
    """The schema documented in docs/regressions.rst ("JSON output")."""
    data: dict[str, Any] = {
        "version": JSON_SCHEMA_VERSION,
        "kind": diff.kind,
        "base": capture_json(diff.base),
        "new": capture_json(diff.new),
        "totals": {
            "base_bytes": diff.base_bytes,
            "new_bytes": diff.new_bytes,
            "delta_bytes": diff.delta_bytes,
            "base_count": diff.base_count,
            "new_count": diff.new_count,
            "delta_count": diff.delta_count,
        },
        "fail_over": None
        if fail_over is None
        else {"bytes": fail_over, "failed": diff.delta_bytes > fail_over},
        "locations": [loc.to_json() for loc in diff.sorted_locations()],
    }
    return data


# --- HTML -------------------------------------------------------------------

# Rows of the location table embedded in the page (the flame graph has all).
MAX_HTML_ROWS = 2000


class _TreeBuilder:
    """The columnar trie the page draws (assets/diff.js): the flame graph's
    layout (reporters/flamegraph.py) with a BASE and a NEW value per sample."""

    def __init__(self) -> None:
        self.strings = StringTable()
        self._frame_ids: dict[DiffFrame, int] = {}
        self.frames: dict[str, list[int]] = {
            "func": [],
            "file": [],
            "line": [],
            "base_line": [],
            "flags": [],
            "src": [],
        }
        self._children: dict[tuple[int, int], int] = {}
        self.parent: list[int] = [-1]
        self.node_frame: list[int] = [-1]
        self.samples: dict[str, list[int]] = {
            "node": [],
            "base_size": [],
            "base_count": [],
            "new_size": [],
            "new_count": [],
        }

    def _frame_id(self, frame: DiffFrame) -> int:
        fid = self._frame_ids.get(frame)
        if fid is not None:
            return fid
        function, file, new_line, base_line = frame
        frames = self.frames
        fid = self._frame_ids[frame] = len(frames["func"])
        frames["func"].append(self.strings.add(str(function)))
        frames["file"].append(self.strings.add(str(file)))
        # -1: the frame has no line in that capture.
        frames["line"].append(-1 if new_line is None else int(new_line))
        frames["base_line"].append(-1 if base_line is None else int(base_line))
        frames["flags"].append(frame_flags(function, file, False))
        # Source is read where the report is made: NEW's lines only.
        frames["src"].append(
            self.strings.add("" if new_line is None else source_line(file, int(new_line)))
        )
        return fid

    def add(self, stack: tuple[DiffFrame, ...], values: list[int]) -> None:
        node = 0
        for frame in reversed(stack):
            fid = self._frame_id(frame)
            key = (node, fid)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = len(self.parent)
                self.parent.append(node)
                self.node_frame.append(fid)
            node = child
        s = self.samples
        s["node"].append(node)
        s["base_size"].append(values[0])
        s["base_count"].append(values[1])
        s["new_size"].append(values[2])
        s["new_count"].append(values[3])


def render_html(diff: Diff, *, fail_over: int | None = None) -> str:
    """The self-contained diff page (templates/diff.html, assets/diff.js)."""
    builder = _TreeBuilder()
    for stack, values in diff.stacks.items():
        builder.add(stack, values)
    rows = [loc for loc in diff.sorted_locations() if loc.changed]
    data = {
        "strings": builder.strings.strings,
        "frames": builder.frames,
        "nodes": {"parent": builder.parent, "frame": builder.node_frame},
        "samples": builder.samples,
        "totals": to_json(diff, fail_over=fail_over)["totals"],
        "rows": [loc.to_json() | {"label": loc.label()} for loc in rows[:MAX_HTML_ROWS]],
        "more_rows": max(0, len(rows) - MAX_HTML_ROWS),
    }
    title = KIND_TITLES.get(diff.kind, diff.kind)
    failed = fail_over is not None and diff.delta_bytes > fail_over
    return render_template(
        "diff.html",
        data=data,
        title=f"memray diff: {title}",
        kind_title=title,
        meta=describe_metadata(diff.new.metadata),
        leaks_warning=diff.arena_leaks(),
        base=_side(diff.base),
        new=_side(diff.new),
        totals={
            "base": format_bytes(diff.base_bytes),
            "new": format_bytes(diff.new_bytes),
            "delta": signed_bytes(diff.delta_bytes),
            "delta_count": signed_count(diff.delta_count),
            "grew": diff.delta_bytes > 0,
            "shrank": diff.delta_bytes < 0,
        },
        fail_over=None if fail_over is None else format_bytes(fail_over),
        failed=failed,
    )


def _side(capture: Capture) -> Mapping[str, str]:
    meta = describe_metadata(capture.metadata)
    return {
        "path": capture.path,
        "command_line": meta["command_line"],
        "file_format": str(getattr(getattr(capture.metadata, "file_format", None), "name", "")),
        "peak_memory": meta["peak_memory"],
    }
