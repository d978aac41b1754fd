"""``memray run``: run a Python program exactly as ``python`` would, with a
Tracker on for the whole of it.

It owns the program's sys.argv, sys.path[0], ``__main__`` and exit status, and
where tracking starts; it does not know how allocations are recorded.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
import types
import zipfile
from types import FrameType, TracebackType
from typing import Any

from memray import _children
from memray._tracker import StartOnEntry, TrackingStartError

from .common import CommandError, one_line, parse_size

HELP = "Run a Python program under memray, writing its allocations to a capture file"
DESCRIPTION = """\
Run a Python program (a script, `-m module` or `-c code`) exactly as `python`
would, recording every allocation it makes into a capture file; then make a
report from it, e.g. `memray flamegraph FILE`.

Everything after the program is passed to it:

    memray run -o out.bin my_script.py --its-own-flag value
    memray run -m http.server 8000
"""


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="Capture file to write (default: memray-<program>.<pid>.bin next to the script, "
        "or in the current directory for -m and -c)",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", default=False, help="Overwrite the output file"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False,
        help="Print nothing besides the program's own output",
    )
    add_tracking_options(parser)
    parser.add_argument(
        "--follow-children",
        action="store_true",
        default=False,
        help="Also record every Python process the program starts (fork, multiprocessing, "
        "subprocess), each into FILE.<pid>, and list the files written (implies --follow-fork)",
    )
    parser.add_argument(
        "--sample-every",
        metavar="SIZE",
        type=parse_size,
        default=0,
        help="Record a sample of the allocations: each allocated byte with probability 1/SIZE "
        "(e.g. 512KiB, 1MB or plain bytes); reports then show estimates. For production: "
        "far less overhead (docs/sampling.rst)",
    )
    parser.add_argument(
        "--aggregate",
        action="store_true",
        default=False,
        help="Write an aggregated capture: far smaller, only peak and leaked memory per "
        "location (no temporary allocations, stats or temporal view)",
    )
    live = parser.add_mutually_exclusive_group()
    live.add_argument(
        "--live",
        dest="live_mode",
        action="store_true",
        default=False,
        help="Show allocations live in a terminal UI instead of writing a file",
    )
    live.add_argument(
        "--live-remote",
        dest="live_remote_mode",
        action="store_true",
        default=False,
        help="Stream allocations to a socket, for `memray live PORT` to show",
    )
    parser.add_argument(
        "-p",
        "--live-port",
        metavar="N",
        type=int,
        default=None,
        help="Port for --live or --live-remote to stream on (default: a free one)",
    )
    parser.add_argument(
        "--buffered-file-io",
        action="store_true",
        default=False,
        help="Write the capture through a buffer instead of a shared mapping (a capture "
        "written this way loses its last records if the process is killed)",
    )
    compress = parser.add_mutually_exclusive_group()
    compress.add_argument(
        "--compress-on-exit",
        dest="compress_on_exit",
        action="store_true",
        default=True,
        help="Compress the capture when the program ends (the default)",
    )
    compress.add_argument(
        "--no-compress",
        dest="compress_on_exit",
        action="store_false",
        help="Leave the capture uncompressed",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "-m",
        dest="run_as_module",
        action="store_true",
        default=False,
        help="Run a library module as a script (like python -m)",
    )
    target.add_argument(
        "-c",
        dest="run_as_cmd",
        action="store_true",
        default=False,
        help="Run a string of code (like python -c)",
    )
    parser.add_argument("script", metavar="{script.py | -m module | -c code}")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS")


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """What a Tracker records: --native, --trace-python-allocators, --follow-fork
    (``memray run`` and the ``%%memray_flamegraph`` cell magic)."""
    parser.add_argument(
        "--native",
        action="store_true",
        default=False,
        help="Record the native (C/C++) stack of every allocation too",
    )
    parser.add_argument(
        "--trace-python-allocators",
        action="store_true",
        default=False,
        help="Record every allocation by pymalloc, not only those reaching the system allocator",
    )
    parser.add_argument(
        "--follow-fork",
        action="store_true",
        default=False,
        help="Keep recording in child processes forked by the program (one capture each)",
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.live_mode or args.live_remote_mode:
        return _run_live(args)
    if args.live_port is not None:
        raise CommandError("--live-port needs --live or --live-remote")
    launcher = _reporter_command()
    program = _Program.from_args(args)
    output = _output_path(args)

    from memray import FileDestination, FileFormat, Tracker

    if os.path.exists(output) and not args.force:
        raise CommandError(f"Output file already exists (use -f to overwrite): {output}")
    destination = FileDestination(
        path=output,
        overwrite=args.force,
        compress_on_exit=args.compress_on_exit,
        buffered=args.buffered_file_io,
    )
    kwargs: dict[str, Any] = {}
    if args.aggregate:
        kwargs["file_format"] = FileFormat.AGGREGATED_ALLOCATIONS
    try:
        tracker = Tracker(
            destination=destination,
            native_traces=args.native,
            follow_fork=args.follow_fork,
            trace_python_allocators=args.trace_python_allocators,
            follow_children=args.follow_children,
            sample_every=args.sample_every,
            **kwargs,
        )
    except FileExistsError:
        raise CommandError(f"Output file already exists (use -f to overwrite): {output}") from None
    except (OSError, ValueError, TypeError, RuntimeError, NotImplementedError) as error:
        raise CommandError(f"Cannot track to {output}: {one_line(error)}") from error

    if not args.quiet:
        print(f"Writing profile results into {output}", flush=True)
    pid = os.getpid()
    before = _children.capture_files(output) if args.follow_children else {}
    status = program.run_tracked(tracker)
    if not args.quiet and os.getpid() == pid and program.started:
        # After the program's own output, which may sit in a buffer.
        _flush_stdio()
        print(
            "[memray] Successfully generated profile results.\n\n"
            "You can now generate reports from the stored allocation records.\n"
            "Some example commands to generate reports:\n\n"
            f"{launcher} flamegraph {output}",
            flush=True,
        )
        if args.follow_children:
            _print_captures(output, before)
    return status.finish()


def _print_captures(output: str, before: dict[str, tuple[int, int, int]]) -> None:
    """The files of the program and its followed children, one per line, named
    like the output was given (a child still running may still be writing)."""
    directory = os.path.dirname(os.path.abspath(output))
    written = _children.written_since(output, before)
    print("\n[memray] Captures written (the program's, then one per child process):")
    for path in written:
        print(os.path.join(os.path.dirname(output), os.path.relpath(path, directory)))
    sys.stdout.flush()


# Options that make no sense without a capture file: refused with live modes.
_FILE_ONLY_OPTIONS = (
    ("output", "-o/--output"),
    ("aggregate", "--aggregate"),
    ("follow_fork", "--follow-fork"),
    ("follow_children", "--follow-children"),
    ("buffered_file_io", "--buffered-file-io"),
)


def _run_live(args: argparse.Namespace) -> int:
    """--live (view here, program in a child) and --live-remote (program
    here, streaming to whoever runs `memray live PORT`)."""
    from . import live

    mode = "--live" if args.live_mode else "--live-remote"
    for attr, flag in _FILE_ONLY_OPTIONS:
        if getattr(args, attr):
            raise CommandError(f"{flag} cannot be used with {mode}: live tracking writes no file")
    program = _Program.from_args(args)  # a missing script fails here, before any waiting
    program.check_source()
    port = live.check_port(args.live_port) if args.live_port is not None else live.free_port()
    if args.live_mode:
        child_args = ["--native"] if args.native else []
        if args.trace_python_allocators:
            child_args.append("--trace-python-allocators")
        if args.sample_every:
            child_args.append(f"--sample-every={args.sample_every}")
        if args.run_as_module:
            child_args.append("-m")
        elif args.run_as_cmd:
            child_args.append("-c")
        child_args += [os.fspath(args.script), *args.script_args]
        return live.run_and_attach(port, child_args)

    live.check_port_free(port)

    from memray import SocketDestination, Tracker

    print(
        f"Run '{_reporter_command()} live {port}' in another shell to see the program's memory "
        "as it runs",
        flush=True,
    )
    try:
        tracker = Tracker(
            destination=SocketDestination(server_port=port),
            native_traces=args.native,
            trace_python_allocators=args.trace_python_allocators,
            sample_every=args.sample_every,
        )
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot stream on port {port}: {one_line(error)}") from error
    return program.run_tracked(tracker).finish()


def _reporter_command() -> str:
    """How the user started memray, to repeat in the closing hint."""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv else ""
    if argv0 in ("__main__.py", "-m", "-c", ""):
        return f"{sys.executable} -m memray"
    return "memray"


def _output_path(args: argparse.Namespace) -> str:
    if args.output is not None:
        return os.fspath(args.output)
    # memray 1.x names: memray-<script basename>.<pid>.bin next to the script,
    # memray-<module>.<pid>.bin and memray-string.<pid>.bin in the cwd.
    if args.run_as_cmd:
        return f"memray-string.{os.getpid()}.bin"
    if args.run_as_module:
        return f"memray-{args.script}.{os.getpid()}.bin"
    script = os.fspath(args.script)
    return os.path.join(
        os.path.dirname(script), f"memray-{os.path.basename(script)}.{os.getpid()}.bin"
    )


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


def _should_modify_sys_path() -> bool:
    # python -I and -P (3.11) leave sys.path[0] alone; so does the program then.
    return not sys.flags.isolated and not getattr(sys.flags, "safe_path", False)


class _Status:
    """How the program ended, turned into our exit status like python does."""

    def __init__(self) -> None:
        self.exit: SystemExit | None = None
        self.code = 0

    def finish(self) -> int:
        if self.exit is not None:
            # python's own handling of the program's SystemExit: None -> 0,
            # int -> itself, anything else printed to stderr -> 1.
            raise self.exit
        return self.code


class _Program:
    """The program to run, and the frame it runs in once started."""

    def __init__(self, kind: str, target: str, argv: list[str]) -> None:
        self.kind = kind  # "script", "module" or "code"
        self.target = target
        self.argv = argv
        self.module_frame: FrameType | None = None
        self.started = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _Program:
        if args.run_as_cmd:
            return cls("code", args.script, ["-c", *args.script_args])
        if args.run_as_module:
            # runpy replaces argv[0] with the module's file, as python -m does.
            return cls("module", args.script, ["-m", *args.script_args])
        script = os.fspath(args.script)
        if not os.path.exists(script):
            raise CommandError(f"can't open file {script!r}: [Errno 2] No such file or directory")
        if os.path.isdir(script) and not os.path.exists(os.path.join(script, "__main__.py")):
            raise CommandError(f"can't find '__main__' module in {script!r}")
        return cls("script", script, [script, *args.script_args])

    def check_source(self) -> None:
        """A script or -c code that is not Python fails now, in memray 1.x's
        words, rather than after a live reader has connected."""
        if self.kind == "code":
            source: str | bytes = self.target
        elif self.kind == "script" and os.path.isfile(self.target):
            if zipfile.is_zipfile(self.target):
                return
            with open(self.target, "rb") as f:
                source = f.read()
        else:
            return
        try:
            name = "<string>" if self.kind == "code" else self.target
            compile(source, name, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as error:
            raise CommandError(
                "Only valid Python files or commands can be executed under memray "
                f"({one_line(error)})"
            ) from None

    def _prepare_sys(self) -> None:
        sys.argv = list(self.argv)
        if not _should_modify_sys_path():
            return
        if self.kind == "script":
            if not os.path.isfile(self.target) or zipfile.is_zipfile(self.target):
                # A directory or zipapp: runpy puts it first on sys.path itself.
                if sys.path:
                    del sys.path[0]
                return
            entry = os.path.dirname(os.path.realpath(self.target))
        elif self.kind == "module":
            entry = os.getcwd()
        else:
            entry = ""
        if sys.path:
            sys.path[0] = entry
        else:
            sys.path.insert(0, entry)

    def _execute(self) -> None:
        if self.kind == "script":
            # python gives a script an absolute __file__ and co_filename (so
            # tracebacks and captures name it absolutely), and argv[0] as typed:
            # runpy sets argv[0] to the path it was given, and the start hook
            # puts back the typed one.
            runpy.run_path(os.path.abspath(self.target), run_name="__main__")
        elif self.kind == "module":
            runpy.run_module(self.target, run_name="__main__", alter_sys=True)
        else:
            _exec_as_main(self.target)

    def _on_start(self, frame: FrameType) -> None:
        self.module_frame = frame
        if self.kind == "script":
            sys.argv[0] = self.argv[0]  # the path as typed, not runpy's

    def run_tracked(self, tracker: Any) -> _Status:
        """Runs the program with tracking on from its first line to its last."""
        status = _Status()
        self._prepare_sys()
        # Tracking starts in the program's <module> frame, so that frame, not
        # runpy's nor ours, is the outermost frame every recorded stack shows
        # (tests/test_cli.py checks it).
        start_hook = StartOnEntry(
            tracker, _is_program_frame, previous=sys.getprofile(), on_start=self._on_start
        )
        sys.setprofile(start_hook)
        error: BaseException | None = None
        try:
            self._execute()
        except BaseException as exc:  # noqa: BLE001 -- the program's ending, judged below
            error = exc
        finally:
            start_hook.uninstall()  # the program never started
            self.started = start_hook.started
            if self.started:
                try:
                    if error is None:
                        tracker.__exit__(None, None, None)
                    else:
                        tracker.__exit__(type(error), error, error.__traceback__)
                except Exception as exit_error:  # noqa: BLE001 -- the capture failed, not the program
                    print(
                        f"memray: error: finishing the capture failed: {one_line(exit_error)}",
                        file=sys.stderr,
                    )
                    status.code = 1
        if error is None:
            return status
        if isinstance(error, TrackingStartError):
            raise CommandError(one_line(error)) from error.__cause__
        if isinstance(error, SystemExit):
            status.exit = error
            return status
        if not self.started:
            status.code = self._report_startup_error(error)
        else:
            _print_program_exception(error, self.module_frame)
            status.code = 130 if isinstance(error, KeyboardInterrupt) else 1
        return status

    def _report_startup_error(self, error: BaseException) -> int:
        """The program failed before its first line: it could not be found or compiled."""
        if isinstance(error, SyntaxError):
            # As python shows it: the file, the line, the caret; exit status 1.
            _flush_stdio()
            traceback.print_exception(type(error), error, None)
            return 1
        if isinstance(error, ImportError) and self.kind == "module":
            raise CommandError(f"cannot run module {self.target!r}: {one_line(error)}") from error
        if isinstance(error, (OSError, ImportError)):
            raise CommandError(f"cannot run {self.target!r}: {one_line(error)}") from error
        if isinstance(error, KeyboardInterrupt):
            raise error
        # Code that ran before the program's frame (a package's __init__ under
        # -m) raised: show it the way python would.
        _print_program_exception(error, None)
        raise CommandError(f"cannot run {self.target!r}: it raised before starting") from error


def _exec_as_main(source: str) -> None:
    """python -c: the code runs as module __main__, from a file named <string>."""
    code = compile(source, "<string>", "exec")
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    previous = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)  # noqa: S102 -- running the user's -c code is the point
    finally:
        if previous is not None:
            sys.modules["__main__"] = previous


def _is_program_frame(frame: FrameType) -> bool:
    return frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__"


def _print_program_exception(error: BaseException, module_frame: FrameType | None) -> None:
    """The traceback python would print: from the program's frame down."""
    tb: TracebackType | None = error.__traceback__
    if module_frame is not None:
        walk = tb
        while walk is not None and walk.tb_frame is not module_frame:
            walk = walk.tb_next
        if walk is not None:
            tb = walk
    error.__traceback__ = tb
    _flush_stdio()
    try:
        sys.excepthook(type(error), error, tb)
    except Exception:  # noqa: BLE001 -- a broken user excepthook: python falls back too
        traceback.print_exception(type(error), error, tb)
    _flush_stdio()
