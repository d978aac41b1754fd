"""``memray attach PID`` / ``memray detach PID``: start and stop tracking in a
running Python process.

gdb stops the process for a moment and runs a few lines of Python in it (with
the GIL): they enter a Tracker writing to the requested file, or exit it. The
process must be able to import memray; this installation's package directory
is put on its path for that import if needed. The injected code reports
success or its error through a status file, so the command prints one line.
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

HELP = "Start tracking a running Python process (through gdb)"
DESCRIPTION = (
    "Start tracking a running Python process: gdb injects a Tracker writing to the "
    "output file. Stop it with `memray detach PID`, or pass --duration."
)
GDB_TIMEOUT = 60

_ATTACH = """
import sys
status_path = __STATUS__
try:
    try:
        import memray
    except ImportError:
        sys.path.insert(0, {pkg_parent!r})
        try:
            import memray
        finally:
            sys.path.remove({pkg_parent!r})
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
        import threading

        def _memray_detach_after():
            t = getattr(memray, "_attached_tracker", None)
            if t is tracker:
                memray._attached_tracker = None
                t.__exit__(None, None, None)

        timer = threading.Timer({duration!r}, _memray_detach_after)
        timer.daemon = True
        timer.start()
    outcome = "ok"
except BaseException as error:
    outcome = type(error).__name__ + ": " + str(error)
with open(status_path, "w") as status:
    status.write(outcome)
"""

_DETACH = """
status_path = __STATUS__
try:
    import sys
    memray = sys.modules.get("memray")
    tracker = getattr(memray, "_attached_tracker", None) if memray else None
    if tracker is None:
        raise RuntimeError("memray is not attached to this process")
    memray._attached_tracker = None
    tracker.__exit__(None, None, None)
    outcome = "ok"
except BaseException as error:
    outcome = type(error).__name__ + ": " + str(error)
with open(status_path, "w") as status:
    status.write(outcome)
"""


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


def inject(pid: int, source: str) -> str:
    """Runs source in process pid with the GIL held; returns its status text."""
    gdb = shutil.which("gdb")
    if gdb is None:
        raise CommandError("gdb is needed to attach to a process and was not found")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CommandError(f"no process with pid {pid}") from None
    except PermissionError:
        raise CommandError(f"not allowed to attach to process {pid}") from None
    with tempfile.TemporaryDirectory(prefix="memray-attach-") as tmp:
        status = Path(tmp) / "status"
        os.chmod(tmp, 0o777)  # the target may run as another user
        payload = source.replace("__STATUS__", repr(str(status)))
        encoded = base64.b64encode(payload.encode()).decode()
        code = f"import base64;exec(base64.b64decode('{encoded}'))"
        command = [
            gdb, "-p", str(pid), "-batch", "-nx",
            "-ex", "set confirm off",
            "-ex", "call (int)PyGILState_Ensure()",
            "-ex", f'call (int)PyRun_SimpleString("{code}")',
            "-ex", "call (void)PyGILState_Release($1)",
        ]  # fmt: skip
        try:
            # gdb must not inherit preloaded libraries (a sanitizer runtime,
            # an allocator) meant for Python programs.
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=GDB_TIMEOUT, check=False, env=env
            )
        except subprocess.TimeoutExpired:
            raise CommandError(f"gdb did not finish within {GDB_TIMEOUT} s") from None
        deadline = time.monotonic() + 5
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not status.exists():
            why = next(
                (line for line in proc.stderr.splitlines() if "ptrace" in line.lower()), None
            )
            raise CommandError(
                f"could not run code in process {pid}"
                + (f": {why.strip()}" if why else " (is it a Python 3 process?)")
            )
        return status.read_text()


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
    outcome = inject(args.pid, source)
    if outcome != "ok":
        raise CommandError(f"could not start tracking in process {args.pid}: {outcome}")
    print(f"Tracking process {args.pid} into {output}.")
    if args.duration:
        print(f"It stops by itself after {args.duration} s.")
    else:
        print(f"Run 'memray detach {args.pid}' to stop, then 'memray flamegraph {output}'.")
    return 0
