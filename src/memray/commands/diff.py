"""``memray diff BASE NEW``: what changed between two captures, per location,
largest growth first; a table, JSON or an HTML flame graph of the change, and
``--fail-over SIZE`` to fail a CI job when memory grew by more than SIZE.

It reads each capture into totals per Python stack (grouped by the reader)
and leaves matching and rendering to memray.reporters.diff.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import (
    CommandError,
    check_capture_path,
    check_output_file,
    open_reader,
    parse_size,
    positive_int,
    progress_enabled,
    reading,
    stdout_is_terminal,
)

if TYPE_CHECKING:
    from memray.reporters.diff import Capture, Diff

HELP = "Compare two captures: what grew and what shrank, per location"
DESCRIPTION = """\
Compare two captures of the same program (BASE, then NEW: two versions, two
inputs) and show, per allocating location (function, file and line; lines
that moved between the versions are matched), the bytes and allocations of
each and the change, largest growth first, with a total.

What is compared: what was alive at each capture's peak (default), what was
never freed (--leaks), or everything allocated (--total; ALL_ALLOCATIONS
captures only). Captures of either file format and of different Python
versions can be compared. Only Python stacks are compared; native frames are
left out.

For CI: --fail-over SIZE exits with 1 when the total of NEW is more than
SIZE above BASE's (5MiB, 500KB, 1GB or plain bytes). See docs/regressions.rst.

Examples:

    memray diff base.bin new.bin
    memray diff --leaks --json base.bin new.bin > diff.json
    memray diff --html -o diff.html base.bin new.bin
    memray diff --fail-over 5MiB base.bin new.bin
"""


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="The capture to compare against")
    parser.add_argument("new", metavar="NEW", help="The capture to compare")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--leaks",
        action="store_true",
        default=False,
        help="Compare what was still alive when tracking stopped, instead of the peaks",
    )
    kind.add_argument(
        "--total",
        action="store_true",
        default=False,
        help="Compare everything allocated during the run (ALL_ALLOCATIONS captures only)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        default=False,
        help="Write the comparison as JSON (to stdout, or to -o FILE)",
    )
    output.add_argument(
        "--html",
        action="store_true",
        default=False,
        help="Write an HTML flame graph of the change (to -o FILE, default "
        "memray-diff-<NEW>.html next to NEW)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", default=None, help="Output file")
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        default=False,
        help="If the output file already exists, overwrite it",
    )
    parser.add_argument(
        "-r",
        "--max-rows",
        metavar="N",
        type=positive_int,
        default=None,
        help="Show at most N changed locations in the table (default: all)",
    )
    parser.add_argument(
        "--fail-over",
        metavar="SIZE",
        type=parse_size,
        default=None,
        help="Exit with status 1 when NEW's total is more than SIZE above BASE's "
        "(5MiB, 500KB, 1GB or plain bytes)",
    )


def _kind(args: argparse.Namespace) -> str:
    return "total" if args.total else "leaks" if args.leaks else "high_water_mark"


def _default_html_path(new: str) -> Path:
    capture = Path(new)
    name = capture.with_suffix(".html").name.removeprefix("memray-")
    return capture.parent / f"memray-diff-{name}"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.output is not None and not (args.json or args.html):
        parser.error("-o/--output needs --json or --html (the table goes to stdout)")
    base = check_capture_path(args.base)
    new = check_capture_path(args.new)
    if os.path.samefile(base, new):
        raise CommandError(f"BASE and NEW are the same file ({new}): give two captures to compare")
    out: Path | None = None
    if args.html:
        out = check_output_file(args.output or _default_html_path(new), force=args.force)
    elif args.json and args.output is not None:
        out = check_output_file(args.output, force=args.force)

    from memray.reporters.diff import compute_diff

    kind = _kind(args)
    diff = compute_diff(kind, load(base, kind, "BASE"), load(new, kind, "NEW"))
    _write_report(diff, args, out)
    return _verdict(diff, args.fail_over)


def load(path: str, kind: str, role: str) -> Capture:
    """One capture's totals per Python stack, for ``kind`` ("high_water_mark",
    "leaks" or "total"); every failure is a one-line CommandError."""
    from memray._enums import FileFormat
    from memray.reporters.diff import Capture, fold_records

    reader = open_reader(path)
    with reading(path), reader:
        metadata = reader.metadata
        if kind == "total" and metadata.file_format == FileFormat.AGGREGATED_ALLOCATIONS:
            raise CommandError(
                f"--total needs ALL_ALLOCATIONS captures, but {role} ({path}) is "
                "AGGREGATED_ALLOCATIONS, which keeps no totals: compare peaks (the default) "
                "or --leaks, or record it again without --aggregate"
            )
        if kind == "total":
            stacks = _total_by_stack(path)
        elif kind == "leaks":
            stacks = fold_records(reader.get_leaked_allocation_records(merge_threads=True))
        else:
            stacks = fold_records(reader.get_high_watermark_allocation_records(merge_threads=True))
    return Capture(path, metadata, stacks)


def _total_by_stack(path: str) -> dict[tuple[Any, ...], list[int]]:
    """Everything allocated, per Python stack: the bytes and counts of the C
    statistics pass that ``memray stats`` reads (one pass, grouped in C).

    Not the temporal records: they leave out every allocation freed before
    the next memory snapshot (measured: a 4096-byte malloc and free in one
    interval is missing). Not temporary + leaked records either: they miss
    allocations freed by another thread. The reader has no public query for
    this yet; when FileReader grows one, use it here.
    """
    from memray import _memray
    from memray._reader import _progress
    from memray.reporters.diff import UNKNOWN_FRAME

    with _progress(progress_enabled(), "Adding up allocations", None) as tick:
        stats = _memray.CapturePass(path, path).statistics(tick)
    frames = stats["stacks"]
    stacks: dict[tuple[Any, ...], list[int]] = {}
    for stack_id, count, nbytes in stats["by_stack"]:
        stack = tuple(tuple(f) for f in frames.get(stack_id, ())) or (UNKNOWN_FRAME,)
        entry = stacks.setdefault(stack, [0, 0])
        entry[0] += int(nbytes)
        entry[1] += int(count)
    return stacks


def _write_report(diff: Diff, args: argparse.Namespace, out: Path | None) -> None:
    from memray.reporters.diff import render_html, render_table, to_json

    from .flamegraph import write_text

    if args.html:
        assert out is not None
        write_text(out, render_html(diff, fail_over=args.fail_over))
        print(f"Wrote {out}")
    elif args.json:
        text = json.dumps(to_json(diff, fail_over=args.fail_over), indent=2) + "\n"
        if out is None:
            sys.stdout.write(text)
        else:
            write_text(out, text)
            print(f"Wrote {out}")
    else:
        render_table(diff, max_rows=args.max_rows, use_rich=stdout_is_terminal())
    sys.stdout.flush()


def _verdict(diff: Diff, fail_over: int | None) -> int:
    """Exit status for --fail-over, with one line on stderr either way."""
    if fail_over is None:
        return 0
    from memray.reporters.diff import format_bytes, signed_bytes

    grew = diff.delta_bytes
    change = f"{signed_bytes(grew)} ({grew:+d} bytes)" if grew else "0 B (0 bytes)"
    limit = f"{format_bytes(fail_over)} ({fail_over} bytes)"
    if grew > fail_over:
        raise CommandError(
            f"memory grew by {change} from BASE to NEW: more than --fail-over {limit}"
        )
    print(
        f"memray: memory changed by {change} from BASE to NEW: within --fail-over {limit}",
        file=sys.stderr,
    )
    return 0
