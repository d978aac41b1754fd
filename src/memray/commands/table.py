"""`memray table`: an HTML table of the allocations of a capture, one row per
thread, allocator and location."""

from __future__ import annotations

import argparse

from .common import (
    add_results_argument,
    add_snapshot_options,
    check_capture_path,
    check_output_file,
    open_reader,
    reading,
    snapshot_records,
)
from .flamegraph import (
    add_no_web_option,
    add_output_options,
    default_output_path,
    snapshot_kind,
    write_text,
)

HELP = "Generate an HTML table with all records in the peak memory usage"
DESCRIPTION = """\
Generate a self-contained HTML table (sortable, searchable, paginated) of the
allocations alive at the heap's peak, or leaked (--leaks), or temporary
(--temporary-allocations), summed per thread, allocator and location.
"""


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    add_output_options(parser)
    add_snapshot_options(parser)
    add_no_web_option(parser)
    parser.add_argument(
        "--split-threads",
        action="store_true",
        default=False,
        help="Do not merge allocations across threads",
    )
    add_results_argument(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray.reporters.table import render_table

    name = check_capture_path(args.results)
    out = check_output_file(
        args.output or default_output_path(name, "table", ".html"), force=args.force
    )
    merge_threads = not args.split_threads
    reader = open_reader(name, args.more_results)
    with reading(name), reader:
        page = render_table(
            snapshot_records(reader, args, merge_threads=merge_threads),
            metadata=reader.metadata,
            kind=snapshot_kind(args),
            merge_threads=merge_threads,
            temporary_threshold=args.temporary_allocation_threshold,
        )
    write_text(out, page)
    print(f"Wrote {out}")
    return 0
