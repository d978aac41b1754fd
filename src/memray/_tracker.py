"""The Tracker context manager: turns tracking on for the body of a ``with``."""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import itertools
import os
import pathlib
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from . import _children, _memray
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
    """Profile hook a new thread runs once: records its name, follows its
    greenlets, then leaves."""
    sys.setprofile(None)
    _memray.set_thread_name(threading.get_native_id(), threading.current_thread().name)
    if _greenlets is not None:
        _greenlets.trace_this_thread()


# Greenlets: each one is a thread of its own in the records (as in memray
# 1.x), with an id above any the kernel gives (pid_max is at most 2**22). The
# stacks need nothing: each allocation reads the running frame chain, which a
# switch changes. greenlet's trace function is per thread: it is installed on
# the thread that starts tracking, on threads started while tracking, and on
# the thread that imports greenlet when that comes later.
_GREENLET_TID_BASE = 1 << 31


class _GreenletIds:
    def __init__(self, module: Any) -> None:
        self._module = module
        self._ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._counter = itertools.count(_GREENLET_TID_BASE + 1)
        self._previous: dict[int, Any] = {}  # thread -> the trace function ours replaced

    def trace_this_thread(self) -> None:
        thread = threading.get_ident()
        if thread not in self._previous:
            self._previous[thread] = self._module.settrace(self._trace)
            self._switched_to(self._module.getcurrent())

    def _trace(self, event: str, args: Any) -> None:
        previous = self._previous.get(threading.get_ident())
        if _greenlets is not self:  # tracking stopped: step aside
            self._module.settrace(previous)
            self._previous.pop(threading.get_ident(), None)
        elif event in ("switch", "throw"):
            self._switched_to(args[1])
        if previous is not None:
            previous(event, args)

    def _switched_to(self, target: Any) -> None:
        if target.parent is None:  # the thread's own greenlet
            _memray.set_greenlet_tid(0)
            return
        tid = self._ids.get(target)
        if tid is None:
            tid = self._ids[target] = next(self._counter)
        _memray.set_greenlet_tid(tid)

    def close(self) -> None:
        """Puts back this thread's trace function; other threads' go back at
        their next switch."""
        thread = threading.get_ident()
        if thread in self._previous:
            self._module.settrace(self._previous.pop(thread))
        _memray.set_greenlet_tid(0)


class _GreenletImportWatcher(importlib.abc.MetaPathFinder):
    """Follows greenlets from the moment greenlet is imported, when that
    happens while tracking."""

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "greenlet" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _FollowGreenlets(spec.loader)
        return spec


