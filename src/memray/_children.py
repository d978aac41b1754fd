"""Following child processes: ``Tracker(follow_children=True)`` and
``memray run --follow-children``.

It owns the environment variable that carries tracking from a tracked process
to every Python interpreter it starts, the start-up side that reads it (run by
``memray_children.pth``, which the package installs into site-packages), and
the names of the captures. Forked children are followed by the C tracker
itself (follow_fork); this module only tells it where they write. See
docs/children.rst.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any

# Set while a Tracker that follows children runs, in that process's
# os.environ, so that only its descendants ever see it. memray_children.pth
# tests for it before importing anything.
ENV_VAR = "MEMRAY_FOLLOW_CHILDREN"
_VERSION = 1


@dataclass(frozen=True)
class Session:
    """What the variable carries: the root's options, and who set it."""

    base: str  # absolute path of the root's capture; children write <base>.<pid>
    native: bool
    trace_python_allocators: bool
    aggregated: bool
    interval_ms: int
    compress: bool
    root: int  # pid of the process whose Tracker started the session
    token: str  # random, one per session
    # The tracked process that last set the variable (the nearest tracked
    # ancestor of whoever reads it, or the reader itself after an exec), its
    # own parent pid and its image number (how many times that pid exec'd a
    # tracked Python before).
    pid: int
    parent: int
    image: int

    def encode(self) -> str:
        return json.dumps({"v": _VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Session:
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("v", None) != _VERSION:
            raise ValueError("unknown version")
        session = cls(**data)
        if not isinstance(session.base, str) or not os.path.isabs(session.base):
            raise ValueError("base is not an absolute path")
        for name in ("interval_ms", "root", "pid", "parent", "image"):
            value = getattr(session, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"bad {name}")
        return session


def capture_name(base: str, pid: int, image: int) -> str:
    """``<base>.<pid>``, or ``<base>.<pid>.<image>`` for the image-th Python
    that the process with that pid exec'd into."""
    return f"{base}.{pid}" + (f".{image}" if image else "")


# ---- the tracked side: a Tracker that follows children ------------------------

_exported: Session | None = None  # the session this process's Tracker exported
_previous_value: str | None = None  # the variable before that, put back at the end


def new_session(
    base: str,
    *,
    native: bool,
    trace_python_allocators: bool,
    aggregated: bool,
    interval_ms: int,
    compress: bool,
    parent: int = 0,
    image: int = 0,
    root: int | None = None,
    token: str | None = None,
) -> Session:
    import secrets  # not at import: every followed child imports this module

    return Session(
        base=os.path.abspath(base),
        native=native,
        trace_python_allocators=trace_python_allocators,
        aggregated=aggregated,
        interval_ms=interval_ms,
        compress=compress,
        root=os.getpid() if root is None else root,
        token=secrets.token_hex(8) if token is None else token,
        pid=os.getpid(),
        parent=parent,
        image=image,
    )


def export(session: Session) -> None:
    """Puts the session in os.environ (and so in the C environment every
    child inherits) until ``unexport``."""
    global _exported, _previous_value
    _previous_value = os.environ.get(ENV_VAR)
    _exported = session
    os.environ[ENV_VAR] = session.encode()


def unexport() -> None:
    """Puts back what the variable held before ``export``."""
    global _exported, _previous_value
    if _exported is None:
        return
    _exported = None
    previous, _previous_value = _previous_value, None
    if previous is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = previous


def after_fork_in_child() -> None:
    """os.fork() in a process that exports a session: the child is followed
    by the C tracker into <base>.<pid>, and is now the tracked process its own
    children descend from (and a Python it execs writes <base>.<pid>.1)."""
    global _exported
    if _exported is None:
        return
    parent = _exported.pid
    _exported = replace(_exported, pid=os.getpid(), parent=parent, image=0)
    os.environ[ENV_VAR] = _exported.encode()


# ---- the child side: started by memray_children.pth ---------------------------

_child_tracker: Any = None  # the Tracker start_from_environment started
_started = False  # the .pth may run twice (a venv's lib64 -> lib symlink)


def start_from_environment() -> None:
    """At interpreter start-up, in a process that inherited the variable:
    tracks this process into its own capture until it exits. Never raises: a
    child that cannot be tracked runs untracked, with one line on stderr."""
    global _started
    if _started:
        return
    _started = True
    text = os.environ.get(ENV_VAR)
    if not text:
        return
    try:
        session = Session.decode(text)
    except (ValueError, TypeError) as error:
        _warn(f"ignoring {ENV_VAR} ({error})")
        return
    try:
        _start_child(session)
    except Exception as error:  # noqa: BLE001 -- the child must run, tracked or not
        _warn(f"not tracking this process: {' '.join(str(error).split())}")


def _start_child(session: Session) -> None:
    global _child_tracker
    from ._destination import FileDestination
    from ._enums import FileFormat
    from ._tracker import Tracker

    pid = os.getpid()
    if session.pid == pid:  # this process exec'd from a tracked Python image
        parent, image = session.parent, session.image + 1
    else:
        parent, image = session.pid, 0
    tracker = Tracker(
        destination=FileDestination(
            capture_name(session.base, pid, image),
            overwrite=True,
            compress_on_exit=session.compress,
        ),
        native_traces=session.native,
        memory_interval_ms=session.interval_ms,
        trace_python_allocators=session.trace_python_allocators,
        file_format=(
            FileFormat.AGGREGATED_ALLOCATIONS if session.aggregated else FileFormat.ALL_ALLOCATIONS
        ),
        follow_children=True,
    )
    tracker._follow_as_child(session, parent=parent, image=image)
    tracker._command_line = " ".join(getattr(sys, "orig_argv", sys.argv))
    tracker._enter(None)
    _child_tracker = tracker
    atexit.register(_stop_at_exit)


def _stop_at_exit() -> None:
    stop_child_tracker()


def stop_child_tracker() -> bool:
    """Finishes the capture start_from_environment started, if it still
    runs: at exit, or when the program starts a Tracker of its own (which
    then takes over). True if it was running."""
    global _child_tracker
    tracker, _child_tracker = _child_tracker, None
    if tracker is None or not tracker._active:
        return False
    tracker.__exit__(None, None, None)
    return True


def _warn(message: str) -> None:
    try:
        print(f"memray: {message}", file=sys.stderr, flush=True)
    except (AttributeError, ValueError, OSError):
        pass


# ---- the captures of a session ----------------------------------------------


def _children_pattern(base: str) -> re.Pattern[str]:
    return re.compile(re.escape(os.path.basename(base)) + r"\.[0-9]+(\.[0-9]+)?")


def capture_files(base: str) -> dict[str, tuple[int, int, int]]:
    """The capture and its children's captures now on disk (``<base>`` and
    ``<base>.<pid>[.<image>]``): path -> (inode, size, mtime in ns)."""
    base = os.path.abspath(base)
    directory = os.path.dirname(base)
    pattern = _children_pattern(base)
    found: dict[str, tuple[int, int, int]] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    for name in names:
        if name != os.path.basename(base) and not pattern.fullmatch(name):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        found[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


def written_since(base: str, before: dict[str, tuple[int, int, int]]) -> list[str]:
    """The captures of ``base``'s session: those that are new or changed
    since ``before`` (``capture_files`` taken before the session started), so
    captures an earlier run left are not counted. Sorted."""
    now = capture_files(base)
    return sorted(path for path, state in now.items() if before.get(path) != state)
