"""The Tracker context manager: turns tracking on for the body of a ``with``."""

from __future__ import annotations

import os
import pathlib
import sys
import threading
import warnings
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from . import _memray
from ._destination import Destination, FileDestination, SocketDestination
from ._enums import FileFormat, PythonAllocatorType


def _python_allocator() -> PythonAllocatorType:
    name = os.environ.get("PYTHONMALLOC", "")
    if name in ("", "pymalloc", "default"):
        return (
            PythonAllocatorType.PYMALLOC_DEBUG
            if sys.flags.dev_mode
            else (PythonAllocatorType.PYMALLOC)
        )
    if name in ("pymalloc_debug", "debug"):
        return PythonAllocatorType.PYMALLOC_DEBUG
    if name in ("malloc", "malloc_debug"):
        return PythonAllocatorType.MALLOC
    return PythonAllocatorType.OTHER


def _name_this_thread(frame: FrameType, event: str, arg: Any) -> None:
    """Profile hook a new thread runs once: records its name, then leaves."""
    sys.setprofile(None)
    _memray.set_thread_name(threading.get_native_id(), threading.current_thread().name)


# threading.Thread.name as the standard library defines it. While a Tracker
# runs, setting a thread's name also records it (a rename after start does
# not reach the OS, so no hook sees it otherwise): allocations that follow
# carry the new name, as in memray 1.x.
_THREAD_NAME = threading.Thread.name


def _set_thread_name_and_record(thread: threading.Thread, name: str) -> None:
    _THREAD_NAME.fset(thread, name)
    if thread.native_id is not None:
        _memray.set_thread_name(thread.native_id, thread.name)


def _record_thread_renames(on: bool) -> None:
    threading.Thread.name = (
        property(_THREAD_NAME.fget, _set_thread_name_and_record, doc=_THREAD_NAME.__doc__)
        if on
        else _THREAD_NAME
    )


