"""What every subcommand shares: the one-line error, opening a capture, the
options that choose which allocations a report shows, output-file checks.

It owns turning a reader failure into one line for the user; it does not
render anything (that is ``memray.reporters``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from memray._reader import AllocationRecord, FileReader

PathLike = Union[str, "os.PathLike[str]"]

# What a reader raises for a capture it cannot use. Anything else escaping a
# reader is a bug, reported by main() with its type (and traceback under -v).
READER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    RuntimeError,
    EOFError,
    NotImplementedError,
    MemoryError,
)


class CommandError(Exception):
    """A failure the user can act on: main() prints ``memray: error: <message>``
    on one line and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(message: object) -> str:
    """The message with its line breaks folded, so errors stay one line."""
    return " ".join(str(message).split())


def progress_enabled() -> bool:
    """Progress bars only when a person watches stderr."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stderr
        return False


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def check_capture_path(path: PathLike) -> str:
    """The capture's path as a str, or a CommandError if it cannot be a capture."""
    name = os.fspath(path)
    p = Path(name)
    if not p.exists():
        raise CommandError(f"No such file: {name}")
    if p.is_dir():
        raise CommandError(f"Is a directory, not a capture file: {name}")
    if not os.access(name, os.R_OK):
        raise CommandError(f"Permission denied: {name}")
    if p.stat().st_size == 0:
        raise CommandError(f"Empty file, not a memray capture: {name}")
    return name


@contextlib.contextmanager
def reading(path: PathLike) -> Iterator[None]:
    """Turns an error the reader raises for a bad capture into one line."""
    try:
        yield
    except (CommandError, BrokenPipeError):  # BrokenPipe: our reader left, not the capture
        raise
    except READER_ERRORS as error:
        # The reader's messages mostly name the file already; say it once.
        name = os.fspath(path)
        reason = one_line(error) or type(error).__name__
        base = os.path.basename(name)
        if name in reason or (len(base) > 3 and f"{base}:" in reason):
            raise CommandError(reason) from error
        raise CommandError(f"{name}: {reason}") from error


def captures(path: PathLike, more: Iterable[PathLike] = ()) -> str | list[str]:
    """The checked capture path, or the list of them when there are several
    (the reader merges those while it reads)."""
    names = [check_capture_path(p) for p in (path, *more)]
    return names[0] if len(names) == 1 else names


def open_reader(path: PathLike, more: Iterable[PathLike] = (), **kwargs: Any) -> FileReader:
    """Opens a capture (or several captures as one, merged while read) for a
    report; every failure is a one-line CommandError."""
    from memray._reader import FileReader

    source = captures(path, more)
    kwargs.setdefault("report_progress", progress_enabled())
    with reading(os.fspath(path)):
        return FileReader(source, **kwargs)


