"""``memray attach PID`` / ``memray detach PID``: start and stop tracking in a
running Python process.

A debugger (gdb or lldb: ``--method``, by default whichever works first)
stops the process for a moment and runs a few lines of Python in it (with the
GIL): they enter a Tracker writing to the requested file, or exit it. The
process must be able to import memray; this installation's package directory
is put on its path for that import if needed. The injected code reports
success or its error through a status file, so the command prints one line;
when no debugger could run the code, the line gives each debugger's own
reason.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .common import CommandError, check_output_file, positive_int

HELP = "Start tracking a running Python process (through gdb or lldb)"
DESCRIPTION = (
    "Start tracking a running Python process: a debugger (gdb or lldb) injects a Tracker "
    "writing to the output file. Stop it with `memray detach PID`, or pass --duration."
)
DEBUGGER_TIMEOUT = 60
# --method auto tries these in order. gdb 13 cannot run code in another
# process on some CPUs ("Couldn't write extended state status"); lldb can.
METHODS = ("gdb", "lldb")
# Lines debuggers print that are not about the injection (Debian's lldb 14
# cannot load its Python scripting and says so on every start).
_NOISE = ("lldb.embedded_interpreter", "Traceback (most recent call last)", 'File "<string>"')

_STATUS_OPEN = """
import os
import sys

# The outcome goes to a file this code creates: O_EXCL and O_NOFOLLOW, in a
# directory only the process's user can write to. If anything is already
# there, nothing is done (and nothing is written).
status = os.fdopen(
    os.open(
        __STATUS__,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    ),
    "w",
)
"""

_STATUS_WRITE = """
with status:
    status.write(outcome)
"""

_ATTACH = (
    _STATUS_OPEN
    + """
try:
    try:
        import memray
    except ImportError:
        sys.path.insert(0, {pkg_parent!r})
        try:
            import memray
        finally:
            sys.path.remove({pkg_parent!r})
    import threading

    if not hasattr(memray, "_attach_lock"):
        memray._attach_lock = threading.Lock()  # attach, detach and the timer, one at a time
    if getattr(memray, "_attached_tracker", None) is not None:
        raise RuntimeError("memray is already attached to this process")
    tracker = memray.Tracker(
        destination=memray.FileDestination({output!r}, overwrite=True),
        native_traces={native!r},
        trace_python_allocators={pyalloc!r},
        follow_fork={follow_fork!r},
        file_format=memray.FileFormat.{file_format},
    )
    tracker._enter(None)
    memray._attached_tracker = tracker
    if {duration!r}:
        import time

        def _memray_detach_after(tracker=tracker, memray=memray):
            # Counts the time the program runs: while the debugger still
            # holds the process stopped (or anything else pauses it), the
            # clock moves but little of it is counted.
            remaining = {duration!r}
            last = time.monotonic()
            while remaining > 0 and getattr(memray, "_attached_tracker", None) is tracker:
                time.sleep(min(0.05, remaining))
                now = time.monotonic()
                remaining -= min(now - last, 0.1)
                last = now
            # Finished before it is marked detached, so a detach that finds
            # it gone finds the capture complete.
            with memray._attach_lock:
                if getattr(memray, "_attached_tracker", None) is tracker:
                    tracker.__exit__(None, None, None)
                    memray._attached_tracker = None

        timer = threading.Thread(target=_memray_detach_after, daemon=True)
        timer.start()
    outcome = "ok"
except BaseException as error:
    outcome = type(error).__name__ + ": " + str(error)
"""
    + _STATUS_WRITE
)

_DETACH = (
    _STATUS_OPEN
    + """
try:
    memray = sys.modules.get("memray")
    lock = getattr(memray, "_attach_lock", None) if memray else None
    if lock is None:
        raise RuntimeError("memray is not attached to this process")
    with lock:
        tracker = getattr(memray, "_attached_tracker", None)
        if tracker is None:
            raise RuntimeError("memray is not attached to this process")
        tracker.__exit__(None, None, None)
        memray._attached_tracker = None
    outcome = "ok"
except BaseException as error:
    outcome = type(error).__name__ + ": " + str(error)