class _FollowGreenlets(importlib.abc.Loader):
    """greenlet's own loader, which then starts following greenlets."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _follow_greenlets(module)


def _follow_greenlets(module: Any) -> None:
    global _greenlets
    if _memray.is_tracking() and _greenlets is None and hasattr(module, "settrace"):
        _greenlets = _GreenletIds(module)
        _greenlets.trace_this_thread()


def _stop_following_greenlets(watcher: _GreenletImportWatcher | None) -> None:
    global _greenlets
    if watcher is not None and watcher in sys.meta_path:
        sys.meta_path.remove(watcher)
    if _greenlets is not None:
        ids, _greenlets = _greenlets, None
        ids.close()


_greenlets: _GreenletIds | None = None

# A child that follows the fork starts its memory sampler here, once fork()
# has returned, never inside it.
os.register_at_fork(after_in_child=_memray._after_fork_in_child)
# ... and, when it follows children, becomes the process they descend from.
os.register_at_fork(after_in_child=_children.after_fork_in_child)


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

    ``follow_children=True`` (new in 2.x; implies ``follow_fork``) also tracks
    every Python process the program starts, by fork, multiprocessing or
    subprocess, each into ``<file_name>.<pid>`` (docs/children.rst).

    ``sample_every=N`` (new in 2.x, bytes) records a sample of the
    allocations instead of all of them: each allocated byte is sampled with
    probability 1/N, so an allocation of s bytes is recorded with probability
    1 - exp(-s/N). Readers and reports weigh what was recorded to give
    unbiased estimates of every size (peak, leaks, totals), and say so.
    Allocations by mmap are always recorded. Meant for production: the
    overhead falls with N (docs/sampling.rst).
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
        follow_children: bool = False,
        sample_every: int = 0,
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
        if isinstance(sample_every, bool) or not isinstance(sample_every, int):
            raise TypeError("sample_every must be an int (bytes), 0 to record everything")
        if not 0 <= sample_every < 2**63:
            raise ValueError("sample_every must be 0 (record everything) or a number of bytes")
        self._sample_every = sample_every
        self._destination: Destination = destination
        self._socket: Any = None  # live tracking: the connected reader, until start
        self._native_traces = bool(native_traces)
        self._memory_interval_ms = int(memory_interval_ms)
        self._follow_fork = bool(follow_fork)
        self._follow_children = bool(follow_children)
        # A child started by memray_children.pth: (session, parent pid, image).
        self._child_of: tuple[_children.Session, int, int] | None = None
        self._command_line: str | None = None  # None: " ".join(sys.argv) at start
        self._active = False
        self._trace_python_allocators = bool(trace_python_allocators)
        self._file_format = file_format
        self._used = False
        self._previous_profile: Any = None
        self._greenlet_watcher: _GreenletImportWatcher | None = None
        if isinstance(destination, SocketDestination):
            if follow_fork:
                raise RuntimeError("follow_fork requires an output file")
            if follow_children:
                raise RuntimeError("follow_children requires an output file")
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
        # A followed child that starts a Tracker of its own: the program's
        # Tracker takes over from the one memray started for the child.
        if _memray.is_tracking() and not _children.stop_child_tracker():
            raise RuntimeError("No more than one Tracker instance can be active at the same time")
        self._used = True
        dest = self._destination
        to_file = isinstance(dest, FileDestination)
        sink, self._socket = self._socket, None
        session = self._children_session() if self._follow_children else None
        _memray.start(
            self._path,
            overwrite=dest.overwrite if to_file else False,
            buffered=dest.buffered if to_file else False,
            compress=dest.compress_on_exit if to_file else False,
            aggregated=self._file_format == FileFormat.AGGREGATED_ALLOCATIONS,
            native=self._native_traces,
            trace_pymalloc=self._trace_python_allocators,
            follow_fork=self._follow_fork or self._follow_children,
            interval_ms=self._memory_interval_ms,
            command_line=(
                self._command_line if self._command_line is not None else " ".join(sys.argv)
            ),
            python_allocator=int(_python_allocator()),
            boundary_frame=boundary,
            sink=sink,
            fork_base=session.base if session is not None else None,
            parent_pid=session.parent if session is not None else 0,
            sample_every=self._sample_every,
        )
        self._active = True
        if session is not None:
            _children.export(session)
        for thread in threading.enumerate():
            if thread.native_id is not None:
                _memray.set_thread_name(thread.native_id, thread.name)
        self._previous_profile = threading.getprofile()
        threading.setprofile(_name_this_thread)
        _record_thread_renames(True)
        if "greenlet" in sys.modules:
            _follow_greenlets(sys.modules["greenlet"])
        else:
            self._greenlet_watcher = _GreenletImportWatcher()
            sys.meta_path.insert(0, self._greenlet_watcher)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        self._active = False
        if self._follow_children:
            _children.unexport()
        threading.setprofile(self._previous_profile)
        _record_thread_renames(False)
        _stop_following_greenlets(self._greenlet_watcher)
        failure = _memray.stop()
        if failure is None:
            return
        what, error = failure
        if what == "compress":
            message = (
                f"memray could not compress {self._path} ({error}); the capture is complete, "
                "and left uncompressed"
            )
        elif isinstance(self._destination, SocketDestination):
            message = (
                f"memray stopped streaming to the live reader at {self._path} early ({error}); "
                "the program went on untracked"
            )
        else:
            message = (
                f"memray stopped recording early ({error}); {self._path} holds the allocations "
                "recorded until then"
            )
        warnings.warn(message, RuntimeWarning, stacklevel=2)

    def _follow_as_child(self, session: _children.Session, *, parent: int, image: int) -> None:
        """This Tracker tracks a child of ``session`` (memray_children.pth)."""
        self._child_of = (session, parent, image)

    def _children_session(self) -> _children.Session:
        """What this process's children inherit: a new session for a Tracker
        the program started, the inherited one (now naming this process) for
        a followed child."""
        if self._child_of is not None:
            session, parent, image = self._child_of
            return dataclasses.replace(session, pid=os.getpid(), parent=parent, image=image)
        dest = self._destination
        assert isinstance(dest, FileDestination)
        return _children.new_session(
            self._path,
            native=self._native_traces,
            trace_python_allocators=self._trace_python_allocators,
            aggregated=self._file_format == FileFormat.AGGREGATED_ALLOCATIONS,
            interval_ms=self._memory_interval_ms,
            compress=dest.compress_on_exit,
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
