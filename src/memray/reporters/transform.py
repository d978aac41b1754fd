"""Exporters for other tools: gprof2dot JSON, CSV, speedscope JSON and pprof.

Each takes grouped records and writes one file. The pprof profile.proto is
encoded here by hand (varints and length-delimited fields); the schema it
follows is github.com/google/pprof/proto/profile.proto.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable
from typing import IO, Any, TextIO

from .._enums import AllocatorType
from ._common import Frame, Record, record_stack

FORMATS = ("gprof2dot", "csv", "speedscope", "pprof")
SUFFIXES = {
    "gprof2dot": ".json",
    "csv": ".csv",
    "speedscope": ".speedscope.json",
    "pprof": ".pb.gz",
}


def _allocator_name(value: int) -> str:
    try:
        return AllocatorType(value).name
    except ValueError:
        return str(value)


def write_gprof2dot(records: Iterable[Record], out: TextIO, *, native_traces: bool) -> None:
    """gprof2dot's JSON input: functions by (name, module), events leaf first."""
    index: dict[tuple[str, str], int] = {}
    functions: list[dict[str, str]] = []
    events: list[dict[str, Any]] = []
    for record in records:
        chain = []
        for function, file, _line in record_stack(record, native_traces):
            key = (function, file)
            i = index.get(key)
            if i is None:
                i = index[key] = len(functions)
                functions.append({"name": function, "module": file})
            chain.append(i)
        if chain:
            events.append({"callchain": chain, "cost": [int(record.size)]})
    json.dump(
        {
            "version": 0,
            "costs": [{"description": "Memory", "unit": "bytes"}],
            "functions": functions,
            "events": events,
        },
        out,
    )


def write_csv(records: Iterable[Record], out: TextIO, *, native_traces: bool) -> None:
    """One row per record: allocator, num_allocations, size, tid, thread_name,
    stack_trace ('function;file;line' innermost first, joined by '|')."""
    writer = csv.writer(out)
    writer.writerow(["allocator", "num_allocations", "size", "tid", "thread_name", "stack_trace"])
    for record in records:
        writer.writerow(
            [
                _allocator_name(record.allocator),
                int(record.n_allocations),
                int(record.size),
                int(record.tid),
                str(record.thread_name),
                "|".join(
                    f"{f};{file};{line}" for f, file, line in record_stack(record, native_traces)
                ),
            ]
        )


def speedscope_document(
    records: Iterable[Record], *, native_traces: bool, name: str, exporter: str
) -> dict[str, Any]:
    """A speedscope file (https://www.speedscope.app/file-format-schema.json) with
    two sampled profiles over the same frames: bytes and allocation counts."""
    frame_index: dict[Frame, int] = {}
    frames: list[dict[str, Any]] = []
    weights: dict[tuple[int, ...], list[int]] = {}
    for record in records:
        stack = record_stack(record, native_traces)
        if not stack:
            continue
        sample = []
        for frame in reversed(stack):  # speedscope stacks are root first
            i = frame_index.get(frame)
            if i is None:
                i = frame_index[frame] = len(frames)
                function, file, line = frame
                entry: dict[str, Any] = {"name": function}
                if file:
                    entry["file"] = file
                if line > 0:
                    entry["line"] = int(line)
                frames.append(entry)
            sample.append(i)
        acc = weights.setdefault(tuple(sample), [0, 0])
        acc[0] += int(record.size)
        acc[1] += int(record.n_allocations)

    def profile(title: str, unit: str, column: int) -> dict[str, Any]:
        samples = [list(s) for s, w in weights.items() if w[column] > 0]
        values = [w[column] for w in weights.values() if w[column] > 0]
        return {
            "type": "sampled",
            "name": title,
            "unit": unit,
            "startValue": 0,
            "endValue": sum(values),
            "samples": samples,
            "weights": values,
        }

    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [profile("Memory", "bytes", 0), profile("Allocations", "none", 1)],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": exporter,
    }


def write_speedscope(
    records: Iterable[Record], out: TextIO, *, native_traces: bool, name: str, exporter: str
) -> None:
    json.dump(
        speedscope_document(records, native_traces=native_traces, name=name, exporter=exporter),
        out,
    )


# --- pprof ------------------------------------------------------------------------

_VARINT = 0
_LEN = 2
_U64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    value &= _U64  # int64 fields: negative values as two's complement, 10 bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int_field(field: int, value: int) -> bytes:
    """A varint field; zero is the proto3 default and is left out."""
    if not value:
        return b""
    return _varint(field << 3 | _VARINT) + _varint(value)


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | _LEN) + _varint(len(payload)) + payload


