"""The ``memray`` command line: argument parsing, dispatch, and the promise
that a failure is one line on stderr, never a traceback.

Each subcommand is one module of this package, listed in SUBCOMMANDS. A module
provides:

    HELP: str                                           one line for `memray --help`
    DESCRIPTION: str                                    (optional) for `memray NAME --help`
    def prepare_parser(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int | None

``run`` returns the exit code (None means 0) and raises common.CommandError
for failures the user can act on. Modules keep their top level cheap (import
rich, the reader and reporters inside ``run``): every module is imported to
build the parser, also for ``memray run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import textwrap
import traceback
from collections.abc import Sequence
from types import ModuleType

from .common import CommandError, one_line

# Subcommands in the order `memray --help` lists them; a new one is one line.
SUBCOMMANDS: tuple[str, ...] = (
    "run",
    "tree",
    "parse",
    "summary",
    "stats",
    "flamegraph",
    "table",
    "diff",
    "merge",
    "transform",
    "attach",
    "detach",
    "live",
)

_DESCRIPTION = textwrap.dedent(
    """\
    Memory profiler for Python applications

    Run `memray run` to make a capture of a program's allocations, then turn it
    into a report with a reporter command such as `memray flamegraph`,
    `memray summary` or `memray tree`.

    Example:

        $ memray run -o output.bin my_script.py
        $ memray flamegraph output.bin
    """
)


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def get_argument_parser() -> argparse.ArgumentParser:
    from memray import __version__

    parser = argparse.ArgumentParser(
        prog="memray",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="Increase verbosity (repeatable: -v info, -vv debug and tracebacks of errors)",
    )
    parser.add_argument("-V", "--version", action="version", version=f"memray {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for name in SUBCOMMANDS:
        module = _load(name)
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # -v after the subcommand too (`memray stats -v FILE`); SUPPRESS keeps
        # the count given before it.
        sub.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="Increase verbosity (repeatable)",
        )
        module.prepare_parser(sub)
        sub.set_defaults(entrypoint=module.run)
    return parser


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="memray: %(levelname)s: %(message)s")
    try:
        from memray import set_log_level
    except ImportError:  # the reader is not built into this tree yet
        return
    set_log_level(level)


def _error(message: str) -> None:
    print(f"memray: error: {one_line(message)}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (1 for errors, 2 for usage)."""
    args = argparse.Namespace(verbose=0)
    try:
        parser = get_argument_parser()
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        _configure_logging(args.verbose)
        code = args.entrypoint(args, parser)
        sys.stdout.flush()
        return 0 if code is None else int(code)
    except CommandError as error:
        if args.verbose >= 2:
            traceback.print_exc()
        _error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (`memray parse x | head`): stop
        # quietly, and keep the interpreter from complaining at exit.
        _silence_stdout()
        return 1
    except Exception as error:  # noqa: BLE001 -- a bug: one line still, traceback under -vv
        if args.verbose >= 2:
            traceback.print_exc()
        detail = one_line(error)
        _error(f"{type(error).__name__}: {detail}" if detail else type(error).__name__)
        return 1


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
