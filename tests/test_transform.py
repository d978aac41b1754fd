"""`memray transform`: gprof2dot JSON, CSV, speedscope JSON and gzipped pprof,
on a real capture made here, with exact names, sizes and counts; the pprof
output is decoded against the profile.proto schema (with the protobuf library
when installed, and always with a small independent decoder)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_html_reports import HOSTILE_NAME, PEAK_SIZE, line_of, make_capture, memray_cli

from memray.reporters import transform as tr

FORMATS = ("gprof2dot", "csv", "speedscope", "pprof")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory, testalloc: Path) -> tuple[Path, Path]:
    return make_capture(tmp_path_factory.mktemp("capture"), testalloc)


def run_transform(fmt: str, cap: Path, out: Path, *flags: str) -> bytes:
    proc = memray_cli("transform", fmt, *flags, "-o", str(out), "-f", str(cap))
    assert proc.returncode == 0, proc.stderr
    assert f"Wrote {out}" in proc.stdout
    return out.read_bytes()


# --- gprof2dot ----------------------------------------------------------------------


def test_gprof2dot(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, prog = capture
    out = tmp_path / "g.json"
    doc = json.loads(run_transform("gprof2dot", cap, out))
    assert doc["version"] == 0
    assert doc["costs"] == [{"description": "Memory", "unit": "bytes"}]
    functions = doc["functions"]
    events = {tuple(functions[i]["name"] for i in e["callchain"]): e["cost"] for e in doc["events"]}
    assert events[("leaky_function", "<module>")] == [1234567]
    assert events[("peak_function", "<module>")] == [PEAK_SIZE]
    assert {"name": "leaky_function", "module": str(prog)} in functions
    assert all(len(e["cost"]) == 1 for e in doc["events"])
    assert all(0 <= i < len(functions) for e in doc["events"] for i in e["callchain"])


def test_gprof2dot_output_loads_in_gprof2dot(
    capture: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    pytest.importorskip("gprof2dot")
    cap, _ = capture
    out = tmp_path / "g.json"
    run_transform("gprof2dot", cap, out)
    proc = subprocess.run(
        [sys.executable, "-m", "gprof2dot", "-f", "json", "-n", "0", "-e", "0", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "digraph" in proc.stdout and "leaky_function" in proc.stdout


# --- csv ------------------------------------------------------------------------------------


def test_csv(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, prog = capture
    text = run_transform("csv", cap, tmp_path / "c.csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["allocator", "num_allocations", "size", "tid", "thread_name", "stack_trace"]
    by_stack = {r[5]: r for r in rows[1:]}
    leak_stack = (
        f"leaky_function;{prog};{line_of('# LEAK')}|<module>;{prog};{line_of('# CALL_LEAK')}"
    )
    allocator, count, size, tid, _, _ = by_stack[leak_stack]
    assert (allocator, count, size) == ("MALLOC", "1", "1234567")
    assert int(tid) != -1
    worker = [r for r in rows[1:] if r[5].startswith("thread_body;")]
    assert [(r[0], r[1], r[2]) for r in worker] == [("MALLOC", "1", "222222")]
    assert "worker-thread" in worker[0][4]
    assert worker[0][3] != tid
    hostile = [r for r in rows[1:] if r[5].startswith(HOSTILE_NAME + ";")]
    assert [r[2] for r in hostile] == ["4242"]


def test_csv_leaks_and_temporary(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, _ = capture
    rows = list(
        csv.reader(io.StringIO(run_transform("csv", cap, tmp_path / "l.csv", "--leaks").decode()))
    )
    functions = {r[5].split(";", 1)[0] for r in rows[1:]}
    assert "leaky_function" in functions and "peak_function" not in functions
    rows = list(
        csv.reader(
            io.StringIO(
                run_transform("csv", cap, tmp_path / "t.csv", "--temporary-allocations").decode()
            )
        )
    )
    temp = [r for r in rows[1:] if r[5].startswith("temporary_function;")]
    assert [(r[1], r[2]) for r in temp] == [("3", str(3 * 7777))]


# --- speedscope ------------------------------------------------------------------------------

SPEEDSCOPE_UNITS = {"none", "nanoseconds", "microseconds", "milliseconds", "seconds", "bytes"}


def check_speedscope_schema(doc: dict[str, Any]) -> None:
    """The parts of https://www.speedscope.app/file-format-schema.json a
    sampled-profile file uses, checked as the schema states them."""
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert set(doc) <= {"$schema", "shared", "profiles", "name", "activeProfileIndex", "exporter"}
    frames = doc["shared"]["frames"]
    assert isinstance(frames, list)
    for frame in frames:
        assert set(frame) <= {"name", "file", "line", "col"}
        assert isinstance(frame["name"], str)
        assert isinstance(frame.get("file", ""), str)
        assert isinstance(frame.get("line", 0), int) and isinstance(frame.get("col", 0), int)
    assert isinstance(doc["profiles"], list) and doc["profiles"]
    for profile in doc["profiles"]:
        assert profile["type"] == "sampled"
        assert set(profile) == {
            "type",
            "name",
            "unit",
            "startValue",
            "endValue",
            "samples",
            "weights",
        }
        assert isinstance(profile["name"], str)
        assert profile["unit"] in SPEEDSCOPE_UNITS
        assert len(profile["samples"]) == len(profile["weights"])
        for stack in profile["samples"]:
            assert stack and all(isinstance(i, int) and 0 <= i < len(frames) for i in stack)
        assert all(isinstance(w, (int, float)) and w > 0 for w in profile["weights"])
        assert profile["startValue"] == 0 and profile["endValue"] == sum(profile["weights"])
    assert 0 <= doc["activeProfileIndex"] < len(doc["profiles"])
    assert isinstance(doc["name"], str) and isinstance(doc["exporter"], str)


def test_speedscope(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, prog = capture
    doc = json.loads(run_transform("speedscope", cap, tmp_path / "s.json"))
    check_speedscope_schema(doc)
    frames = doc["shared"]["frames"]
    memory, allocations = doc["profiles"]
    assert (memory["name"], memory["unit"]) == ("Memory", "bytes")
    assert (allocations["name"], allocations["unit"]) == ("Allocations", "none")

    def weight_of(profile: dict[str, Any], leaf: str) -> int:
        return sum(
            w
            for stack, w in zip(profile["samples"], profile["weights"])
            if frames[stack[-1]]["name"] == leaf  # root first, leaf last
        )

    assert weight_of(memory, "leaky_function") == 1234567
    assert weight_of(allocations, "leaky_function") == 1
    assert weight_of(memory, "peak_function") == PEAK_SIZE
    leak = next(s for s in memory["samples"] if frames[s[-1]]["name"] == "leaky_function")
    assert [frames[i] for i in leak] == [
        {"name": "<module>", "file": str(prog), "line": line_of("# CALL_LEAK")},
        {"name": "leaky_function", "file": str(prog), "line": line_of("# LEAK")},
    ]
    assert doc["exporter"].startswith("memray@")
    assert "prog.py" in doc["name"]


# --- pprof -------------------------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def decode_fields(data: bytes) -> list[tuple[int, int, Any]]:
    """A protobuf message as (field, wire type, value) in order."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value = data[pos : pos + length]
            assert len(value) == length, "truncated field"
            pos += length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _ints(fields: list, number: int) -> list[int]:
    """A repeated integer field, packed or not."""
    out = []
    for n, wire, value in fields:
        if n == number:
            if wire == 0:
                out.append(value)
            else:
                pos = 0
                while pos < len(value):
                    v, pos = _read_varint(value, pos)
                    out.append(v)
    return out