class Tracker:
    """Record every allocation made by this process while the ``with`` body runs.

    Exactly one of ``file_name`` and ``destination`` must be given. Tracking
    covers every thread of the process. Only one Tracker can be active at a
    time, and a Tracker can be used only once.
    """

    def __init__(
        self,
        file_name: pathlib.Path | str | None = None,
        *,
        destination: Destination | None = None,
        native_traces: bool = False,
        memory_interval_ms: int = 10,
        follow_fork: bool = False,
        trace_python_allocators: bool = False,
        file_format: FileFormat = FileFormat.ALL_ALLOCATIONS,
    ) -> None:
        if (file_name is None) == (destination is None):
            raise TypeError(
                "Exactly one of 'file_name' or 'destination' argument must be specified"
            )
        if file_name is not None:
            destination = FileDestination(path=file_name)
        if not isinstance(destination, (FileDestination, SocketDestination)):
            raise TypeError("destination must be a FileDestination or a SocketDestination")
        if not isinstance(file_format, FileFormat):
            raise TypeError("file_format must be a memray.FileFormat")
        if int(memory_interval_ms) <= 0:
            raise ValueError("memory_interval_ms must be a positive number of milliseconds")
        self._destination: Destination = destination
        self._socket: Any = None  # live tracking: the connected reader, until start
        self._native_traces = bool(native_traces)
        self._memory_interval_ms = int(memory_interval_ms)
        self._follow_fork = bool(follow_fork)
        self._trace_python_allocators = bool(trace_python_allocators)
        self._file_format = file_format
        self._used = False
        self._previous_profile: Any = None
        if isinstance(destination, SocketDestination):
            if follow_fork:
                raise RuntimeError("follow_fork requires an output file")
            if file_format != FileFormat.ALL_ALLOCATIONS:
                raise RuntimeError(
                    f"{file_format.name} requires an output file, not a socket destination"
                )
            self._path = f"{destination.address}:{destination.server_port}"
            self._socket = _wait_for_reader(destination)
            return
        self._path = os.fspath(destination.path)
        if not destination.overwrite and os.path.exists(self._path):
            raise FileExistsError(self._path)

    def __enter__(self) -> Tracker:
        return self._enter(sys._getframe(1))

    def _enter(self, boundary: FrameType | None) -> Tracker:
        """Starts tracking; frames outer to ``boundary`` (on this thread) are
        hidden from every recorded stack. ``memray run`` passes the program's
        ``<module>`` frame so runpy's and memray's own frames never show."""
        if self._used:
            raise RuntimeError("Tracker instances cannot be reused")
        if _memray.is_tracking():
            raise RuntimeError("No more than one Tracker instance can be active at the same time")
        self._used = True
        dest = self._destination
        to_file = isinstance(dest, FileDestination)
        sink, self._socket = self._socket, None
        _memray.start(
            self._path,
            overwrite=dest.overwrite if to_file else False,
            buffered=dest.buffered if to_file else False,
            compress=dest.compress_on_exit if to_file else False,
            aggregated=self._file_format == FileFormat.AGGREGATED_ALLOCATIONS,
            native=self._native_traces,
            trace_pymalloc=self._trace_python_allocators,
            follow_fork=self._follow_fork,
            interval_ms=self._memory_interval_ms,
            command_line=" ".join(sys.argv),
            python_allocator=int(_python_allocator()),
            boundary_frame=boundary,
            sink=sink,
        )
        for thread in threading.enumerate():
            if thread.native_id is not None:
                _memray.set_thread_name(thread.native_id, thread.name)
        self._previous_profile = threading.getprofile()
        threading.setprofile(_name_this_thread)
        _record_thread_renames(True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        threading.setprofile(self._previous_profile)
        _record_thread_renames(False)
        error = _memray.stop()
        if error is not None and isinstance(self._destination, SocketDestination):
            warnings.warn(
                f"memray stopped streaming to the live reader at {self._path} early ({error}); "
                "the program went on untracked",
                RuntimeWarning,
                stacklevel=2,
            )
        elif error is not None:
            warnings.warn(
                f"memray stopped recording early ({error}); {self._path} holds the allocations "
                "recorded until then",
                RuntimeWarning,
                stacklevel=2,
            )


class TrackingStartError(Exception):
    """A Tracker could not start; raised into the frame it was to start in."""


class StartOnEntry:
    """A one-shot profile function: starts ``tracker`` when a frame that
    ``is_target`` accepts is entered, with that frame as the boundary, so it
    is the outermost frame every recorded stack shows (not the frames of
    whoever runs it: runpy, IPython, memray itself).

    Install it with ``sys.setprofile``; it puts back ``previous`` (a profiler
    memray itself runs under) when it fires. ``on_start(frame)`` runs first,
    just before tracking starts (``Tracker`` reads ``sys.argv`` then).
    ``started`` tells afterwards whether tracking started.
    """

    def __init__(
        self,
        tracker: Tracker,
        is_target: Callable[[FrameType], bool],
        *,
        previous: Any = None,
        on_start: Callable[[FrameType], None] | None = None,
    ) -> None:
        self.tracker = tracker
        self.is_target = is_target
        self.previous = previous
        self.on_start = on_start
        self.started = False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self.is_target(frame):
            return
        sys.setprofile(self.previous)
        if self.on_start is not None:
            self.on_start(frame)
        try:
            self.tracker._enter(frame)
        except Exception as error:
            message = " ".join(str(error).split())
            raise TrackingStartError(f"cannot start tracking: {message}") from error
        self.started = True

    def uninstall(self) -> None:
        """Puts back the previous profiler if the target frame never ran."""
        if sys.getprofile() is self:
            sys.setprofile(self.previous)


def _wait_for_reader(destination: SocketDestination) -> Any:
    """Listens on the destination and waits (Ctrl-C interrupts) for the one
    reader the records will stream to."""
    port = destination.server_port
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"server_port must be an integer between 1 and 65535, not {port!r}")
    where = f"{destination.address}:{port}"
    try:
        return _memray.SocketSink(destination.address, port)
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(
            error.errno, f"cannot wait for a live reader on {where}: {error.strerror}"
        ) from None
