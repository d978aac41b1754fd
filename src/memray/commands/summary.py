"""``memray summary``: per function, total and own memory and allocation
counts at the peak (or of leaks, or of temporary allocations), as a table."""

from __future__ import annotations

import argparse

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

HELP = "Show a table of the functions that allocate the most memory, in the terminal"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    from memray.reporters.summary import SummaryReporter

    add_results_argument(parser)
    columns = ", ".join(
        f"{i}={name}".replace("%", "%%") for i, name in enumerate(SummaryReporter.COLUMNS[1:], 1)
    )
    parser.add_argument(
        "-s",
        "--sort-column",
        metavar="N",
        type=int,
        default=1,
        help=f"Column to sort on, descending ({columns}; default 1)",
    )
    parser.add_argument(
        "-r",
        "--max-rows",
        metavar="N",
        type=positive_int,
        default=None,
        help="Show at most N rows (default: all)",
    )
    add_snapshot_options(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray.reporters.summary import SummaryReporter

    if not 1 <= args.sort_column <= SummaryReporter.N_COLUMNS:
        parser.error(f"--sort-column must be between 1 and {SummaryReporter.N_COLUMNS}")
    reader = open_reader(args.results, args.more_results)
    with reader, reading(args.results):
        reporter = SummaryReporter.from_snapshot(
            snapshot_records(reader, args), native=reader.metadata.has_native_traces
        )
        metadata = reader.metadata
        memory = reader.get_heap_peak_snapshot()
        start_ms = round(reader.metadata.start_time.timestamp() * 1000)
    reporter.render(
        args.sort_column,
        max_rows=args.max_rows,
        use_rich=stdout_is_terminal(),
        title=snapshot_title(args) + estimate_note(metadata),
        memory=memory,
        memory_seconds=None if memory is None else (memory.time - start_ms) / 1000,
    )
    return 0
