"""`memray flamegraph`: an HTML flame graph of a capture (peak, leaks,
temporary allocations, or a time range with --temporal)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import (
    add_results_argument,
    add_snapshot_options,
    check_capture_path,
    check_output_file,
    open_reader,
    positive_int,
    reading,
    snapshot_records,
)

HELP = "Generate an HTML flame graph for peak memory usage"
DESCRIPTION = """\
Generate a self-contained HTML flame graph of a capture: by default what was
alive when the heap was largest; with --leaks what was never freed; with
--temporary-allocations what was freed almost at once; with --temporal a
time range picked on the memory plot.
"""


def default_output_path(results: str, reporter: str, suffix: str) -> Path:
    """memray-<reporter>-<capture name with suffix>, next to the capture
    (a leading "memray-" of the capture's name is not repeated)."""
    capture = Path(results)
    name = capture.with_suffix(suffix).name
    name = name.removeprefix("memray-")
    return capture.parent / f"memray-{reporter}-{name}"


def snapshot_kind(args: argparse.Namespace) -> str:
    threshold = getattr(args, "temporary_allocation_threshold", -1)
    if threshold is not None and threshold >= 0:
        return "temporary"
    return "leaks" if getattr(args, "leaks", False) else "high_water_mark"


def add_output_options(
    parser: argparse.ArgumentParser, output_help: str = "Output file name"
) -> None:
    parser.add_argument("-o", "--output", default=None, help=output_help)
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        default=False,
        help="If the output file already exists, overwrite it",
    )


def add_no_web_option(parser: argparse.ArgumentParser) -> None:
    """memray 1.x's switch for offline reports; ours never fetch anything."""
    parser.add_argument(
        "--no-web",
        action="store_true",
        default=False,
        help="Accepted for memray 1.x scripts: reports are always self-contained and offline",
    )


def add_view_options(parser: argparse.ArgumentParser) -> None:
    """How the flame graph shows its records: --split-threads, --inverted,
    --temporal, --max-memory-records N (``memray flamegraph`` and the
    ``%%memray_flamegraph`` cell magic)."""
    parser.add_argument(
        "--split-threads",
        action="store_true",
        default=False,
        help="Do not merge allocations across threads; pick a thread in the page",
    )
    parser.add_argument(
        "--inverted",
        action="store_true",
        default=False,
        help="Start with an inverted flame graph: the functions that allocated at the root",
    )
    parser.add_argument(
        "--temporal",
        action="store_true",
        default=False,
        help="Generate a flame graph that can show the allocations of a time range "
        "picked on the memory plot",
    )
    parser.add_argument(
        "--max-memory-records",
        metavar="N",
        type=positive_int,
        default=10000,
        help="Most memory samples to keep for the memory plot (default: 10000)",
    )


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    add_output_options(parser)
    add_snapshot_options(parser)
    add_no_web_option(parser)
    add_view_options(parser)
    add_results_argument(parser)


def check_view_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuses, with the usage, the combinations add_view_options cannot honour."""
    if args.temporal and snapshot_kind(args) == "temporary":
        parser.error("Can't create a temporal flame graph of temporary allocations")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    check_view_options(args, parser)
    name = check_capture_path(args.results)
    out = check_output_file(
        args.output or default_output_path(name, "flamegraph", ".html"), force=args.force
    )
    write_text(out, render(name, args, more=args.more_results))
    print(f"Wrote {out}")
    return 0


def render(name: str, args: argparse.Namespace, more: list[str] | None = None) -> str:
    """The flame graph page of the capture ``name`` that the options of
    add_snapshot_options and add_view_options in ``args`` ask for (with
    the captures ``more`` merged in)."""
    from memray.reporters.flamegraph import render_flamegraph

    kind = snapshot_kind(args)
    merge_threads = not args.split_threads
    reader = open_reader(name, more or (), max_memory_records=args.max_memory_records)
    with reading(name), reader:
        metadata = reader.metadata
        snapshots = list(reader.get_memory_snapshots())
        common: dict[str, Any] = {
            "metadata": metadata,
            "snapshots": snapshots,
            "kind": kind,
            "merge_threads": merge_threads,
            "inverted": args.inverted,
            "temporary_threshold": args.temporary_allocation_threshold,
        }
        if not args.temporal:
            records = snapshot_records(reader, args, merge_threads=merge_threads)
            return render_flamegraph(records, **common)
        if kind == "leaks":
            records = reader.get_temporal_allocation_records(merge_threads=merge_threads)
            return render_flamegraph(records, temporal=True, **common)
        records, peaks = reader.get_temporal_high_water_mark_allocation_records(
            merge_threads=merge_threads
        )
        return render_flamegraph(
            records, temporal=True, high_water_mark_by_snapshot=peaks, **common
        )


def write_text(path: Path, text: str) -> None:
    """Writes the whole file or nothing: a failed report leaves no half page."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
