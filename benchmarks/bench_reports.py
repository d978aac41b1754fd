"""Report benchmarks: time and peak memory of the reporters on big captures.

For each tool, one capture is made from the same workload script
(``driver.py WORKLOAD CAPTURE MODE``, i.e. ``memray.Tracker``) and kept in a
temporary directory; then every selected reporter is run on it
(``python -m memray REPORT ... CAPTURE``, each tool reading its own capture)
``repeat`` times, interleaved between the tools, and measured:

* wall time of the whole command (interpreter start-up included) with
  ``time.perf_counter`` around spawn and reap;
* peak RSS of the reporter process, from ``/usr/bin/time -f '%e %M'`` (GNU
  time), which measures its own child and so counts nothing of this process;
  without GNU time, ``ru_maxrss`` from ``wait4`` (which on Linux can include the
  runner's RSS at fork time; the JSON says which method was used);
* the size of the output (the ``-o`` file, or stdout for summary/stats).

Each capture is checked with its own tool's reader: ``FileReader(path).metadata``
and ``memray stats --json`` (``total_num_allocations``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_common import (
    BENCH_DIR,
    DRIVER,
    Footnotes,
    Tool,
    child_env,
    describe_status,
    fmt_bytes,
    fmt_count,
    fmt_ratio,
    fmt_rss,
    fmt_seconds,
    format_table,
    last_line,
    log,
    median_or_none,
    relative_spread,
    wait_with_rusage,
)

GNU_TIME = Path("/usr/bin/time")
OUT = "{out}"  # replaced by the output file in a report's arguments
# The size for the report capture: at least this many allocations (at scale 1).
MIN_REPORT_ALLOCATIONS = 10_000_000
# Free disk space wanted before making captures (two captures of ~10^7 allocations
# take about 200 MB; ours may be compressed).
MIN_FREE_DISK = 2 * 1024**3
# Allocation counts of the two tools' captures further apart than this are flagged.
COUNT_TOLERANCE = 0.01

METADATA_SCRIPT = """\
import json, sys, memray
reader = memray.FileReader(sys.argv[1])
m = reader.metadata
print(json.dumps({
    "total_allocations": m.total_allocations,
    "total_frames": m.total_frames,
    "peak_memory": m.peak_memory,
    "has_native_traces": m.has_native_traces,
    "trace_python_allocators": m.trace_python_allocators,
    "file_format": str(m.file_format),
}))
reader.close()
"""


@dataclass(frozen=True)
class ReportSpec:
    """One reporter command: ``python -m memray *argv CAPTURE``."""

    key: str  # name for --reports
    label: str  # name in the table
    argv: tuple[str, ...]  # OUT is replaced by the output file
    output: str | None  # file name of the output; None = stdout is the output


REPORTS: list[ReportSpec] = [
    ReportSpec("flamegraph", "flamegraph", ("flamegraph", "-f", "-o", OUT), "flamegraph.html"),
    ReportSpec("table", "table", ("table", "-f", "-o", OUT), "table.html"),
    ReportSpec("summary", "summary", ("summary",), None),
    ReportSpec("stats", "stats", ("stats",), None),
    ReportSpec("csv", "transform csv", ("transform", "csv", "-f", "-o", OUT), "transform.csv"),
]
REPORTS_BY_KEY: dict[str, ReportSpec] = {r.key: r for r in REPORTS}


@dataclass(frozen=True)
class CaptureSpec:
    """A capture made by ``driver.py WORKLOAD FILE MODE`` at ``scale`` x the report scale."""

    key: str
    workload: str
    mode: str
    scale: float = 1.0
    min_allocations: int = 0  # expected at report scale 1 (checked with `stats --json`)


@dataclass(frozen=True)
class Section:
    """A set of captures and the reports run on each, with the issue's targets."""

    name: str  # key in the JSON
    title: str
    captures: tuple[CaptureSpec, ...]
    reports: tuple[str, ...]  # ReportSpec keys
    # Targets checked in the table: "time" (at most half the reference's time),
    # "rss" (at most its peak RSS), "html" (flamegraph output at most its size).
    targets: tuple[str, ...]


REPORT_SECTION = Section(
    name="reports",
    title="Reports on a capture of >= 10M allocations (issue 4)",
    captures=(CaptureSpec("report_alloc", "report_alloc", "default", 1.0, MIN_REPORT_ALLOCATIONS),),
    reports=tuple(r.key for r in REPORTS),
    targets=("time", "rss", "html"),
)
NATIVE_REPORT_SECTION = Section(
    name="native_reports",
    title="Flame graph of --native captures, native symbolization (issue 5)",
    captures=(
        CaptureSpec("numpy_work/native", "numpy_work", "native", 1.0),
        # The report workload again: over 10M allocations, each with a native stack.
        CaptureSpec("report_alloc/native", "report_alloc", "native", 1.0, MIN_REPORT_ALLOCATIONS),
    ),
    reports=("flamegraph",),
    targets=("time",),
)


