"""``memray tree``: the biggest allocating call paths at the peak (or of
leaks, or of temporary allocations), merged into a tree."""

from __future__ import annotations

import argparse
import sys

from .common import (
    add_results_argument,
    add_snapshot_options,
    estimate_note,
    open_reader,
    positive_int,
    reading,
    snapshot_records,
    snapshot_title,
    stdout_is_terminal,
)

HELP = "Show the biggest allocating call paths as a tree, in the terminal"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    add_results_argument(parser)
    parser.add_argument(
        "-b",
        "--biggest-allocs",
        metavar="N",
        type=positive_int,
        default=200,
        help="Show the N biggest allocating paths (default 200)",
    )
    add_snapshot_options(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray.reporters._text import size_fmt
    from memray.reporters.tree import TreeReporter

    reader = open_reader(args.results, args.more_results)
    with reader, reading(args.results):
        metadata = reader.metadata
        reporter = TreeReporter.from_snapshot(
            snapshot_records(reader, args),
            biggest_allocs=args.biggest_allocs,
            native=metadata.has_native_traces,
        )
    if _interactive():
        from memray.reporters.tree_tui import TreeApp

        TreeApp(reporter).run()
        return 0
    header = "Allocation metadata"
    print()
    print(f"{header}\n{'-' * len(header)}")
    print(f"Command line arguments: '{metadata.command_line}'")
    print(f"Peak memory size: {size_fmt(metadata.peak_memory)}")
    print(f"Number of allocations: {metadata.total_allocations}")
    print()
    title = snapshot_title(args) + estimate_note(metadata)
    header = f"Biggest {reporter.shown} allocating paths ({title}):"
    print(f"{header}\n{'-' * len(header)}")
    reporter.render(use_rich=stdout_is_terminal())
    return 0


def _interactive() -> bool:
    """The textual view only with a person at both ends: stdin and stdout terminals."""
    try:
        return sys.stdout.isatty() and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False