def _int(fields: list, number: int) -> int:
    values = _ints(fields, number)
    return values[-1] if values else 0


def _messages(fields: list, number: int) -> list[list]:
    return [decode_fields(v) for n, w, v in fields if n == number and w == 2]


def decode_profile_by_hand(data: bytes) -> dict[str, Any]:
    """profile.proto decoded into plain data by the field numbers of the schema."""
    top = decode_fields(data)
    strings = [v.decode("utf-8") for n, w, v in top if n == 6]
    functions = {_int(f, 1): (strings[_int(f, 2)], strings[_int(f, 4)]) for f in _messages(top, 5)}
    locations = {}
    for loc in _messages(top, 4):
        lines = _messages(loc, 4)
        locations[_int(loc, 1)] = [(*functions[_int(line, 1)], _int(line, 2)) for line in lines]
    samples = []
    for sample in _messages(top, 2):
        labels = {strings[_int(lab, 1)]: strings[_int(lab, 2)] for lab in _messages(sample, 3)}
        stack = [frame for lid in _ints(sample, 1) for frame in locations[lid]]
        samples.append((stack, _ints(sample, 2), labels))
    types = [(strings[_int(t, 1)], strings[_int(t, 2)]) for t in _messages(top, 1)]
    return {
        "strings": strings,
        "types": types,
        "samples": samples,
        "default": strings[_int(top, 14)],
        "period_type": [(strings[_int(t, 1)], strings[_int(t, 2)]) for t in _messages(top, 11)],
    }