@dataclass
class Capture:
    """One tool's capture of one CaptureSpec, kept for the reports."""

    tool: str
    key: str
    workload: str
    mode: str
    scale: float
    path: str | None = None
    capture_s: float | None = None  # the tracked region, measured by the driver
    capture_bytes: int | None = None
    peak_rss_kib: int | None = None
    metadata: dict[str, Any] | None = None  # FileReader(path).metadata of the tool
    stats_allocations: int | None = None  # total_num_allocations of `stats --json`
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReportRun:
    wall_s: float | None = None  # whole command, interpreter start-up included
    time_wall_s: float | None = None  # %e of GNU time (0.01 s resolution)
    peak_rss_kib: int | None = None
    rss_method: str | None = None  # "gnu-time" or "wait4"
    output_bytes: int | None = None
    error: str | None = None
    stderr_tail: list[str] = field(default_factory=list)


@dataclass
class ReportCell:
    tool: str
    report: str
    capture: str
    command: list[str] = field(default_factory=list)
    runs: list[ReportRun] = field(default_factory=list)
    error: str | None = None

    def ok_runs(self) -> list[ReportRun]:
        return [r for r in self.runs if r.error is None and r.wall_s is not None]

    def summary(self) -> dict[str, Any]:
        runs = self.ok_runs()
        return {
            "tool": self.tool,
            "report": self.report,
            "capture": self.capture,
            "command": self.command,
            "error": self.error,
            "median_s": median_or_none([r.wall_s for r in runs]),
            "peak_rss_kib": median_or_none([r.peak_rss_kib for r in runs]),
            "output_bytes": median_or_none([r.output_bytes for r in runs]),
            "spread": relative_spread([r.wall_s for r in runs if r.wall_s is not None]),
            "runs": [asdict(r) for r in self.runs],
        }


# --------------------------------------------------------------------------- processes


def run_process(
    argv: list[str], cwd: Path, stdout_path: Path, scale: float, timeout: float
) -> tuple[ReportRun, str]:
    """Run ``argv`` (under GNU time if present) with stdout to a file; return run, stderr."""
    run = ReportRun()
    use_time = GNU_TIME.exists()
    with tempfile.NamedTemporaryFile(prefix="time-", suffix=".txt", delete=False) as tf:
        time_file = Path(tf.name)
    command = [str(GNU_TIME), "-o", str(time_file), "-f", "%e %M", *argv] if use_time else argv
    try:
        with stdout_path.open("wb") as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=cwd,
                    env=child_env(scale),
                    start_new_session=True,
                )
            except OSError as exc:
                run.error = f"cannot start {command[0]}: {exc}"
                return run, ""
            status, usage, timed_out = wait_with_rusage(proc, timeout)
            run.wall_s = time.perf_counter() - start
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        run.stderr_tail = [line for line in stderr.splitlines() if line.strip()][-8:]
        if timed_out:
            run.error = f"timeout after {timeout:g}s"
        elif status != 0:
            detail = last_line(stderr) or "no output on stderr"
            run.error = f"{describe_status(status)}: {detail}"
        if use_time:
            run.rss_method = "gnu-time"
            fields = last_line(time_file.read_text(errors="replace")).split()
            try:
                run.time_wall_s = float(fields[0])
                run.peak_rss_kib = int(fields[1])
            except (IndexError, ValueError):
                if run.error is None:
                    run.error = f"cannot parse GNU time output: {fields}"
        else:
            run.rss_method = "wait4"
            run.peak_rss_kib = int(usage.ru_maxrss)
        if run.error is not None:
            run.wall_s = None
        return run, stderr
    finally:
        time_file.unlink(missing_ok=True)


