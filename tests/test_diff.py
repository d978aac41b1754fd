"""`memray diff`: two versions of a program that allocate known sizes at known
lines, captured in a fresh interpreter; exact numbers in the JSON and the
plain table, --fail-over exit codes on both sides of the threshold, file
formats, Python versions, bad input, the HTML page in headless Chromium, and
the worked example of docs/regressions.rst run as written."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import TIMEOUT

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "regressions.rst"

HOSTILE = "</script><b>hostile</b>"

PROGRAM = textwrap.dedent(
    """\
    import sys
    import threading
    import types

    import memray
    from memray._test import MemoryAllocator

    keep = []
    {padding}

    def churn():
        for _ in range({churn_times}):
            block = MemoryAllocator()
            block.malloc(5000)  # CHURN
            block.free()


    # A thread started before tracking (so that starting it allocates
    # nothing in the capture) frees what the main thread allocated.
    handed = []
    go, done = threading.Lock(), threading.Lock()
    go.acquire()
    done.acquire()


    def free_handed():
        go.acquire()
        handed[0].free()
        done.release()


    worker = threading.Thread(target=free_handed)
    worker.start()


    def handoff():
        block = MemoryAllocator()
        block.malloc(7000)  # HANDOFF
        handed.append(block)
        go.release()
        done.acquire()


    def grow():{grow_extra}
        block = MemoryAllocator()
        block.malloc({grow_size})  # GROW
        keep.append(block)


    def steady():
        block = MemoryAllocator()
        block.malloc(40000)  # STEADY
        keep.append(block)


    def shrink():
        block = MemoryAllocator()
        block.malloc({shrink_size})  # SHRINK
        keep.append(block)


    def transient():
        block = MemoryAllocator()
        block.malloc({transient_size})  # TRANSIENT
        block.free()


    def _hostile():
        block = MemoryAllocator()
        block.malloc(4242)  # HOSTILE
        keep.append(block)


    hostile = types.FunctionType(
        _hostile.__code__.replace(co_name={hostile!r}, co_qualname={hostile!r}), globals()
    )

    with memray.Tracker(sys.argv[1], file_format=getattr(memray.FileFormat, sys.argv[2])):
        churn()
        handoff()
        grow()
        steady()
        shrink()
        hostile()
        transient()
    worker.join()
    """
)

# BASE, then NEW: three lines more at the top, one more in grow(), so every
# line moves; grow() allocates 2 MiB more, shrink() 200000 bytes less,
# transient() (alive at the peak only) 200000 more, churn() (freed at once:
# --total only) three times more.
VERSIONS = {
    "base": dict(
        padding="# Version 1.",
        grow_extra="",
        churn_times=2,
        grow_size=1048576,
        shrink_size=300000,
        transient_size=500000,
    ),
    "new": dict(
        padding="# Version 2:\n# the buffer of grow() is three times larger,\n# shrink() needs less,\n# churn() churns more.",
        grow_extra="\n    # three times the buffer",
        churn_times=5,
        grow_size=3145728,
        shrink_size=100000,
        transient_size=700000,
    ),
}


def source(version: str) -> str:
    return PROGRAM.format(hostile=HOSTILE, **VERSIONS[version])


def line_of(version: str, marker: str) -> int:
    for number, text in enumerate(source(version).splitlines(), 1):
        if f"# {marker}" in text:
            return number
    raise ValueError(marker)


def memray_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def capture(python: str, program: Path, out: Path, file_format: str) -> Path:
    proc = subprocess.run(
        [python, str(program), str(out), file_format],
        cwd=program.parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


class Captures:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.programs = {}
        for version in VERSIONS:
            (root / version).mkdir()
            program = root / version / "prog.py"
            program.write_text(source(version))
            self.programs[version] = program
        self.paths = {
            (version, fmt): capture(
                sys.executable, self.programs[version], root / f"{version}-{fmt}.bin", fmt
            )
            for version in VERSIONS
            for fmt in ("ALL_ALLOCATIONS", "AGGREGATED_ALLOCATIONS")
        }

    def __getitem__(self, key: str) -> str:
        """ "base", "new" (full captures), "base-agg", "new-agg"."""
        version, _, agg = key.partition("-")
        return str(self.paths[version, "AGGREGATED_ALLOCATIONS" if agg else "ALL_ALLOCATIONS"])

    def file(self, version: str) -> str:
        return str(self.programs[version])


@pytest.fixture(scope="module")
def caps(tmp_path_factory: pytest.TempPathFactory) -> Captures:
    return Captures(tmp_path_factory.mktemp("diff"))


def diff_json(*args: str) -> dict[str, Any]:
    proc = memray_cli("diff", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def rows(data: dict[str, Any], caps: Captures) -> dict[str, dict[str, Any]]:
    """Locations of the program, by marker of their line in NEW."""
    found = {}
    for loc in data["locations"]:
        if loc["file"] != caps.file("new"):
            continue
        for marker in ("CHURN", "HANDOFF", "GROW", "STEADY", "SHRINK", "TRANSIENT", "HOSTILE"):
            if loc["new_line"] == line_of("new", marker):
                assert marker not in found, data
                found[marker] = loc
    return found


def expect(
    caps: Captures,
    marker: str,
    function: str,
    base: tuple[int, int],
    new: tuple[int, int],
) -> dict[str, Any]:
    return {
        "function": function,
        "file": caps.file("new"),
        "new_line": line_of("new", marker),
        "base_file": caps.file("base"),
        "base_line": line_of("base", marker),
        "base_bytes": base[0],
        "new_bytes": new[0],
        "delta_bytes": new[0] - base[0],
        "base_count": base[1],
        "new_count": new[1],
        "delta_count": new[1] - base[1],
    }


def test_lines_really_moved() -> None:
    assert line_of("new", "GROW") == line_of("base", "GROW") + 4
    assert line_of("new", "SHRINK") == line_of("base", "SHRINK") + 4
    assert line_of("new", "CHURN") == line_of("base", "CHURN") + 3


# --- exact numbers -----------------------------------------------------------------


def peak_expectations(caps: Captures) -> dict[str, dict[str, Any]]:
    return {
        "GROW": expect(caps, "GROW", "grow", (1048576, 1), (3145728, 1)),
        "TRANSIENT": expect(caps, "TRANSIENT", "transient", (500000, 1), (700000, 1)),
        "STEADY": expect(caps, "STEADY", "steady", (40000, 1), (40000, 1)),
        "SHRINK": expect(caps, "SHRINK", "shrink", (300000, 1), (100000, 1)),
        "HOSTILE": expect(caps, "HOSTILE", HOSTILE, (4242, 1), (4242, 1)),
    }


def test_peak_json_exact(caps: Captures) -> None:
    data = diff_json(caps["base"], caps["new"])
    assert data["version"] == 1
    assert data["kind"] == "high_water_mark"
    assert data["base"]["path"] == caps["base"]
    assert data["new"]["file_format"] == "ALL_ALLOCATIONS"
    assert data["fail_over"] is None
    assert rows(data, caps) == peak_expectations(caps)
    totals = data["totals"]
    locations = data["locations"]
    assert totals["base_bytes"] == sum(loc["base_bytes"] for loc in locations)
    assert totals["new_bytes"] == sum(loc["new_bytes"] for loc in locations)
    assert totals["delta_bytes"] == totals["new_bytes"] - totals["base_bytes"]
    # Nothing else differs between the versions at the peak.
    assert totals["delta_bytes"] == 2097152 + 200000 - 200000
    assert totals["delta_count"] == 0
    # Largest growth first, largest shrinkage last.
    deltas = [loc["delta_bytes"] for loc in locations]
    assert deltas == sorted(deltas, reverse=True)
    assert locations[0]["function"] == "grow"
    assert locations[-1]["function"] == "shrink"


def test_leaks_json_exact(caps: Captures) -> None:
    data = diff_json("--leaks", caps["base"], caps["new"])
    assert data["kind"] == "leaks"
    expected = peak_expectations(caps)
    del expected["TRANSIENT"]  # freed before the end: in neither
    assert rows(data, caps) == expected
    assert data["totals"]["delta_bytes"] == 2097152 - 200000


def test_total_json_exact(caps: Captures) -> None:
    data = diff_json("--total", caps["base"], caps["new"])
    assert data["kind"] == "total"
    expected = peak_expectations(caps)
    expected["CHURN"] = expect(caps, "CHURN", "churn", (2 * 5000, 2), (5 * 5000, 5))
    # Freed by another thread: still counted.
    expected["HANDOFF"] = expect(caps, "HANDOFF", "handoff", (7000, 1), (7000, 1))
    assert rows(data, caps) == expected
    assert data["totals"]["delta_bytes"] == 2097152 + 15000 + 200000 - 200000
    assert data["totals"]["delta_count"] == 3


def plain_rows(stdout: str) -> list[str]:
    return [" ".join(line.split()) for line in stdout.splitlines()]


def test_plain_table(caps: Captures) -> None:
    proc = memray_cli("diff", caps["base"], caps["new"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "\x1b" not in proc.stdout  # piped: no colour
    new, b = caps.file("new"), line_of
    lines = plain_rows(proc.stdout)
    assert lines[:3] == [
        "memray diff: allocations alive at peak memory",
        f"BASE: {caps['base']} ({caps.file('base')} {caps['base']} ALL_ALLOCATIONS; ALL_ALLOCATIONS)",
        f"NEW: {caps['new']} ({new} {caps['new']} ALL_ALLOCATIONS; ALL_ALLOCATIONS)",
    ]
    header = "Location Base bytes New bytes Delta bytes Base count New count Delta count"
    start = lines.index(header)
    assert set(lines[start + 1]) == {"-", " "}
    table = lines[start + 2 :]
    grow = f"grow at {new}:{b('new', 'GROW')} (BASE line {b('base', 'GROW')})"
    transient = f"transient at {new}:{b('new', 'TRANSIENT')} (BASE line {b('base', 'TRANSIENT')})"
    shrink = f"shrink at {new}:{b('new', 'SHRINK')} (BASE line {b('base', 'SHRINK')})"
    assert table[0] == f"{grow} 1.00 MiB 3.00 MiB +2.00 MiB 1 1 0"
    assert table[1] == f"{transient} 488.28 KiB 683.59 KiB +195.31 KiB 1 1 0"
    assert table[-3] == f"{shrink} 292.97 KiB 97.66 KiB -195.31 KiB 1 1 0"
    # 1892818 and 3989970 bytes: the five locations, nothing else.
    assert table[-2] == "Total (5 locations) 1.81 MiB 3.81 MiB +2.00 MiB 5 5 0"
    # Unchanged locations (steady, hostile) are counted, not listed.
    assert table[-1] == "(2 unchanged locations not shown)"
    assert len(table) == 5


def test_plain_table_max_rows(caps: Captures) -> None:
    proc = memray_cli("diff", "-r", "1", caps["base"], caps["new"])
    assert proc.returncode == 0, proc.stderr
    lines = plain_rows(proc.stdout)
    assert any(line.startswith("grow at ") for line in lines)
    assert not any(line.startswith("shrink at ") for line in lines)
    assert any(re.fullmatch(r"\(\d+ more changed locations? not shown \(-r\)\)", x) for x in lines)


def test_rich_table_rendering(caps: Captures) -> None:
    import io

    from memray.commands.diff import load
    from memray.reporters.diff import compute_diff, render_table

    diff = compute_diff(
        "high_water_mark",
        load(caps["base"], "high_water_mark", "BASE"),
        load(caps["new"], "high_water_mark", "NEW"),
    )
    out = io.StringIO()
    render_table(diff, file=out, use_rich=True)
    text = out.getvalue()
    assert "memray diff: allocations alive at peak memory" in text
    assert "+2.00 MiB" in text
    assert "grow at" in text
    assert "1 -> 1 (0)" in text


# --- formats and versions --------------------------------------------------------------


@pytest.mark.parametrize(
    "base,new", [("base", "new-agg"), ("base-agg", "new"), ("base-agg", "new-agg")]
)
@pytest.mark.parametrize("kind", ["peak", "leaks"])
def test_all_vs_aggregated(caps: Captures, base: str, new: str, kind: str) -> None:
    flags = ["--leaks"] if kind == "leaks" else []
    full = diff_json(*flags, caps["base"], caps["new"])
    mixed = diff_json(*flags, caps[base], caps[new])
    assert rows(mixed, caps) == rows(full, caps)
    assert mixed["totals"] == full["totals"]
    fmt = "AGGREGATED_ALLOCATIONS" if new.endswith("agg") else "ALL_ALLOCATIONS"
    assert mixed["new"]["file_format"] == fmt


@pytest.mark.parametrize("base,new,role", [("base", "new-agg", "NEW"), ("base-agg", "new", "BASE")])
def test_total_refuses_aggregated(caps: Captures, base: str, new: str, role: str) -> None:
    proc = memray_cli("diff", "--total", caps[base], caps[new])
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("memray: error: --total needs ALL_ALLOCATIONS captures")
    assert f"{role} (" in lines[0] and "AGGREGATED_ALLOCATIONS" in lines[0]


def other_pythons() -> list[str]:
    """Interpreters of another Python version that can import this memray:
    the repository's per-version virtual environments, when present."""
    found = []
    current = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for python in sorted(REPO.glob(".venv*/bin/python")):
        proc = subprocess.run(
            [
                str(python),
                "-c",
                "import sys, memray._test; print('%d.%d' % sys.version_info[:2])",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
        )
        version = proc.stdout.strip()
        if proc.returncode == 0 and version != current and version not in [v for v, _ in found]:
            found.append((version, str(python)))
    return [python for _, python in found]


def test_across_python_versions(caps: Captures, tmp_path: Path) -> None:
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no virtual environment of another Python version with memray in it")
    for python in pythons:
        out = capture(python, caps.programs["new"], tmp_path / "other.bin", "ALL_ALLOCATIONS")
        for flags in ([], ["--leaks"], ["--total"]):
            same = diff_json(*flags, caps["base"], caps["new"])
            across = diff_json(*flags, caps["base"], str(out))
            assert rows(across, caps) == rows(same, caps), python
            # and the other way round: read by this interpreter either way
            back = diff_json(*flags, str(out), caps["base"])
            for marker, row in rows(same, caps).items():
                match = [
                    loc
                    for loc in back["locations"]
                    if loc["file"] == caps.file("base") and loc["new_line"] == row["base_line"]
                ]
                assert len(match) == 1, marker
                assert match[0]["delta_bytes"] == -row["delta_bytes"]
        out.unlink()


# --- --fail-over ------------------------------------------------------------------------------


def test_fail_over_both_sides_of_the_threshold(caps: Captures) -> None:
    delta = diff_json(caps["base"], caps["new"])["totals"]["delta_bytes"]
    assert delta == 2097152
    over = memray_cli("diff", "--fail-over", str(delta - 1), caps["base"], caps["new"])
    assert over.returncode == 1
    assert over.stderr == (
        "memray: error: memory grew by +2.00 MiB (+2097152 bytes) from BASE to NEW: "
        "more than --fail-over 2.00 MiB (2097151 bytes)\n"
    )
    assert "grow at" in over.stdout  # the table is still printed
    at = memray_cli("diff", "--fail-over", str(delta), caps["base"], caps["new"])
    assert at.returncode == 0, at.stderr
    assert at.stderr == (
        "memray: memory changed by +2.00 MiB (+2097152 bytes) from BASE to NEW: "
        "within --fail-over 2.00 MiB (2097152 bytes)\n"
    )
    for size, code in (("1MiB", 1), ("2MiB", 0), ("2.1MB", 0), ("2MB", 1), ("0", 1), ("1GB", 0)):
        proc = memray_cli("diff", "--fail-over", size, caps["base"], caps["new"])
        assert proc.returncode == code, (size, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1


def test_fail_over_with_json_and_shrinking(caps: Captures) -> None:
    proc = memray_cli("diff", "--json", "--fail-over", "1MiB", caps["base"], caps["new"])
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["fail_over"] == {"bytes": 1048576, "failed": True}
    # NEW smaller than BASE: never over, even at 0.
    proc = memray_cli("diff", "--json", "--fail-over", "0", caps["new"], caps["base"])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["totals"]["delta_bytes"] == -2097152
    assert data["fail_over"] == {"bytes": 0, "failed": False}


def test_parse_size() -> None:
    from memray.commands.common import parse_size

    assert parse_size("5MiB") == 5 * 1024**2
    assert parse_size("500KB") == 500_000
    assert parse_size("1GB") == 10**9
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size("1048576") == 1048576
    assert parse_size("2gib") == 2 * 1024**3
    assert parse_size("1.5KiB") == 1536
    assert parse_size("7b") == 7
    for bad in ("-1", "-5MiB", "", "MiB", "5XB", "1e3", "nan", "5 Mi B", "0x10"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


# --- bad input -------------------------------------------------------------------------


def newer_format(path: Path, tmp: Path) -> Path:
    """The capture at path with a format version no reader knows."""
    raw = tmp / "newer.bin"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, memray; from memray._test import MemoryAllocator\n"
            "d = memray.FileDestination(sys.argv[1], compress_on_exit=False)\n"
            "with memray.Tracker(destination=d):\n"
            "    MemoryAllocator().malloc(1000)\n",
            str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert proc.returncode == 0
    data = bytearray(raw.read_bytes())
    assert data[:6] == b"MRYCAP"
    data[8:10] = (99).to_bytes(2, "little")
    raw.write_bytes(bytes(data))
    return raw


@pytest.fixture(scope="module")
def bad(caps: Captures, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    tmp = tmp_path_factory.mktemp("bad")
    text = tmp / "notes.txt"
    text.write_text("not a capture\n")
    empty = tmp / "empty.bin"
    empty.write_bytes(b"")
    link = tmp / "link.bin"
    link.symlink_to(caps["base"])
    truncated = tmp / "truncated.bin"
    truncated.write_bytes(Path(caps["new"]).read_bytes()[:30])
    return {
        "missing": [caps["base"], str(tmp / "nope.bin")],
        "missing-base": [str(tmp / "nope.bin"), caps["new"]],
        "same": [caps["base"], caps["base"]],
        "same-through-link": [caps["base"], str(link)],
        "newer-format-version": [caps["base"], str(newer_format(Path(caps["base"]), tmp))],
        "foreign": [caps["base"], str(text)],
        "empty": [str(empty), caps["new"]],
        "truncated-header": [caps["base"], str(truncated)],
        "directory": [caps["base"], str(tmp)],
    }


EXPECTED_ERRORS = {
    "missing": "No such file: ",
    "missing-base": "No such file: ",
    "same": "BASE and NEW are the same file",
    "same-through-link": "BASE and NEW are the same file",
    "newer-format-version": "newer",
    "foreign": "",
    "empty": "Empty file",
    "truncated-header": "",
    "directory": "Is a directory",
}


@pytest.mark.parametrize("case", sorted(EXPECTED_ERRORS))
@pytest.mark.parametrize("flags", [[], ["--json"], ["--total"]])
def test_bad_input_is_one_line(bad: dict[str, list[str]], case: str, flags: list[str]) -> None:
    proc = memray_cli("diff", *flags, *bad[case])
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("memray: error: ")
    assert "Traceback" not in proc.stderr
    assert EXPECTED_ERRORS[case] in lines[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--fail-over", "5XB"], "invalid size: '5XB'"),
        (["--fail-over=-1MiB"], "must be 0 or more"),
        (["--leaks", "--total"], "not allowed with argument"),
        (["--json", "--html"], "not allowed with argument"),
        (["-o", "out.json"], "-o/--output needs --json or --html"),
        (["-r", "0"], "must be 1 or more"),
    ],
)
def test_usage_errors(caps: Captures, tmp_path: Path, args: list[str], message: str) -> None:
    proc = memray_cli("diff", *args, caps["base"], caps["new"], cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_file_is_not_overwritten_without_force(caps: Captures, tmp_path: Path) -> None:
    out = tmp_path / "diff.json"
    out.write_text("keep me")
    proc = memray_cli("diff", "--json", "-o", str(out), caps["base"], caps["new"])
    assert proc.returncode == 1
    assert proc.stderr.startswith("memray: error: File already exists")
    assert out.read_text() == "keep me"
    proc = memray_cli("diff", "--json", "-f", "-o", str(out), caps["base"], caps["new"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"Wrote {out}\n"
    assert json.loads(out.read_text())["totals"]["delta_bytes"] == 2097152


# --- matching rules --------------------------------------------------------------------


def test_match_lines() -> None:
    from memray.reporters.diff import match_lines

    assert match_lines([10, 20], [10, 20]) == {10: 10, 20: 20}
    # moved as a whole, even where a moved line lands on an old one
    assert match_lines([10, 13], [13, 16]) == {10: 13, 13: 16}
    # moved, and a line added: the added one stands alone
    assert match_lines([10, 13], [14, 15, 17]) == {10: 14, 13: 17}
    # one line left over on each side: paired
    assert match_lines([10, 20], [10, 25]) == {10: 10, 20: 25}
    # two left in BASE, one in NEW: only the shift
    assert match_lines([10, 20, 30], [10, 35]) == {10: 10}
    assert match_lines([], [5]) == {}


def test_match_files() -> None:
    from memray.reporters.diff import match_files

    base = [
        "/ci/base/app/main.py",
        "/ci/base/app/util/__init__.py",
        "/ci/base/app/__init__.py",
        "/usr/lib/python3.11/json/decoder.py",
        "<frozen importlib._bootstrap>",
        "/ci/base/gone.py",
        "/x/a/same.py",
    ]
    new = [
        "/ci/pr/app/main.py",
        "/ci/pr/app/util/__init__.py",
        "/ci/pr/app/__init__.py",
        "/usr/lib/python3.12/json/decoder.py",
        "<frozen importlib._bootstrap>",
        "/y/b/same.py",
        "/y/c/same.py",
    ]
    assert match_files(base, new) == {
        "/ci/base/app/main.py": "/ci/pr/app/main.py",
        "/ci/base/app/util/__init__.py": "/ci/pr/app/util/__init__.py",
        "/ci/base/app/__init__.py": "/ci/pr/app/__init__.py",
        "/usr/lib/python3.11/json/decoder.py": "/usr/lib/python3.12/json/decoder.py",
        "<frozen importlib._bootstrap>": "<frozen importlib._bootstrap>",
        # /x/a/same.py: two equally good candidates, so none
    }


# --- HTML ---------------------------------------------------------------------------------


def embedded(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="memray-data">(.*?)</script>', html, re.DOTALL
    )
    assert match, "no embedded data"
    return json.loads(match.group(1))


def html_report(caps: Captures, out: Path, *flags: str, code: int = 0) -> str:
    proc = memray_cli("diff", "--html", "-o", str(out), "-f", *flags, caps["base"], caps["new"])
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == f"Wrote {out}\n"
    return out.read_text(encoding="utf-8")


def test_html_page(caps: Captures, tmp_path: Path) -> None:
    html = html_report(caps, tmp_path / "diff.html")
    data = embedded(html)
    assert data["totals"]["delta_bytes"] == 2097152
    # Sizes per sample add up to the totals of each side.
    assert sum(data["samples"]["base_size"]) == data["totals"]["base_bytes"]
    assert sum(data["samples"]["new_size"]) == data["totals"]["new_bytes"]
    s, fr = data["strings"], data["frames"]
    grow = [
        f
        for f in range(len(fr["func"]))
        if s[fr["func"][f]] == "grow" and fr["line"][f] == line_of("new", "GROW")
    ]
    assert len(grow) == 1
    assert fr["base_line"][grow[0]] == line_of("base", "GROW")
    assert s[fr["src"][grow[0]]] == "block.malloc(3145728)  # GROW"
    assert [r["function"] for r in data["rows"]][0] == "grow"
    # Self-contained, and program strings escaped.
    assert HOSTILE not in html
    assert "<b>hostile</b>" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert 'role="alert"' not in html
    # Leaks of pymalloc captures made without --trace-python-allocators: warned.
    leaks = html_report(caps, tmp_path / "leaks.html", "--leaks")
    assert 'role="alert"' in leaks
    assert embedded(leaks)["totals"]["delta_bytes"] == 2097152 - 200000


def test_html_default_output_path(caps: Captures, tmp_path: Path) -> None:
    new = tmp_path / "memray-prog.bin"
    shutil.copy(caps["new"], new)
    proc = memray_cli("diff", "--html", caps["base"], str(new))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "memray-diff-prog.html"
    assert proc.stdout == f"Wrote {out}\n"
    assert out.exists()


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_html_in_browser(caps: Captures, tmp_path: Path) -> None:
    from test_html_reports import ARTIFACTS, Browser

    page = tmp_path / "diff.html"
    html_report(caps, page, "--fail-over", "1MiB", code=1)  # written, then failed
    totals = embedded(page.read_text(encoding="utf-8"))["totals"]
    assert CHROMIUM is not None
    browser = Browser(CHROMIUM)
    try:
        browser.open(page)
        assert browser.problems() == []
        state = browser.dataset()
        assert int(state["rendered"]) >= 4
        assert int(state["totalBase"]) == totals["base_bytes"]
        assert int(state["totalNew"]) == totals["new_bytes"]
        assert int(state["rows"]) >= 3
        assert browser.canvas_ink("#flame") > 1000
        assert "More than --fail-over 1.00 MiB" in browser.evaluate("document.body.innerText")
        browser.screenshot(ARTIFACTS / "diff.png")

        # Growth and shrinkage are painted apart.
        deltas = browser.evaluate(
            """(() => {
              const v = memrayDiff.view();
              const out = {};
              for (let n = 1; n < v.parent.length; n++) {
                const name = memrayDiff.label(n).split(" ")[0];
                out[name] = v.news[n] - v.base[n];
              }
              return out;
            })()"""
        )
        assert deltas["grow"] == 2097152
        assert deltas["shrink"] == -200000
        before = browser.canvas_hash("#flame")
        browser.evaluate("memrayDiff.setWidth('max')")
        assert browser.canvas_hash("#flame") != before

        # Search, then a real click zooms into grow().
        browser.type_text("#search", "grow")
        browser.wait_for("document.body.dataset.matches === '1'")
        assert browser.dataset()["matchedDelta"] == "2097152"
        spot = browser.evaluate("memrayDiff.locate('grow')")
        assert spot is not None
        browser.click(spot["clientX"], spot["clientY"])
        browser.wait_for("document.body.dataset.zoom.startsWith('grow')")
        assert browser.dataset()["zoomDelta"] == "2097152"
        spot = browser.evaluate("memrayDiff.locate('grow')")
        browser.call(
            "Input.dispatchMouseEvent",
            session=True,
            type="mouseMoved",
            x=spot["clientX"],
            y=spot["clientY"],
        )
        tip = browser.evaluate("document.getElementById('tooltip').innerText")
        assert "block.malloc(3145728)" in tip
        assert "+2.00 MiB" in tip
        assert f"(BASE line {line_of('base', 'GROW')})" in tip
        assert browser.problems() == []
        # Last, as reading pixels back makes Chromium warn about speed.
        # The grown frame is painted red, the shrunken one blue.
        red_blue = browser.evaluate(
            """(() => {
              memrayDiff.zoomTo(0);
              memrayDiff.search('');
              const ctx = document.getElementById('flame').getContext('2d');
              const dpr = window.devicePixelRatio || 1;
              // One pixel near the top edge of the frame, above its label.
              const pick = (name) => {
                const s = memrayDiff.locate(name);
                const r = document.getElementById('flame').getBoundingClientRect();
                const x = Math.round((s.clientX - r.left) * dpr);
                const y = Math.round((s.clientY - r.top - 8) * dpr);
                const d = ctx.getImageData(x, y, 1, 1).data;
                return [d[0], d[1], d[2]];
              };
              return [pick('grow'), pick('shrink')];
            })()"""
        )
        (gr, gg, gb), (sr, sg, sb) = red_blue
        assert gr > gb and gr > gg, red_blue
        assert sb > sr, red_blue

    finally:
        browser.close()


# --- the worked example of docs/regressions.rst ------------------------------------------


def doc_blocks() -> list[tuple[str, str]]:
    """(language, text) of every code block of the page."""
    from rst_blocks import code_blocks

    return [(b.lang, b.text) for b in code_blocks(DOC)]


def expected_line(line: str) -> re.Pattern[str]:
    """A line of shown output as a pattern: "..." is any text, a run of
    blanks any run of blanks, a rule of dashes any rule of dashes (column
    widths depend on the directory the example runs in)."""
    if line and set(line) <= {"-", " "}:
        return re.compile(r"[- ]+")
    parts = [re.escape(part) for part in re.split(r"\s+", line.strip())]
    return re.compile(r"\s*" + r"\s+".join(parts).replace(re.escape("..."), ".*") + r"\s*")


def test_docs_worked_example(tmp_path: Path) -> None:
    blocks = doc_blocks()
    files = [text for info, text in blocks if info == "python" and text.startswith("# ")]
    assert len(files) == 2
    for text in files:
        name = text.splitlines()[0][2:].strip()
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    consoles = [text for info, text in blocks if info == "console"]
    assert len(consoles) == 1
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `memray` and `python` as the page uses them: this interpreter's.
    for name, command in (
        ("memray", f"{shlex.quote(sys.executable)} -m memray"),
        ("python", shlex.quote(sys.executable)),
    ):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", COLUMNS="200")
    commands: list[tuple[str, list[str]]] = []
    for line in consoles[0].splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            commands[-1][1].append(line)
    last_code = 0
    ran = []
    for command, shown in commands:
        if command == "echo $?":
            assert shown == [str(last_code)], ran
            continue
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        last_code = proc.returncode
        ran.append(command)
        output = proc.stdout.splitlines()
        assert len(output) == len(shown), (command, proc.stdout)
        for want, got in zip(shown, output):
            assert expected_line(want).fullmatch(got), (command, want, got)
    assert (tmp_path / "diff.html").exists()
    assert {"memray run -q -o base.bin base/app.py", "memray diff base.bin new.bin"} <= set(ran)