class _StoreCaptures(argparse.Action):
    """FILE [FILE ...]: the first in ``results``, the others in
    ``more_results``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        namespace.results, namespace.more_results = values[0], list(values[1:])


def add_results_argument(parser: argparse.ArgumentParser, *, several: bool = True) -> None:
    """The capture a report reads; with several=True, more than one may be
    given (the captures of a process tree, e.g. out.bin out.bin.*), read as
    one merged capture (see `memray merge`)."""
    if not several:
        parser.add_argument("results", metavar="FILE", help="Capture written by `memray run`")
        return
    parser.set_defaults(more_results=[])
    parser.add_argument(
        "results",
        metavar="FILE",
        nargs="+",
        action=_StoreCaptures,
        help="Capture written by `memray run`; several (e.g. out.bin out.bin.*, from "
        "--follow-children) are merged into one report",
    )


def add_snapshot_options(parser: argparse.ArgumentParser, *, leaks: bool = True) -> None:
    """--leaks / --temporary-allocations / --temporary-allocation-threshold N,
    mutually exclusive; without them a report shows the heap at its peak."""
    group = parser.add_mutually_exclusive_group()
    if leaks:
        group.add_argument(
            "--leaks",
            action="store_true",
            default=False,
            help="Show allocations still alive when tracking stopped, instead of those alive "
            "at the peak of the heap",
        )
    group.add_argument(
        "--temporary-allocation-threshold",
        metavar="N",
        dest="temporary_allocation_threshold",
        type=threshold_int,
        default=-1,
        help="Show temporary allocations: those freed with at most N other allocations "
        "made in between (N=0: freed before any other allocation)",
    )
    group.add_argument(
        "--temporary-allocations",
        dest="temporary_allocation_threshold",
        action="store_const",
        const=1,
        help="Same as --temporary-allocation-threshold=1",
    )


def snapshot_records(
    reader: FileReader, args: argparse.Namespace, *, merge_threads: bool = True
) -> Iterable[AllocationRecord]:
    """The grouped records the options in add_snapshot_options ask for."""
    threshold = getattr(args, "temporary_allocation_threshold", -1)
    if threshold is not None and threshold >= 0:
        return reader.get_temporary_allocation_records(
            merge_threads=merge_threads, threshold=threshold
        )
    if getattr(args, "leaks", False):
        return reader.get_leaked_allocation_records(merge_threads=merge_threads)
    return reader.get_high_watermark_allocation_records(merge_threads=merge_threads)


def snapshot_title(args: argparse.Namespace) -> str:
    threshold = getattr(args, "temporary_allocation_threshold", -1)
    if threshold is not None and threshold >= 0:
        return f"temporary allocations (threshold {threshold})"
    if getattr(args, "leaks", False):
        return "leaked allocations"
    return "allocations alive at peak memory"


def estimate_note(metadata: Any) -> str:
    """For a sampled capture, what a report's title adds: its sizes are
    estimates, and from what sampling interval; "" otherwise."""
    every = int(getattr(metadata, "sample_every", 0) or 0)
    if not every:
        return ""
    return f", estimated from allocations sampled every {every:,} bytes"


def non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {number}")
    return number


def threshold_int(value: str) -> int:
    """A count of allocations in between: 0 up to 2**64 - 1."""
    number = non_negative_int(value)
    if number >= 2**64:
        raise argparse.ArgumentTypeError(f"too large: at most {2**64 - 1}, not {number}")
    return number


def positive_int(value: str) -> int:
    number = non_negative_int(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be 1 or more, not 0")
    return number


def check_output_file(path: PathLike, *, force: bool) -> Path:
    """An output path the report may write: refuses to overwrite without force."""
    out = Path(os.fspath(path))
    if out.is_dir():
        raise CommandError(f"Output path is a directory: {out}")
    if out.exists() and not force:
        raise CommandError(f"File already exists, will not overwrite (use -f): {out}")
    if not out.parent.is_dir():
        raise CommandError(f"Output directory does not exist: {out.parent}")
    return out


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_size(value: str) -> int:
    """A size in bytes from ``5MiB``, ``500KB``, ``1.5GB``, ``512KiB`` or plain
    ``1048576`` (units case-insensitive; KB = 1000, KiB = 1024, and so on up to
    TB/TiB; a fraction of a byte is dropped). For argparse's ``type=``: a bad
    value raises ArgumentTypeError with a message fit for the usage line."""
    import re
    from decimal import Decimal, InvalidOperation

    if value.strip().startswith("-"):
        raise argparse.ArgumentTypeError(f"invalid size: {value!r} (must be 0 or more)")
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*", value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(
            f"invalid size: {value!r} (expected bytes or a number with a unit: "
            "KB, KiB, MB, MiB, GB, GiB, TB, TiB; for example 5MiB or 500KB)"
        )
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:  # pragma: no cover -- the pattern admits only numbers
        raise argparse.ArgumentTypeError(f"invalid size: {value!r}") from None
    return int(number * _SIZE_UNITS[unit])
