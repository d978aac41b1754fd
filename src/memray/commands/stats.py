"""``memray stats``: totals, size histogram, allocator mix, top locations by
size and count, and per-module totals; as text or as JSON."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .common import (
    CommandError,
    add_results_argument,
    captures,
    check_capture_path,
    check_output_file,
    positive_int,
    progress_enabled,
    reading,
    stdout_is_terminal,
)

HELP = "Show high level statistics of a capture: sizes, allocators, top locations"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    add_results_argument(parser)
    parser.add_argument(
        "-n",
        "--num-largest",
        metavar="N",
        type=positive_int,
        default=5,
        help="How many of the top locations and modules to show (default 5)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False,
        help="Write the statistics as JSON to a file (see -o) instead of printing them",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="JSON output file (default: memray-stats-<capture>.json next to the capture)",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", default=False, help="Overwrite the JSON output file"
    )


def _json_path(args: argparse.Namespace) -> Path:
    if args.output:
        return Path(args.output)
    capture = Path(args.results)
    name = capture.name
    name = name.removeprefix("memray-")
    return capture.with_name(f"memray-stats-{name}.json")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray._reader import compute_statistics
    from memray.reporters.stats import StatsReporter

    path = check_capture_path(args.results)
    source = captures(path, args.more_results)
    json_path = _json_path(args) if args.json else None
    if json_path is not None:
        check_output_file(json_path, force=args.force)
    with reading(path):  # an aggregated capture: NotImplementedError, one line
        stats = compute_statistics(
            source, report_progress=progress_enabled(), num_largest=args.num_largest
        )
    reporter = StatsReporter(stats, args.num_largest)
    if json_path is None:
        reporter.render(use_rich=stdout_is_terminal())
        return 0
    data = reporter.to_json()
    tmp = json_path.with_name(json_path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, json_path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"Cannot write {json_path}: {error.strerror or error}") from error
    print(f"Wrote {json_path}")
    return 0
