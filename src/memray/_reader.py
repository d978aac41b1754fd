"""Reading captures back: FileReader, the record and metadata classes,
compute_statistics and dump_all_records.

Every pass over a capture runs in C (``memray._memray.CapturePass``: the
decoder and the aggregators); this module opens files, keeps what the first
pass learned, and shapes results into the public classes. It never loops over
raw records itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Self, Union

from memray import _memray
from memray._enums import AllocatorType, FileFormat

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: One capture, or several (of the processes of one program) read as one.
Captures = Union[PathLike, Sequence[PathLike]]
PythonStackElement = tuple[str, str, int]
NativeStackElement = tuple[str, str, int]

#: An allocation, a deallocation, or allocations grouped by location (C type).
AllocationRecord = _memray.AllocationRecord

_PYTHON_ALLOCATOR_NAMES = {0: "pymalloc", 1: "pymalloc debug", 2: "malloc", 3: "other"}


class MemorySnapshot(NamedTuple):
    """Process memory at one moment: ``time`` in ms since the epoch, ``rss``
    and ``heap`` (bytes of tracked allocations alive then) in bytes.

    New in 2.x, where the capture recorded them (else 0; see docs/memory.rst):
    the resident set split by what backs it, ``anon_rss + file_rss +
    shared_rss == rss``: ``anon_rss`` private anonymous memory (the heap, and
    what memray does not see: the interpreter's own memory, static data,
    allocator free lists and fragmentation), ``file_rss`` pages of mapped files
    (code of Python and its libraries, mmap'd files), ``shared_rss`` shared
    memory (/dev/shm and tmpfs files, shared anonymous mappings); and
    ``mapped_heap``, the part of ``heap`` that is mmap calls mapping files or
    shared memory (resident, if at all, in ``file_rss`` or ``shared_rss``).
    """

    time: int
    rss: int
    heap: int
    anon_rss: int = 0
    file_rss: int = 0
    shared_rss: int = 0
    mapped_heap: int = 0

    @property
    def has_rss_breakdown(self) -> bool:
        """Whether the capture recorded the split of ``rss``."""
        return self.anon_rss + self.file_rss + self.shared_rss > 0

    @property
    def anon_heap(self) -> int:
        """The heap outside mappings of files and shared memory: the part
        anonymous memory holds, when it is resident."""
        return max(0, self.heap - self.mapped_heap)

    @property
    def untracked_anon_rss(self) -> int:
        """Anonymous resident memory beyond the tracked heap (0 when that
        heap is larger: part of it allocated but never touched)."""
        return max(0, self.anon_rss - self.anon_heap)


class Interval(NamedTuple):
    """Allocations at one location that were alive from snapshot interval
    ``allocated_before_snapshot`` up to (not including)
    ``deallocated_before_snapshot`` (None: never freed)."""

    allocated_before_snapshot: int
    deallocated_before_snapshot: int | None
    n_allocations: int
    n_bytes: int


class ProcessInfo(NamedTuple):
    """One process of a merged capture (``memray merge``, or a reader given
    several captures)."""

    pid: int
    parent_pid: int
    command_line: str
    #: When its tracking started, in ms after the merged capture's start.
    start_offset_ms: int


@dataclass(frozen=True)
class Metadata:
    start_time: datetime
    end_time: datetime
    total_allocations: int
    total_frames: int
    peak_memory: int
    command_line: str
    pid: int
    main_thread_id: int
    python_allocator: str
    has_native_traces: bool
    trace_python_allocators: bool
    file_format: FileFormat
    # New in 2.x: the pid of the tracked process this one descends from
    # (follow_fork, follow_children); 0 for the capture a Tracker started.
    parent_pid: int = 0
    # New in 2.x: a merged capture's processes, in the order they first
    # appear; () for a capture of one process.
    processes: tuple[ProcessInfo, ...] = ()
    # New in 2.x: Tracker(sample_every=N): each allocated byte was sampled
    # with probability 1/N, and every size the reader gives is an estimate;
    # 0 when every allocation was recorded.
    sample_every: int = 0


@dataclass
class Stats:
    """The numbers behind ``memray stats``."""

    metadata: Metadata
    total_num_allocations: int
    total_memory_allocated: int
    peak_memory_allocated: int
    allocation_count_by_size: dict[int, int]
    allocation_count_by_allocator: dict[str, int]
    top_locations_by_size: list[tuple[PythonStackElement, int]]
    top_locations_by_count: list[tuple[PythonStackElement, int]]
    top_modules_by_allocation_size: list[tuple[str, int, int]] = field(default_factory=list)
    top_modules_by_allocation_count: list[tuple[str, int, int]] = field(default_factory=list)
    # New in 2.x: the memory samples where the heap and where RSS were
    # highest (None without samples), with RSS's split when recorded.
    memory_at_heap_peak: MemorySnapshot | None = None
    memory_at_rss_peak: MemorySnapshot | None = None


class TemporalAllocationRecord:
    """A location (thread, allocator, stacks) and its ``intervals``: how many
    allocations of how many bytes it had alive over which snapshot intervals."""

    __slots__ = ("_location", "intervals")

    def __init__(self, location: Any, intervals: list[Interval]) -> None:
        self._location = location
        self.intervals = intervals

    @property
    def tid(self) -> int:
        return self._location.tid

    @property
    def allocator(self) -> AllocatorType:
        return self._location.allocator

    @property
    def stack_id(self) -> int:
        return self._location.stack_id

    @property
    def native_stack_id(self) -> int:
        return self._location.native_stack_id

    @property
    def native_segment_generation(self) -> int:
        return self._location.native_segment_generation

    @property
    def thread_name(self) -> str:
        return self._location.thread_name

    @property
    def size(self) -> int:
        """Bytes summed over all intervals (a location carries no single size)."""
        return sum(interval.n_bytes for interval in self.intervals)

    @property
    def n_allocations(self) -> int:
        """Allocations summed over all intervals."""
        return sum(interval.n_allocations for interval in self.intervals)

    def stack_trace(self, max_stacks: int | None = None) -> list[PythonStackElement]:
        return self._location.stack_trace(max_stacks)

    def native_stack_trace(self, max_stacks: int | None = None) -> list[NativeStackElement]:
        return self._location.native_stack_trace(max_stacks)

    def hybrid_stack_trace(
        self, max_stacks: int | None = None
    ) -> list[PythonStackElement | NativeStackElement]:
        return self._location.hybrid_stack_trace(max_stacks)

    def _key(self) -> tuple[Any, ...]:
        loc = self._location
        return (
            loc.tid,
            int(loc.allocator),
            loc.stack_id,
            loc.native_stack_id,
            loc.native_segment_generation,
            tuple(self.intervals),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TemporalAllocationRecord):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        loc = self._location
        tid = "merged" if loc.tid < 0 else str(loc.tid)
        return (
            f"TemporalAllocationRecord<tid={tid}, allocator={loc.allocator.name}, "
            f"stack_id={loc.stack_id}, intervals={self.intervals!r}>"
        )


# ---- helpers ----------------------------------------------------------------


def _name_of(path: str | bytes) -> str:
    return path if isinstance(path, str) else os.fsdecode(path)


def _ms_to_datetime(ms: int, name: str) -> datetime:
    try:
        return datetime.fromtimestamp(ms // 1000).replace(microsecond=ms % 1000 * 1000).astimezone()
    except (OverflowError, OSError, ValueError):
        raise OSError(f"{name}: corrupt capture: time {ms} ms is out of range") from None


def _make_metadata(
    header: dict[str, Any],
    *,
    name: str,
    total_allocations: int,
    total_frames: int,
    peak: int,
    end_ms: int,
    processes: list[dict[str, Any]] | None = None,
) -> Metadata:
    return Metadata(
        start_time=_ms_to_datetime(header["start_ms"], name),
        end_time=_ms_to_datetime(end_ms, name),
        total_allocations=total_allocations,
        total_frames=total_frames,
        peak_memory=peak,
        command_line=header["command_line"],
        pid=header["pid"],
        main_thread_id=header["main_tid"],
        python_allocator=_PYTHON_ALLOCATOR_NAMES.get(header["python_allocator"], "other"),
        has_native_traces=header["native"],
        trace_python_allocators=header["trace_python_allocators"],
        file_format=(
            FileFormat.AGGREGATED_ALLOCATIONS
            if header["aggregated"]
            else FileFormat.ALL_ALLOCATIONS
        ),
        parent_pid=header.get("parent_pid", 0),
        sample_every=header.get("sample_every", 0),
        processes=tuple(
            ProcessInfo(p["pid"], p["parent_pid"], p["command_line"], p["start_offset_ms"])
            for p in processes or ()
        ),
    )


def _open_captures(file_name: Captures) -> tuple[Any, str]:
    """What CapturePass reads: an open descriptor of one capture, or a
    Merge of several; and the name for messages. A Merge checks every input
    and raises ValueError naming the one it cannot merge."""
    if isinstance(file_name, (str, bytes, os.PathLike)):
        paths = [os.fspath(file_name)]
    else:
        paths = [os.fspath(p) for p in file_name]
        if not paths:
            raise ValueError("no capture files given")
    if len(paths) == 1:
        fd = os.open(paths[0], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return fd, _name_of(paths[0])
    names = [_name_of(p) for p in paths]
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
        merge = _memray.Merge(fds, names)  # takes copies of the descriptors
    finally:
        for fd in fds:
            os.close(fd)
    return merge, f"{names[0]} and {len(names) - 1} more"


@contextlib.contextmanager
def _progress(
    enabled: bool, description: str, total: int | None
) -> Iterator[Callable[[int], None] | None]:
    """A transient rich progress bar fed by the C passes' periodic calls."""
    if not enabled:
        yield None
        return
    try:
        from rich.progress import Progress, SpinnerColumn
    except ImportError:  # progress is a nicety; reading works without rich
        yield None
        return
    with Progress(SpinnerColumn(), *Progress.get_default_columns(), transient=True) as bar:
        task = bar.add_task(f"[cyan]{description}...", total=total)

        def tick(done: int) -> None:
            bar.update(task, completed=done)

        yield tick


_NO_TEMPORARY = "Can't find temporary allocations using a pre-aggregated capture file."
_NO_ALL = "Can't get all allocations from a pre-aggregated capture file."
_NO_HISTORY = "Can't get allocation history using a pre-aggregated capture file."
_NO_STATS = "Can't compute statistics using a pre-aggregated capture file."


class FileReader:
    """Reads a capture file written by memray.Tracker.

    Opening runs one pass over the file (its metadata, memory snapshots, and
    what was alive at the heap's peak and at the end); the other queries run
    a pass each. Memory use is bounded by live allocations and distinct
    stacks, not by the size of the file.
    """

    def __init__(
        self,
        file_name: Captures,
        *,
        report_progress: bool = False,
        max_memory_records: int = 10000,
    ) -> None:
        self._fd: Any = None
        if max_memory_records < 1:
            raise ValueError("max_memory_records must be at least 1")
        self._report_progress = report_progress
        # Several captures (a process tree) are merged while they are read.
        fd, self._name = _open_captures(file_name)
        try:
            first = _memray.CapturePass(fd, self._name)
            header = first.header
            with _progress(report_progress, "Calculating high watermark", None) as tick:
                scan = first.scan(tick)
            aggregated = header["aggregated"]
            trailer = scan["trailer"]
            # As memray 1.x: the records get_allocation_records() yields,
            # frees included; an aggregated capture counts allocations.
            total = (
                (trailer["total_allocations"] if trailer else 0)
                if aggregated
                else scan["n_allocations"] + scan["n_frees"]
            )
            metadata = _make_metadata(
                header,
                name=self._name,
                total_allocations=total,
                total_frames=scan["n_frames"],
                peak=scan["peak"],
                end_ms=scan["end_ms"],
                processes=first.processes(),
            )
        except BaseException:
            if isinstance(fd, int):
                os.close(fd)
            raise
        self._fd = fd
        self._first = first
        self._header = header
        self._metadata = metadata
        self._n_events = scan["n_allocations"] + scan["n_frees"]
        snapshots = scan["snapshots"]
        # Like memray 1.x: past max_memory_records, keep every stride-th
        # snapshot, and let only those cut the temporal views into intervals.
        self._stride = 0
        if len(snapshots) > max_memory_records:
            self._stride = math.ceil(len(snapshots) / max_memory_records)
            snapshots = snapshots[:: self._stride]
        self._snapshots = [MemorySnapshot(*s) for s in snapshots]
        self._heap_peak_sample = _snapshot_or_none(scan["heap_peak_sample"])
        self._rss_peak_sample = _snapshot_or_none(scan["rss_peak_sample"])

    # -- lifetime

    def close(self) -> None:
        """Closes the file. Records already returned stay usable."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if isinstance(fd, int):
                os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()

    def _ensure_not_closed(self) -> None:
        if self._fd is None:
            raise ValueError("Operation on a closed FileReader")

    def _new_pass(self) -> Any:
        self._ensure_not_closed()
        return _memray.CapturePass(self._fd, self._name)

    def _is_aggregated(self) -> bool:
        return bool(self._header["aggregated"])

    @property
    def metadata(self) -> Metadata:
        return self._metadata

    # -- queries

    def get_high_watermark_allocation_records(
        self, merge_threads: bool = True
    ) -> Iterator[AllocationRecord]:
        """Allocations alive when the tracked heap was at its (first) peak,
        grouped by thread (unless merged), allocator and stacks."""
        self._ensure_not_closed()
        yield from self._first.peak_records(bool(merge_threads))

    def get_leaked_allocation_records(
        self, merge_threads: bool = True
    ) -> Iterator[AllocationRecord]:
        """Allocations still alive when tracking stopped, grouped."""
        self._ensure_not_closed()
        yield from self._first.leaked_records(bool(merge_threads))

    def get_temporary_allocation_records(
        self, merge_threads: bool = True, threshold: int = 1
    ) -> Iterator[AllocationRecord]:
        """Allocations freed by the thread that made them with at most
        ``threshold`` other allocations by that thread in between, grouped."""
        self._ensure_not_closed()
        if self._is_aggregated():
            raise NotImplementedError(_NO_TEMPORARY)
        if threshold < 0:
            raise ValueError("threshold must be 0 or more")
        if threshold >= 2**64:
            raise OverflowError(f"threshold must be less than 2**64, not {threshold}")
        records = self._new_pass()
        with _progress(
            self._report_progress, "Finding temporary allocations", self._n_events
        ) as tick:
            rows = records.temporary_records(bool(merge_threads), threshold, tick)
        yield from rows

    def get_allocation_records(self) -> Iterator[AllocationRecord]:
        """Every allocation and deallocation event, in order, read lazily."""
        self._ensure_not_closed()
        if self._is_aggregated():
            raise NotImplementedError(_NO_ALL)
        yield from self._new_pass()

    def get_temporal_allocation_records(
        self, merge_threads: bool = True
    ) -> Iterator[TemporalAllocationRecord]:
        """Every allocation that outlived a memory snapshot, as intervals of
        snapshots it was alive over, grouped by location."""
        self._ensure_not_closed()
        if self._is_aggregated():
            raise NotImplementedError(_NO_HISTORY)
        records = self._new_pass()
        with _progress(
            self._report_progress, "Processing allocation records", self._n_events
        ) as tick:
            rows = records.temporal_records(bool(merge_threads), self._stride, tick)
        for location, intervals in rows:
            yield TemporalAllocationRecord(location, [Interval(*i) for i in intervals])

    def get_temporal_high_water_mark_allocation_records(
        self, merge_threads: bool = True
    ) -> tuple[list[TemporalAllocationRecord], list[int]]:
        """For every snapshot interval, what each location had alive at the
        interval's heap peak (as runs of intervals with equal values), and
        the peak heap of every interval."""
        self._ensure_not_closed()
        if self._is_aggregated():
            raise NotImplementedError(_NO_HISTORY)
        records = self._new_pass()
        with _progress(
            self._report_progress, "Processing allocation records", self._n_events
        ) as tick:
            rows, peaks = records.temporal_hwm_records(bool(merge_threads), self._stride, tick)
        return (
            [TemporalAllocationRecord(loc, [Interval(*i) for i in ivs]) for loc, ivs in rows],
            peaks,
        )

    def get_memory_snapshots(self) -> Iterator[MemorySnapshot]:
        yield from self._snapshots

    def get_heap_peak_snapshot(self) -> MemorySnapshot | None:
        """The memory sample taken when the heap was highest (the first of
        equals; None without samples), of all samples however many
        ``max_memory_records`` kept."""
        return self._heap_peak_sample

    def get_rss_peak_snapshot(self) -> MemorySnapshot | None:
        """The memory sample with the highest RSS, as above."""
        return self._rss_peak_sample


def _snapshot_or_none(sample: Sequence[int] | None) -> MemorySnapshot | None:
    return None if sample is None else MemorySnapshot(*sample)


def compute_statistics(
    file_name: Captures,
    *,
    report_progress: bool = False,
    num_largest: int = 5,
) -> Stats:
    """The data behind ``memray stats``, computed in one pass (over several
    captures merged, when given several)."""
    source, name = _open_captures(file_name)
    try:
        stats_pass = _memray.CapturePass(source, name)
    finally:
        if isinstance(source, int):
            os.close(source)
    header = stats_pass.header
    if header["aggregated"]:
        raise NotImplementedError(_NO_STATS)
    with _progress(report_progress, "Computing statistics", None) as tick:
        st = stats_pass.statistics(tick)
    metadata = _make_metadata(
        header,
        name=name,
        total_allocations=st["n_records"],  # as FileReader's: frees included
        total_frames=st["n_frames"],
        peak=st["peak"],
        end_ms=st["end_ms"],
        processes=stats_pass.processes(),
    )
    # Frames are per FRAME id; equal (function, file, line) from different
    # code objects are one location to a reader. With native stacks, a
    # location is the innermost frame of the hybrid stack (a C function that
    # allocates), resolved once per distinct stack pair by the C pass.
    totals: dict[PythonStackElement, list[int]] = {}
    located = st["by_location"] if header["native"] else st["by_frame"]
    for location, count, nbytes in located:
        entry = totals.setdefault(location, [0, 0])
        entry[0] += count
        entry[1] += nbytes
    largest = max(0, num_largest)
    by_size = sorted(totals.items(), key=lambda kv: kv[1][1], reverse=True)[:largest]
    by_count = sorted(totals.items(), key=lambda kv: kv[1][0], reverse=True)[:largest]
    modules_by_size, modules_by_count = _top_modules(st["stacks"], st["by_stack"], largest)
    return Stats(
        metadata=metadata,
        total_num_allocations=st["total_allocations"],
        total_memory_allocated=st["total_bytes"],
        peak_memory_allocated=st["peak"],
        allocation_count_by_size=st["by_size"],
        allocation_count_by_allocator={
            AllocatorType(k).name: v for k, v in st["by_allocator"].items()
        },
        top_locations_by_size=[(loc, v[1]) for loc, v in by_size],
        top_locations_by_count=[(loc, v[0]) for loc, v in by_count],
        top_modules_by_allocation_size=modules_by_size,
        top_modules_by_allocation_count=modules_by_count,
        memory_at_heap_peak=_snapshot_or_none(st["heap_peak_sample"]),
        memory_at_rss_peak=_snapshot_or_none(st["rss_peak_sample"]),
    )


# A file of the standard library: under lib/python3.X/ but not in a
# site-packages or dist-packages folder (the layout of every CPython install
# on POSIX, so it holds for captures made on another machine), under this
# interpreter's own stdlib folders, or a frozen module.
_STDLIB_RE = re.compile(r"/lib/python3\.\d+t?/(?!(site|dist)-packages/)")
_PACKAGES_RE = re.compile(r"/(?:site|dist)-packages/([^/]+)")


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib") if paths.get(k)}
    installed = {paths[k] for k in ("purelib", "platlib") if paths.get(k)}
    return tuple(d.rstrip("/") + "/" for d in dirs if not any(i.startswith(d) for i in installed))


def _module_of(file: str, stdlib_dirs: tuple[str, ...]) -> str | None:
    """The top-level module a frame's file belongs to (what memray 1.x's stats
    call a module: ``pkg`` for ``pkg/sub.py``, ``main`` for a script
    ``main.py``), or None for a file of the standard library."""
    if file.startswith("<frozen ") or _STDLIB_RE.search(file) or file.startswith(stdlib_dirs):
        return None
    if file.startswith("<"):
        return file  # "<string>", "<stdin>": code with no file
    match = _PACKAGES_RE.search(file)
    if match:
        return match.group(1).split(".")[0]
    path = os.path.abspath(file)
    directory, base = os.path.split(path)
    name = base.split(".")[0]
    # Up through the packages (folders with an __init__.py) of this machine.
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, name = os.path.split(directory)
    return name or file


def _top_modules(
    stacks: dict[int, list[PythonStackElement]],
    by_stack: list[tuple[int, int, int]],
    num_largest: int,
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """(module, allocations, bytes), by bytes and by count: each allocation
    is credited to the innermost frame of its stack outside the standard
    library ("<root>" when there is none), as memray 1.x does."""
    stdlib_dirs = _stdlib_dirs()
    module_of_file: dict[str, str | None] = {}
    module_of_stack: dict[int, str] = {}
    totals: dict[str, list[int]] = {}
    for stack_id, count, nbytes in by_stack:
        module = module_of_stack.get(stack_id)
        if module is None:
            module = "<root>"
            for _function, file, _line in stacks.get(stack_id, ()):
                if file not in module_of_file:
                    module_of_file[file] = _module_of(file, stdlib_dirs)
                if module_of_file[file] is not None:
                    module = module_of_file[file]
                    break
            module_of_stack[stack_id] = module
        entry = totals.setdefault(module, [0, 0])
        entry[0] += count
        entry[1] += nbytes
    rows = [(module, n, b) for module, (n, b) in totals.items()]
    by_size = sorted(rows, key=lambda r: (-r[2], -r[1], r[0]))[:num_largest]
    by_count = sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))[:num_largest]
    return by_size, by_count


def dump_all_records(file_name: PathLike) -> None:
    """Prints the header and every record of a capture, one line each (the
    output of ``memray parse``)."""
    path = os.fspath(file_name)
    _memray.CapturePass(path, _name_of(path)).dump(sys.stdout.write)


__all__ = [
    "AllocationRecord",
    "FileReader",
    "Interval",
    "MemorySnapshot",
    "Metadata",
    "Stats",
    "TemporalAllocationRecord",
    "compute_statistics",
    "dump_all_records",
]
