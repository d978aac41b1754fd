"""`memray transform FORMAT`: export a capture for other tools (gprof2dot,
CSV, speedscope, pprof)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .common import (
    add_results_argument,
    add_snapshot_options,
    check_capture_path,
    check_output_file,
    open_reader,
    reading,
    snapshot_records,
)
from .flamegraph import add_output_options, default_output_path, snapshot_kind

FORMATS = ("gprof2dot", "csv", "speedscope", "pprof")

HELP = "Generate report files in different formats (gprof2dot, csv, speedscope, pprof)"
DESCRIPTION = """\
Export the allocations alive at the heap's peak (or leaked with --leaks, or
temporary with --temporary-allocations) for other tools:

  gprof2dot   JSON for `gprof2dot -f json FILE | dot -Tpng -o graph.png`
  csv         one row per thread, allocator and stack
  speedscope  JSON to open in https://www.speedscope.app
  pprof       gzipped profile.proto for `go tool pprof` and compatible readers,
              with alloc_objects, alloc_space, inuse_objects, inuse_space
"""


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, metavar="FORMAT", help=", ".join(FORMATS))
    add_output_options(parser)
    add_snapshot_options(parser)
    add_results_argument(parser)


def _time_nanos(metadata: Any) -> tuple[int, int]:
    start, end = getattr(metadata, "start_time", None), getattr(metadata, "end_time", None)
    try:
        begin = int(start.timestamp() * 1e9)
    except (AttributeError, TypeError, ValueError, OverflowError):
        return 0, 0
    try:
        duration = max(0, int((end - start).total_seconds() * 1e9))
    except (AttributeError, TypeError, ValueError, OverflowError):
        duration = 0
    return begin, duration


def _pprof(reader: Any, args: argparse.Namespace, native: bool) -> bytes:
    from memray.reporters.transform import PprofProfile

    profile = PprofProfile(native_traces=native)
    kind = snapshot_kind(args)
    # Temporary allocations were freed at once: allocated, never in use.
    profile.add(snapshot_records(reader, args), in_use=kind != "temporary")
    default = "alloc_space" if kind == "temporary" else "inuse_space"
    begin, duration = _time_nanos(reader.metadata)
    return profile.serialize(
        default_sample_type=default,
        time_nanos=begin,
        duration_nanos=duration,
        comments=[f"memray {kind}: {getattr(reader.metadata, 'command_line', '')}"],
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memray import __version__
    from memray.reporters import transform

    fmt = args.format
    name = check_capture_path(args.results)
    out = check_output_file(
        args.output or default_output_path(name, fmt, transform.SUFFIXES[fmt]), force=args.force
    )
    reader = open_reader(name, args.more_results)
    with reading(name), reader:
        native = bool(getattr(reader.metadata, "has_native_traces", False))
        if fmt == "pprof":
            payload: bytes = _pprof(reader, args, native)
        else:
            text = io.StringIO(newline="")
            # CSV keeps one row per thread; the graph formats merge threads.
            records = snapshot_records(reader, args, merge_threads=fmt != "csv")
            if fmt == "gprof2dot":
                transform.write_gprof2dot(records, text, native_traces=native)
            elif fmt == "csv":
                transform.write_csv(records, text, native_traces=native)
            else:
                transform.write_speedscope(
                    records,
                    text,
                    native_traces=native,
                    name=str(getattr(reader.metadata, "command_line", "") or "memray"),
                    exporter=f"memray@{__version__}",
                )
            payload = text.getvalue().encode("utf-8")
    if fmt == "pprof":
        buffer = io.BytesIO()
        transform.write_pprof(payload, buffer)
        payload = buffer.getvalue()
    _write_bytes(out, payload)
    print(f"Wrote {out}")
    _print_next_step(fmt, out)
    return 0


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _print_next_step(fmt: str, out: Path) -> None:
    if fmt == "gprof2dot":
        if shutil.which("gprof2dot"):
            command = "gprof2dot"
        elif importlib.util.find_spec("gprof2dot") is not None:
            command = f"{sys.executable} -m gprof2dot"
        else:
            command = "gprof2dot"
            print("gprof2dot does not seem to be installed: pip install gprof2dot")
        if not shutil.which("dot"):
            print("Graphviz (dot) does not seem to be installed.")
        print()
        print("To generate a graph from the transform file, run for example:")
        print(f"{command} -f json {out} | dot -Tpng -o output.png")
    elif fmt == "speedscope":
        print(f"Open it at https://www.speedscope.app or run: speedscope {out}")
    elif fmt == "pprof":
        print(f"View it with, for example: go tool pprof -http=: {out}")
