"""The IPython extension: ``%load_ext memray`` registers the
``%%memray_flamegraph`` cell magic, which runs the cell tracked, keeps the
capture and its flame graph in ``memray-results/`` and shows the graph inline.

It owns running a cell under a Tracker and showing the page; the options and
the report itself are ``memray run``'s and ``memray flamegraph``'s.
"""

from __future__ import annotations

import argparse
import html
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from types import CodeType, FrameType, TracebackType
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.display import HTML, display

from ._destination import FileDestination
from ._tracker import StartOnEntry, Tracker, TrackingStartError
from .commands import flamegraph as flamegraph_command
from .commands.common import CommandError, add_snapshot_options, check_output_file, one_line
from .commands.run import add_tracking_options

RESULTS_DIR = "memray-results"
CAPTURE_NAME = "memray.dump"
REPORT_NAME = "flamegraph.html"
IFRAME_HEIGHT = 600  # pixels, as memray 1.x's inline frame


class _UsageShown(Exception):
    """argparse printed the usage (for -h, or with an error): run nothing."""


class _CellParser(argparse.ArgumentParser):
    """argparse that does not exit the kernel: after printing the usage (and
    the error) it raises _UsageShown instead."""

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        if message:
            self._print_message(message, sys.stderr)
        raise _UsageShown


def argument_parser() -> argparse.ArgumentParser:
    parser = _CellParser(
        prog="%%memray_flamegraph",
        description="Run the cell with memray tracking its allocations and show a flame "
        f"graph of them. The capture and the page are kept in {RESULTS_DIR}/.",
    )
    add_tracking_options(parser)
    add_snapshot_options(parser)
    flamegraph_command.add_view_options(parser)
    flamegraph_command.add_output_options(
        parser,
        output_help=f"Write the flame graph to OUTPUT instead of {RESULTS_DIR}/<new folder>/"
        f"{REPORT_NAME} (the capture stays there as {CAPTURE_NAME})",
    )
    return parser


def parse_options(line: str) -> argparse.Namespace | None:
    """The options on the magic's line, or None once the usage was printed."""
    parser = argument_parser()
    try:
        args = parser.parse_args(shlex.split(line))
        flamegraph_command.check_view_options(args, parser)
    except ValueError as error:  # shlex: an unclosed quote
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return None
    except _UsageShown:
        return None
    return args


def inline_html(page: str, title: str = "memray flame graph") -> str:
    """An iframe holding the whole page in srcdoc: no file or server needed,
    so it shows the same offline, in a saved notebook and in nbviewer."""
    return (
        '<div class="memray-flamegraph">'
        f'<iframe srcdoc="{html.escape(page, quote=True)}" title="{html.escape(title)}" '
        f'width="100%" height="{IFRAME_HEIGHT}" style="border: 0"></iframe></div>'
    )


def _compile_cell(shell: Any, cell: str) -> CodeType:
    """The cell as IPython compiles it (%magics and !commands transformed),
    registered in linecache so tracebacks and the report show its lines."""
    source = shell.transform_cell(cell)
    name = shell.compile.cache(source, shell.execution_count, raw_code=cell)
    return shell.compile(source, name, "exec")


def run_cell_tracked(shell: Any, code: CodeType, tracker: Tracker) -> BaseException | None:
    """Runs the compiled cell in the user's namespace with tracking on from
    its first line to its last; returns what it raised, if anything.

    Tracking starts when the cell's own frame is entered, so that frame, not
    IPython's nor memray's, is the outermost one every recorded stack shows.
    """

    def is_cell(frame: FrameType) -> bool:
        return frame.f_code is code

    hook = StartOnEntry(tracker, is_cell, previous=sys.getprofile())
    sys.setprofile(hook)
    error: BaseException | None = None
    try:
        exec(code, shell.user_global_ns, shell.user_ns)  # noqa: S102 -- the user's cell
    except BaseException as exc:  # noqa: BLE001 -- re-raised once the report is written
        error = exc
    finally:
        hook.uninstall()
        if hook.started:
            if error is None:
                tracker.__exit__(None, None, None)
            else:
                tracker.__exit__(type(error), error, error.__traceback__)
    return error


def _from_frame_of(code: CodeType, tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the cell's frame down, as if IPython had run it."""
    walk = tb
    while walk is not None and walk.tb_frame.f_code is not code:
        walk = walk.tb_next
    return walk if walk is not None else tb


@magics_class
class FlamegraphMagics(Magics):
    @cell_magic
    def memray_flamegraph(self, line: str, cell: str) -> None:
        """Run the cell tracked by memray and show a flame graph of its memory.

        Run ``%%memray_flamegraph -h`` for the options.
        """
        __tracebackhide__ = True  # noqa: F841 -- IPython leaves this frame out of tracebacks
        args = parse_options(line)
        if args is None:
            return
        try:
            report = (
                check_output_file(args.output, force=args.force)
                if args.output is not None
                else None
            )
            code = _compile_cell(self.shell, cell)
            os.makedirs(RESULTS_DIR, exist_ok=True)
            # Named relative to the working directory, as memray 1.x prints it
            # (mkdtemp gives an absolute path from Python 3.12 on).
            results = Path(RESULTS_DIR, Path(tempfile.mkdtemp(dir=RESULTS_DIR)).name)
            capture = results / CAPTURE_NAME
            tracker = Tracker(
                destination=FileDestination(path=capture),
                native_traces=args.native,
                follow_fork=args.follow_fork,
                trace_python_allocators=args.trace_python_allocators,
            )
        except CommandError as error:
            raise UsageError(str(error)) from None
        except OSError as error:
            raise UsageError(f"cannot track to {RESULTS_DIR}: {one_line(error)}") from None

        pid = os.getpid()
        error = run_cell_tracked(self.shell, code, tracker)
        if os.getpid() != pid:  # a forked child of the cell: its parent reports
            if error is not None:
                raise error
            return
        if isinstance(error, TrackingStartError):  # the cell did not run: nothing to keep
            shutil.rmtree(results, ignore_errors=True)
            raise UsageError(one_line(error)) from None

        report = report if report is not None else results / REPORT_NAME
        try:
            page = flamegraph_command.render(os.fspath(capture), args)
            flamegraph_command.write_text(report, page)
        except CommandError as report_error:
            print(f"memray: error: {report_error}", file=sys.stderr)
        else:
            print(f"Results saved to {report}")
            display(HTML(inline_html(page)))
        if error is not None:
            raise error.with_traceback(_from_frame_of(code, error.__traceback__))


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(FlamegraphMagics)