def make_capture(
    tool: Tool, spec: CaptureSpec, capdir: Path, report_scale: float, timeout: float
) -> Capture:
    """Run the workload under the tool's Tracker, keep the file and check it with its reader."""
    scale = spec.scale * report_scale
    cap = Capture(tool.name, spec.key, spec.workload, spec.mode, scale)
    rundir = capdir / f"{tool.name}-{spec.key.replace('/', '-')}"
    rundir.mkdir(parents=True, exist_ok=True)
    outfile = rundir / "capture.bin"
    argv = [str(tool.python), str(DRIVER), spec.workload, str(outfile), spec.mode]
    log(f"capture {spec.key} with {tool.name} (scale {scale:g}) ...")
    run, _ = run_process(argv, BENCH_DIR, rundir / "driver-stdout.txt", scale, timeout)
    stdout = (rundir / "driver-stdout.txt").read_text(errors="replace")
    (rundir / "driver-stdout.txt").unlink()
    if run.error is not None:
        cap.error = f"capture failed: {run.error}"
        return cap
    try:
        result = json.loads(last_line(stdout))
        cap.capture_s = float(result["wall_s"])
        cap.peak_rss_kib = result.get("peak_rss_kib")
    except (ValueError, KeyError, TypeError) as exc:
        cap.error = f"bad driver output ({exc}): {last_line(stdout)[:200]}"
        return cap
    files = [p for p in rundir.iterdir() if p.is_file()]
    # The tracker may have compressed or renamed the file on exit.
    path = outfile if outfile.exists() else (files[0] if len(files) == 1 else None)
    if path is None:
        cap.error = f"capture file not found; files: {[p.name for p in files]}"
        return cap
    cap.path = str(path)
    cap.capture_bytes = sum(p.stat().st_size for p in files)
    check_capture(tool, cap, spec, report_scale, timeout)
    return cap


