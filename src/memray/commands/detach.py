"""``memray detach PID``: stop the tracking `memray attach` started."""

from __future__ import annotations

import argparse

from .attach import _DETACH, add_method_argument, inject
from .common import CommandError, positive_int

HELP = "Stop tracking a process that `memray attach` started tracking"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=positive_int, help="process id of the tracked program")
    add_method_argument(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    outcome = inject(args.pid, _DETACH, args.method)
    if outcome != "ok":
        raise CommandError(f"could not stop tracking in process {args.pid}: {outcome}")
    print(f"Stopped tracking process {args.pid}.")
    return 0