def profile_message_class() -> Any:
    """perftools.profiles.Profile built through protobuf's descriptor API."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    T = descriptor_pb2.FieldDescriptorProto
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL
    i64, u64, b, s, m = T.TYPE_INT64, T.TYPE_UINT64, T.TYPE_BOOL, T.TYPE_STRING, T.TYPE_MESSAGE
    schema = {
        "Profile": [
            ("sample_type", 1, m, rep, "ValueType"),
            ("sample", 2, m, rep, "Sample"),
            ("mapping", 3, m, rep, "Mapping"),
            ("location", 4, m, rep, "Location"),
            ("function", 5, m, rep, "Function"),
            ("string_table", 6, s, rep, None),
            ("drop_frames", 7, i64, opt, None),
            ("keep_frames", 8, i64, opt, None),
            ("time_nanos", 9, i64, opt, None),
            ("duration_nanos", 10, i64, opt, None),
            ("period_type", 11, m, opt, "ValueType"),
            ("period", 12, i64, opt, None),
            ("comment", 13, i64, rep, None),
            ("default_sample_type", 14, i64, opt, None),
        ],
        "ValueType": [("type", 1, i64, opt, None), ("unit", 2, i64, opt, None)],
        "Sample": [
            ("location_id", 1, u64, rep, None),
            ("value", 2, i64, rep, None),
            ("label", 3, m, rep, "Label"),
        ],
        "Label": [
            ("key", 1, i64, opt, None),
            ("str", 2, i64, opt, None),
            ("num", 3, i64, opt, None),
            ("num_unit", 4, i64, opt, None),
        ],
        "Mapping": [
            ("id", 1, u64, opt, None),
            ("memory_start", 2, u64, opt, None),
            ("memory_limit", 3, u64, opt, None),
            ("file_offset", 4, u64, opt, None),
            ("filename", 5, i64, opt, None),
            ("build_id", 6, i64, opt, None),
            ("has_functions", 7, b, opt, None),
            ("has_filenames", 8, b, opt, None),
            ("has_line_numbers", 9, b, opt, None),
            ("has_inline_frames", 10, b, opt, None),
        ],
        "Location": [
            ("id", 1, u64, opt, None),
            ("mapping_id", 2, u64, opt, None),
            ("address", 3, u64, opt, None),
            ("line", 4, m, rep, "Line"),
            ("is_folded", 5, b, opt, None),
        ],
        "Line": [
            ("function_id", 1, u64, opt, None),
            ("line", 2, i64, opt, None),
            ("column", 3, i64, opt, None),
        ],
        "Function": [
            ("id", 1, u64, opt, None),
            ("name", 2, i64, opt, None),
            ("system_name", 3, i64, opt, None),
            ("filename", 4, i64, opt, None),
            ("start_line", 5, i64, opt, None),
        ],
    }
    file = descriptor_pb2.FileDescriptorProto(
        name="memray_test_profile.proto", package="perftools.profiles", syntax="proto3"
    )
    for name, fields in schema.items():
        message = file.message_type.add(name=name)
        for field_name, number, ftype, label, type_name in fields:
            f = message.field.add(name=field_name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".perftools.profiles.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))


def check_with_protobuf(data: bytes) -> Any:
    """Parses with the real protobuf runtime and checks pprof's own rules."""
    profile = profile_message_class().FromString(data)
    st = profile.string_table
    assert st[0] == ""
    assert [(st[t.type], st[t.unit]) for t in profile.sample_type] == [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    location_ids = {loc.id for loc in profile.location}
    function_ids = {fn.id for fn in profile.function}
    assert 0 not in location_ids and 0 not in function_ids
    assert len(location_ids) == len(profile.location)
    for loc in profile.location:
        assert loc.line and all(line.function_id in function_ids for line in loc.line)
    for fn in profile.function:
        assert 0 <= fn.name < len(st) and 0 <= fn.filename < len(st)
    for sample in profile.sample:
        assert len(sample.value) == len(profile.sample_type)
        assert sample.location_id and all(i in location_ids for i in sample.location_id)
        assert all(v >= 0 for v in sample.value)
    assert profile.period == 1
    assert (st[profile.period_type.type], st[profile.period_type.unit]) == ("space", "bytes")
    return profile


def pprof_values(doc: dict[str, Any], leaf: str) -> list[int]:
    totals = [0, 0, 0, 0]
    for stack, values, _ in doc["samples"]:
        if stack[0][0] == leaf:  # leaf first
            totals = [a + b for a, b in zip(totals, values)]
    return totals


@pytest.mark.parametrize("checker", ["protobuf", "by-hand"])
def test_pprof(capture: tuple[Path, Path], tmp_path: Path, checker: str) -> None:
    cap, prog = capture
    raw = run_transform("pprof", cap, tmp_path / "p.pb.gz")
    assert raw[:2] == b"\x1f\x8b", "not gzipped"
    data = gzip.decompress(raw)
    if checker == "protobuf":
        profile = check_with_protobuf(data)
        st = profile.string_table
        assert st[profile.default_sample_type] == "inuse_space"
        assert profile.time_nanos > 0
        return
    doc = decode_profile_by_hand(data)
    assert doc["types"] == [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    assert doc["default"] == "inuse_space"
    # What was alive at the peak, as allocated and as in use.
    assert pprof_values(doc, "leaky_function") == [1, 1234567, 1, 1234567]
    assert pprof_values(doc, "peak_function") == [1, PEAK_SIZE, 1, PEAK_SIZE]
    assert pprof_values(doc, "temporary_function") == [0, 0, 0, 0]
    leak = next(s for s in doc["samples"] if s[0][0][0] == "leaky_function")
    assert leak[0] == [
        ("leaky_function", str(prog), line_of("# LEAK")),
        ("<module>", str(prog), line_of("# CALL_LEAK")),
    ]
    assert leak[2] == {"allocator": "malloc"}


def test_pprof_leaks_and_temporary(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, _ = capture
    doc = decode_profile_by_hand(
        gzip.decompress(run_transform("pprof", cap, tmp_path / "l.pb.gz", "--leaks"))
    )
    assert pprof_values(doc, "leaky_function") == [1, 1234567, 1, 1234567]
    assert pprof_values(doc, "peak_function") == [0, 0, 0, 0]
    doc = decode_profile_by_hand(
        gzip.decompress(
            run_transform("pprof", cap, tmp_path / "t.pb.gz", "--temporary-allocations")
        )
    )
    assert doc["default"] == "alloc_space"
    assert pprof_values(doc, "temporary_function") == [3, 3 * 7777, 0, 0]


def test_pprof_encoder_round_trip() -> None:
    """The hand encoder on edge values: large and negative int64, unicode, empty."""
    assert tr._varint(0) == b"\x00"
    assert tr._varint(300) == b"\xac\x02"
    assert tr._varint(-1) == b"\xff" * 9 + b"\x01"
    assert decode_fields(tr._len_field(6, "é<".encode()))[0] == (6, 2, "é<".encode())

    class Rec:
        size, n_allocations, allocator = 2**40, 3, 6

        def stack_trace(self) -> list:
            return [("f\u00e9", "/x.py", 2**31), ("g", "", 0)]

    profile = tr.PprofProfile(native_traces=False)
    profile.add([Rec()], in_use=True)
    profile.add([Rec()], in_use=False)
    doc = decode_profile_by_hand(profile.serialize())
    assert doc["samples"] == [
        ([("f\u00e9", "/x.py", 2**31), ("g", "", 0)], [6, 2**41, 3, 2**40], {"allocator": "malloc"})
    ]


# --- names, overwrite, bad input ----------------------------------------------------------------


def test_default_output_names(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, _ = capture
    local = tmp_path / cap.name
    local.write_bytes(cap.read_bytes())
    expected = {
        "gprof2dot": "memray-gprof2dot-prog.json",
        "csv": "memray-csv-prog.csv",
        "speedscope": "memray-speedscope-prog.speedscope.json",
        "pprof": "memray-pprof-prog.pb.gz",
    }
    for fmt, name in expected.items():
        proc = memray_cli("transform", fmt, str(local), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / name).is_file(), fmt
        proc = memray_cli("transform", fmt, str(local), cwd=tmp_path)
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1 and "exists" in proc.stderr


def test_unknown_format_is_usage_error(capture: tuple[Path, Path], tmp_path: Path) -> None:
    proc = memray_cli("transform", "svg", str(capture[0]))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", ["missing", "empty", "garbage"])
def test_bad_input_is_one_line(fmt: str, case: str, tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(bytes(range(256)) * 32)
    out = tmp_path / "out"
    proc = memray_cli("transform", fmt, "-o", str(out), str(path))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