def check_capture(
    tool: Tool, cap: Capture, spec: CaptureSpec, report_scale: float, timeout: float
) -> None:
    """Read the capture's metadata and its allocation count (`stats --json`) with its tool."""
    assert cap.path is not None
    path = Path(cap.path)
    try:
        proc = subprocess.run(
            [str(tool.python), "-c", METADATA_SCRIPT, str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=BENCH_DIR,
            env=child_env(1.0),
        )
        if proc.returncode == 0:
            cap.metadata = json.loads(last_line(proc.stdout))
        else:
            cap.warnings.append(f"FileReader failed: {last_line(proc.stderr)}")
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        cap.warnings.append(f"FileReader failed: {exc}")
    stats_json = path.parent / "stats-check.json"
    argv = [str(tool.python), "-m", "memray", "stats", "--json", "-f", "-o", str(stats_json)]
    run, _ = run_process(
        [*argv, str(path)], path.parent, path.parent / "stats-check.txt", 1.0, timeout
    )
    if run.error is not None:
        cap.warnings.append(f"`memray stats --json` failed: {run.error}")
    else:
        try:
            cap.stats_allocations = int(json.loads(stats_json.read_text())["total_num_allocations"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            cap.warnings.append(f"no total_num_allocations in `stats --json` output: {exc}")
    for name in ("stats-check.json", "stats-check.txt"):
        (path.parent / name).unlink(missing_ok=True)
    expected = int(spec.min_allocations * report_scale)
    if spec.min_allocations and cap.stats_allocations is not None:
        if cap.stats_allocations < expected:
            cap.warnings.append(
                f"only {cap.stats_allocations:,} allocations, expected >= {expected:,}"
            )


def report_command(tool: Tool, spec: ReportSpec, capture: Path, outdir: Path) -> list[str]:
    out = str(outdir / spec.output) if spec.output else ""
    args = [out if a == OUT else a for a in spec.argv]
    return [str(tool.python), "-m", "memray", *args, str(capture)]


def run_report(
    tool: Tool, spec: ReportSpec, capture: Path, workdir: Path, timeout: float
) -> tuple[ReportRun, list[str]]:
    outdir = Path(tempfile.mkdtemp(prefix=f"{tool.name}-{spec.key}-", dir=workdir))
    try:
        command = report_command(tool, spec, capture, outdir)
        stdout_path = outdir / "stdout.txt"
        run, _ = run_process(command, outdir, stdout_path, 1.0, timeout)
        output = outdir / spec.output if spec.output else stdout_path
        if output.exists():
            run.output_bytes = output.stat().st_size
        elif run.error is None:
            run.error = f"no output file {output.name}"
            run.wall_s = None
        return run, command
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


# --------------------------------------------------------------------------- section


def run_section(
    section: Section,
    tools: dict[str, Tool],
    report_keys: list[str],
    repeat: int,
    report_scale: float,
    timeout: float,
    keep_captures: bool,
) -> dict[str, Any]:
    """Make the section's captures, run its reports, return the JSON-ready results."""
    reports = [REPORTS_BY_KEY[k] for k in section.reports if k in report_keys]
    started = time.monotonic()
    captures: dict[tuple[str, str], Capture] = {}
    cells: dict[tuple[str, str, str], ReportCell] = {}
    capdir = Path(tempfile.mkdtemp(prefix=f"memray-bench-{section.name}-"))
    try:
        free = shutil.disk_usage(capdir).free
        if free < MIN_FREE_DISK:
            log(f"warning: only {fmt_bytes(free)} free in {capdir}; captures may not fit")
        for spec in section.captures:
            for tool in tools.values():
                if tool.error is not None:
                    captures[(tool.name, spec.key)] = Capture(
                        tool.name, spec.key, spec.workload, spec.mode, 0.0, error=tool.error
                    )
                    continue
                cap = make_capture(tool, spec, capdir, report_scale, timeout)
                captures[(tool.name, spec.key)] = cap
                status = cap.error or (
                    f"{fmt_seconds(cap.capture_s)}, {fmt_bytes(cap.capture_bytes)}, "
                    f"{fmt_count(cap.stats_allocations)} allocations"
                )
                log(f"  {tool.name} {spec.key}: {status}")
                for warning in cap.warnings:
                    log(f"  warning: {warning}")
            check_counts([captures[(t, spec.key)] for t in tools])
        total = len(section.captures) * len(reports) * len(tools) * repeat
        done = 0
        for rep in range(repeat):
            for spec in section.captures:
                for report in reports:
                    for tool in tools.values():
                        done += 1
                        cap = captures[(tool.name, spec.key)]
                        cell = cells.setdefault(
                            (tool.name, report.key, spec.key),
                            ReportCell(tool.name, report.label, spec.key),
                        )
                        if cap.error is not None:
                            cell.error = cap.error
                            continue
                        if cell.error is not None:
                            continue  # failed before: do not pay for it again
                        assert cap.path is not None
                        run, command = run_report(tool, report, Path(cap.path), capdir, timeout)
                        cell.command = command
                        cell.runs.append(run)
                        if run.error is not None:
                            cell.error = run.error
                        result = run.error or (
                            f"{fmt_seconds(run.wall_s)}, {fmt_rss(run.peak_rss_kib)}"
                        )
                        log(
                            f"[{done}/{total}] {report.label:<13} {spec.key:<20} "
                            f"{tool.name:<4} rep {rep + 1}: {result}"
                        )
    finally:
        if keep_captures:
            log(f"captures kept in {capdir}")
        else:
            shutil.rmtree(capdir, ignore_errors=True)
    rows = []
    for spec in section.captures:
        for report in reports:
            rows.append(
                {
                    "report": report.label,
                    "report_key": report.key,
                    "capture": spec.key,
                    "tools": {
                        t: cells[(t, report.key, spec.key)].summary()
                        for t in tools
                        if (t, report.key, spec.key) in cells
                    },
                }
            )
    return {
        "title": section.title,
        "targets": list(section.targets),
        "repeat": repeat,
        "report_scale": report_scale,
        "rss_method": "gnu-time" if GNU_TIME.exists() else "wait4",
        "captures": [asdict(c) for c in captures.values()],
        "rows": rows,
        "elapsed_s": time.monotonic() - started,
    }


def check_counts(caps: list[Capture]) -> None:
    """Warn when the tools' captures of the same workload differ in allocation count."""
    counts = [c.stats_allocations for c in caps if c.stats_allocations is not None]
    if len(counts) < 2 or max(counts) == 0:
        return
    if (max(counts) - min(counts)) / max(counts) > COUNT_TOLERANCE:
        message = "allocation counts differ between tools: " + ", ".join(
            f"{c.tool} {fmt_count(c.stats_allocations)}" for c in caps
        )
        for cap in caps:
            cap.warnings.append(message)
        log(f"  warning: {message}")


# --------------------------------------------------------------------------- tables


def target_cell(row: dict[str, Any], targets: tuple[str, ...] | list[str]) -> str:
    ours, ref = row["tools"].get("ours"), row["tools"].get("ref")
    if ours is None or ref is None or ours["error"] or ref["error"]:
        return "-"
    missed = []
    if "time" in targets and ours["median_s"] is not None and ref["median_s"]:
        if ours["median_s"] > 0.5 * ref["median_s"]:
            missed.append("time")
    if "rss" in targets and ours["peak_rss_kib"] is not None and ref["peak_rss_kib"]:
        if ours["peak_rss_kib"] > ref["peak_rss_kib"]:
            missed.append("rss")
    if "html" in targets and row["report_key"] == "flamegraph":
        if (ours["output_bytes"] or 0) > (ref["output_bytes"] or 0):
            missed.append("html")
    return "met" if not missed else "MISS " + ",".join(missed)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def render_captures(result: dict[str, Any]) -> list[str]:
    notes = Footnotes()
    header = [
        "capture",
        "tool",
        "scale",
        "capture time",
        "file size",
        "peak RSS",
        "metadata.total_allocations",
        "stats allocations",
    ]
    table = [header]
    warnings: list[str] = []
    for cap in result["captures"]:
        if cap["error"]:
            table.append([cap["key"], cap["tool"], "-", notes.ref(cap["error"]), *["-"] * 4])
            continue
        meta = cap["metadata"] or {}
        table.append(
            [
                cap["key"],
                cap["tool"],
                f"{cap['scale']:g}",
                fmt_seconds(cap["capture_s"]),
                fmt_bytes(cap["capture_bytes"]),
                fmt_rss(cap["peak_rss_kib"]),
                fmt_count(meta.get("total_allocations")),
                fmt_count(cap["stats_allocations"]),
            ]
        )
        warnings += [f"  {cap['tool']} {cap['key']}: {w}" for w in cap["warnings"]]
    lines = format_table(table, 2)
    lines.append(
        "(metadata.total_allocations: the reference counts every record, frees included; "
        "stats allocations: total_num_allocations of `memray stats --json`)"
    )
    if notes.messages:
        lines += ["", "errors:", *notes.lines()]
    if warnings:
        lines += ["", "warnings:", *dict.fromkeys(warnings)]
    return lines


def render_reports(result: dict[str, Any], tools: list[str]) -> list[str]:
    notes = Footnotes()
    both = "ours" in tools and "ref" in tools
    header = ["report", "capture"]
    header += [f"{t} time" for t in tools]
    header += ["ours/ref"] if both else []
    header += [f"{t} peak RSS" for t in tools]
    header += ["RSS ours/ref"] if both else []
    header += [f"{t} output" for t in tools]
    header += ["target", "spread"] if both else ["spread"]
    table = [header]
    for row in result["rows"]:
        summaries = [row["tools"].get(t) for t in tools]
        cells = [row["report"], row["capture"]]

        def cell(s: dict[str, Any] | None, tool: str, text: str) -> str:
            if s is None:
                return "-"
            if s["error"]:
                return notes.ref(f"{tool} {row['report']} ({row['capture']}): {s['error']}")
            return text

        cells += [
            cell(s, t, fmt_seconds(s["median_s"]) if s else "-")
            for s, t in zip(summaries, tools, strict=True)
        ]
        ok = all(s is not None and not s["error"] for s in summaries)
        by_tool = dict(zip(tools, summaries, strict=True))
        if both:
            cells.append(
                fmt_ratio(ratio(by_tool["ours"]["median_s"], by_tool["ref"]["median_s"]))
                if ok
                else "-"
            )
        cells += [
            cell(s, t, fmt_rss(s["peak_rss_kib"]) if s else "-")
            for s, t in zip(summaries, tools, strict=True)
        ]
        if both:
            cells.append(
                fmt_ratio(ratio(by_tool["ours"]["peak_rss_kib"], by_tool["ref"]["peak_rss_kib"]))
                if ok
                else "-"
            )
        cells += [
            cell(s, t, fmt_bytes(s["output_bytes"]) if s else "-")
            for s, t in zip(summaries, tools, strict=True)
        ]
        if both:
            cells.append(target_cell(row, result["targets"]))
        spreads = [s["spread"] for s in summaries if s is not None and s["spread"] is not None]
        cells.append(f"{max(spreads) * 100:.0f}%" if spreads else "-")
        table.append(cells)
    lines = format_table(table, 2)
    if notes.messages:
        lines += ["", "errors:", *notes.lines()]
    return lines


def render_section(result: dict[str, Any], tools: list[str]) -> str:
    targets = {
        "time": "time <= 0.5x reference",
        "rss": "peak RSS <= reference",
        "html": "flame graph HTML <= reference",
    }
    lines = [f"== {result['title']}", ""]
    lines += render_captures(result)
    lines.append("")
    lines += render_reports(result, tools)
    lines.append("")
    lines.append(
        f"repeat={result['repeat']}; time = median wall time of the whole command "
        f"(`python -m memray ...`, start-up included); peak RSS of the reporter process "
        f"({result['rss_method']}); output = -o file or stdout; targets: "
        + "; ".join(targets[t] for t in result["targets"])
        + f"; {result['elapsed_s']:.0f}s"
    )
    return "\n".join(lines)
