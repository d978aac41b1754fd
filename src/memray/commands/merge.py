"""``memray merge -o OUT IN...``: one capture of several processes (a tree
written by ``--follow-children``, or any captures), readable by every
reporter, the reader API and ``memray diff``.

The merging itself is C (``_core/merge.c``); this module checks the paths,
writes through ``_memray.Merge`` and says what it wrote.
"""

from __future__ import annotations

import argparse
import os

from .common import CommandError, check_capture_path, check_output_file, one_line

HELP = "Merge the captures of several processes (e.g. out.bin out.bin.*) into one"

DESCRIPTION = """\
Merge captures of several processes into one capture: the captures that
`memray run --follow-children` writes for a process tree (out.bin and
out.bin.<pid>...), or any captures of one file format. Every reporter reads
the result; processes and their threads stay apart (thread names say the
pid), memory over time is the sum over the processes, on one time axis.

Example:

    $ memray run --follow-children -o tree.bin pipeline.py
    $ memray merge -o all.bin tree.bin tree.bin.*
    $ memray flamegraph all.bin

Reporters also take several captures directly (memray flamegraph tree.bin
tree.bin.*) and merge them while they read, without writing a file.
"""


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="Where to write the merged capture")
    parser.add_argument(
        "-f", "--force", action="store_true", help="Overwrite the output file if it exists"
    )
    parser.add_argument(
        "inputs", metavar="FILE", nargs="+", help="Captures to merge (at least one)"
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray import _memray

    paths = [check_capture_path(p) for p in args.inputs]
    out = check_output_file(args.output, force=args.force)
    for path in paths:
        if os.path.exists(out) and os.path.samefile(path, out):
            raise CommandError(f"The output {out} is also an input")
    names = list(paths)
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        merge = _memray.Merge(fds, names)
        pids = [_memray.CapturePass(fd, name).header["pid"] for fd, name in zip(fds, names)]
    except (OSError, ValueError) as error:
        raise CommandError(one_line(error)) from error
    finally:
        for fd in fds:
            os.close(fd)
    try:
        merge.write(os.fspath(out), True)
    except OSError as error:
        raise CommandError(one_line(error.strerror or error)) from error
    listed = ", ".join(str(p) for p in pids)
    noun = "process" if len(pids) == 1 else "processes"
    print(f"Wrote {out}: {len(pids)} {noun} (pid {listed})")
    return 0