"""
    + _STATUS_WRITE
)


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=positive_int, help="process id of a running Python program")
    parser.add_argument("-o", "--output", help="capture file (default memray-<pid>.bin)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite the output file")
    parser.add_argument("--native", action="store_true", help="record native stacks too")
    parser.add_argument(
        "--trace-python-allocators", action="store_true", help="record pymalloc calls too"
    )
    parser.add_argument("--follow-fork", action="store_true", help="track forked children too")
    parser.add_argument(
        "--aggregate", action="store_true", help="write an AGGREGATED_ALLOCATIONS capture"
    )
    parser.add_argument(
        "--duration", type=positive_int, help="detach by itself after this many seconds"
    )
    add_method_argument(parser)


def add_method_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        choices=("auto", *METHODS),
        default="auto",
        help="debugger that runs the code in the process (default: auto, each until one works)",
    )


def _debugger_command(method: str, exe: str, pid: int, code: str) -> list[str]:
    """Takes the GIL, runs code with PyRun_SimpleString, releases the GIL."""
    if method == "gdb":
        return [
            exe, "-p", str(pid), "-batch", "-nx",
            "-ex", "set confirm off",
            "-ex", "call (int)PyGILState_Ensure()",
            "-ex", f'call (int)PyRun_SimpleString("{code}")',
            "-ex", "call (void)PyGILState_Release($1)",
        ]  # fmt: skip
    # lldb needs the functions' types; through pointer casts a libpython
    # without debug information works too.
    ensure = "((int (*)(void))PyGILState_Ensure)()"
    run = f'((int (*)(const char *))PyRun_SimpleString)("{code}")'
    return [
        exe, "-p", str(pid), "--batch", "--no-lldbinit",
        "-o", f"expr {ensure}",
        "-o", f"expr {run}",
        "-o", "expr ((void (*)(int))PyGILState_Release)($0)",
        "-o", "process detach",
    ]  # fmt: skip


def _reason(proc: subprocess.CompletedProcess) -> str:
    """The debugger's own words on why the code did not run."""
    lines = [
        line.strip()
        for line in (proc.stderr + "\n" + proc.stdout).splitlines()
        if line.strip() and not any(noise in line for noise in _NOISE)
    ]
    keys = ("error", "couldn't", "cannot", "ptrace", "not permitted", "failed", "no symbol")
    for line in lines:
        if any(key in line.lower() for key in keys):
            return line
    return lines[-1] if lines else f"exit status {proc.returncode}, nothing printed"


def _inject_with(method: str, pid: int, status: Path, code: str) -> str | None:
    """Runs code in pid with one debugger: None when it ran (status written),
    else the debugger's reason."""
    exe = shutil.which(method)
    if exe is None:
        return "not installed"
    # A debugger must not inherit preloaded libraries (a sanitizer runtime, an
    # allocator) meant for Python programs.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    try:
        proc = subprocess.run(
            _debugger_command(method, exe, pid, code),
            capture_output=True,
            text=True,
            timeout=DEBUGGER_TIMEOUT,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {DEBUGGER_TIMEOUT} s"
    deadline = time.monotonic() + 5
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return None if status.exists() else _reason(proc)


def _give_to_owner_of(directory: Path, pid: int) -> None:
    """The status file's directory (0700, ours) becomes the target's user's
    when that is another user, so the target can write in it and no one else
    can (a world-writable one would let any local user plant the file)."""
    try:
        owner = os.stat(f"/proc/{pid}")
    except OSError as error:
        raise CommandError(f"cannot read process {pid}: {error.strerror}") from None
    if owner.st_uid == os.geteuid():
        return
    try:
        os.chown(directory, owner.st_uid, owner.st_gid)
    except OSError as error:
        raise CommandError(
            f"process {pid} runs as another user (uid {owner.st_uid}), and a directory "
            f"for it cannot be made ({error.strerror}): run memray as root or as that user"
        ) from None


def inject(pid: int, source: str, method: str = "auto") -> str:
    """Runs source in process pid with the GIL held, through the debugger
    named by method (or each of METHODS in turn); returns its status text."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CommandError(f"no process with pid {pid}") from None
    except PermissionError:
        raise CommandError(f"not allowed to attach to process {pid}") from None
    methods = METHODS if method == "auto" else (method,)
    failures = []
    with tempfile.TemporaryDirectory(prefix="memray-attach-") as tmp:
        _give_to_owner_of(Path(tmp), pid)
        status = Path(tmp) / "status"
        payload = source.replace("__STATUS__", repr(str(status)))
        encoded = base64.b64encode(payload.encode()).decode()
        # In a namespace of its own: the program's __main__ keeps its names.
        code = f"exec(__import__('base64').b64decode('{encoded}'),{{}})"
        for m in methods:
            if status.exists() or status.is_symlink():
                raise CommandError(f"{status} exists before the code ran: not attaching")
            why = _inject_with(m, pid, status, code)
            if why is None:
                return status.read_text() or "the code stopped before saying how it went"
            failures.append(f"{m}: {why}")
    raise CommandError(f"could not run code in process {pid} ({'; '.join(failures)})")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import memray

    output = Path(args.output or f"memray-{args.pid}.bin").resolve()
    check_output_file(output, force=args.force)
    source = _ATTACH.format(
        pkg_parent=str(Path(memray.__file__).resolve().parent.parent),
        output=str(output),
        native=args.native,
        pyalloc=args.trace_python_allocators,
        follow_fork=args.follow_fork,
        file_format="AGGREGATED_ALLOCATIONS" if args.aggregate else "ALL_ALLOCATIONS",
        duration=args.duration or 0,
    )
    outcome = inject(args.pid, source, args.method)
    if outcome != "ok":
        raise CommandError(f"could not start tracking in process {args.pid}: {outcome}")
    print(f"Tracking process {args.pid} into {output}.")
    if args.duration:
        print(f"It stops by itself after {args.duration} s.")
    else:
        print(f"Run 'memray detach {args.pid}' to stop, then 'memray flamegraph {output}'.")
    return 0
