"""``memray parse``: every raw record of a capture, one per line, for debugging.

It streams: the reader prints as it decodes, so a capture of any size works.
"""

from __future__ import annotations

import argparse
import sys

from .common import CommandError, add_results_argument, check_capture_path, reading

HELP = "Print every raw record of a capture, one per line (for debugging)"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    add_results_argument(parser, several=False)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray._reader import dump_all_records

    path = check_capture_path(args.results)
    if sys.stdout.isatty():
        # Millions of lines are no use on a screen (memray 1.x's words).
        raise CommandError("You must redirect stdout to a file or shell pipeline.")
    sys.stdout.flush()
    with reading(path):
        dump_all_records(path)
    sys.stdout.flush()
    return 0