def _packed(field: int, values: Iterable[int]) -> bytes:
    payload = b"".join(_varint(v) for v in values)
    return _len_field(field, payload) if payload else b""


class PprofProfile:
    """Builds a perftools.profiles.Profile with the sample types
    alloc_objects/count, alloc_space/bytes, inuse_objects/count, inuse_space/bytes.

    The reader gives grouped snapshots, not a per-location total of every
    allocation ever made, so alloc_* hold what the chosen snapshot holds: the
    same as inuse_* for the peak or the leaks, the freed blocks (and inuse_*
    zero) for temporary allocations.
    """

    SAMPLE_TYPES = (
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    )

    def __init__(self, *, native_traces: bool) -> None:
        self.native_traces = native_traces
        self._strings: dict[str, int] = {"": 0}
        self._functions: dict[tuple[str, str], int] = {}
        self._function_msgs: list[bytes] = []
        self._locations: dict[Frame, int] = {}
        self._location_msgs: list[bytes] = []
        # (location ids leaf first, allocator) -> [alloc_objects, alloc_space,
        # inuse_objects, inuse_space]
        self._samples: dict[tuple[tuple[int, ...], int], list[int]] = {}

    def _string(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self._strings)
        return index

    def _function(self, name: str, file: str) -> int:
        key = (name, file)
        fid = self._functions.get(key)
        if fid is None:
            fid = self._functions[key] = len(self._functions) + 1
            name_index = self._string(name)
            self._function_msgs.append(
                _int_field(1, fid)
                + _int_field(2, name_index)
                + _int_field(3, name_index)
                + _int_field(4, self._string(file))
            )
        return fid

    def _location(self, frame: Frame) -> int:
        lid = self._locations.get(frame)
        if lid is None:
            function, file, line = frame
            lid = self._locations[frame] = len(self._locations) + 1
            line_msg = _int_field(1, self._function(function, file)) + _int_field(2, int(line))
            self._location_msgs.append(_int_field(1, lid) + _len_field(4, line_msg))
        return lid

    def _key(self, record: Record) -> tuple[tuple[int, ...], int]:
        stack = record_stack(record, self.native_traces) or [("<unknown>", "", 0)]
        return tuple(self._location(tuple(frame)) for frame in stack), int(record.allocator)

    def add(self, records: Iterable[Record], *, in_use: bool) -> None:
        """Adds grouped records as allocated, and also as in use when ``in_use``
        (a snapshot of live memory: peak or leaks) rather than freed
        (temporary allocations)."""
        for record in records:
            values = self._samples.setdefault(self._key(record), [0, 0, 0, 0])
            n, size = int(record.n_allocations), int(record.size)
            values[0] += n
            values[1] += size
            if in_use:
                values[2] += n
                values[3] += size

    def serialize(
        self,
        *,
        default_sample_type: str = "inuse_space",
        time_nanos: int = 0,
        duration_nanos: int = 0,
        comments: Iterable[str] = (),
    ) -> bytes:
        types = b"".join(
            _len_field(1, _int_field(1, self._string(t)) + _int_field(2, self._string(u)))
            for t, u in self.SAMPLE_TYPES
        )
        allocator_key = self._string("allocator")
        samples = []
        for (locations, allocator), values in self._samples.items():
            label = _int_field(1, allocator_key) + _int_field(
                2, self._string(_allocator_name(allocator).lower())
            )
            samples.append(
                _len_field(2, _packed(1, locations) + _packed(2, values) + _len_field(3, label))
            )
        period_type = _int_field(1, self._string("space")) + _int_field(2, self._string("bytes"))
        comment_ids = [self._string(c) for c in comments]
        default_type = self._string(default_sample_type)
        # Every string is interned by now: the table can be written.
        strings = b"".join(_len_field(6, s.encode("utf-8", "replace")) for s in self._strings)
        return b"".join(
            [
                types,
                *samples,
                *(_len_field(4, m) for m in self._location_msgs),
                *(_len_field(5, m) for m in self._function_msgs),
                strings,
                _int_field(9, time_nanos),
                _int_field(10, duration_nanos),
                _len_field(11, period_type),
                _int_field(12, 1),
                _packed(13, comment_ids),
                _int_field(14, default_type),
            ]
        )


def write_pprof(data: bytes, out: IO[bytes]) -> None:
    """Gzips a serialized profile (mtime 0, so the output is reproducible)."""
    out.write(gzip.compress(data, mtime=0))
