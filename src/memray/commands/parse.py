"""``memray parse``: every raw record of a capture, one per line, for debugging.

It streams: the reader prints as it decodes, so a capture of any size works.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_results_argument, check_capture_path, reading

HELP = "Print every raw record of a capture, one per line (for debugging)"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    add_results_argument(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray._reader import dump_all_records

    path = check_capture_path(args.results)
    sys.stdout.flush()
    with reading(path):
        dump_all_records(path)
    sys.stdout.flush()
    return 0
