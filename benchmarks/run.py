"""Benchmarks of our memray against the reference memray from PyPI.

Parts (``--parts``, all by default, in this order):

* ``overhead``: for every workload x mode it runs, in separate processes
  (``driver.py``), the workload untracked with each tool's own interpreter (the
  baseline) and under ``memray.Tracker`` with our package (``.venv``) and with
  the reference memray (``benchmarks/.ref-venv``, created on first use), and
  reports the median wall time of the tracked region relative to the baseline,
  the capture size on disk and the child's peak RSS;
* ``native``: the same, ``native_traces=True``, for the allocation loop, the
  recursion and a numpy workload (rows in the same table);
* ``reports``: time and peak RSS of ``flamegraph``, ``table``, ``summary``,
  ``stats`` and ``transform csv`` on a capture of >= 10M allocations made by
  each tool (``bench_reports.py``);
* ``native-reports``: the same for a flame graph of ``--native`` captures.

Text tables are printed and everything, including every single run, is
written to ``benchmarks/results/latest-3.X.json``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_common import (
    BENCH_DIR,
    DRIVER,
    PY_VERSION,
    RATIO_MIN_BASELINE_S,
    REF_VENV,
    REPO,
    RESULTS_DIR,
    SCALE_ENV,
    SETUP_TIMEOUT_S,
    WORKLOAD_DIR,
    Footnotes,
    Tool,
    check_python,
    child_env,
    describe_status,
    fmt_bytes,
    fmt_rss,
    fmt_seconds,
    format_table,
    last_line,
    log,
    pip_install,
    relative_spread,
    wait_with_rusage,
)
from bench_reports import (
    NATIVE_REPORT_SECTION,
    REPORT_SECTION,
    REPORTS,
    render_section,
    run_section,
)

# Workloads of the overhead part, in this order (each is workloads/<name>.py with main()).
WORKLOADS: list[str] = ["alloc_loop", "deep_stack", "recursion", "big_buffers", "threads", "empty"]
# Workloads of the native part (native_traces=True rows).
NATIVE_WORKLOADS: list[str] = ["alloc_loop", "recursion", "numpy_work"]
# Workloads that import numpy: numpy is installed into a venv that lacks it.
NEEDS_NUMPY: set[str] = {"big_buffers", "numpy_work"}
# Tracker modes (keys of driver.MODES). "none" is the untracked baseline.
UNTRACKED = "none"
ALL_MODES: list[str] = ["default", "pyalloc", "native", "sampled"]
DEFAULT_MODES: list[str] = ["default", "pyalloc", "sampled"]
# Modes only our tracker has: the reference's cells say so instead of failing.
OURS_ONLY_MODES: dict[str, str] = {"sampled": "memray 1.x cannot sample"}
NATIVE_MODES: list[str] = ["native"]  # the native part; --native adds them to the overhead part
# Tools compared, in column order.
TOOLS: list[str] = ["ours", "ref"]
# Parts of a run, in the order they run.
PARTS: list[str] = ["overhead", "native", "reports", "native-reports"]

QUICK_SCALE = 0.25
DEFAULT_REPEAT = 3
DEFAULT_TIMEOUT_S = 300.0


@dataclass
class Run:
    """One child process: one workload in one mode with one tool."""

    wall_s: float | None = None  # tracked region, measured by the driver
    process_s: float | None = None  # whole child process, measured here
    maxrss_kib: int | None = None  # peak RSS of the child (VmHWM, reported by the driver)
    wait4_maxrss_kib: int | None = None  # ru_maxrss from wait4: includes our RSS at fork
    capture_bytes: int | None = None  # all files the run wrote, summed
    capture_files: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Cell:
    """All runs of one (tool, workload, mode) and their summary."""

    tool: str
    workload: str
    mode: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None  # first failure; later repeats are skipped

    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.error is None and r.wall_s is not None]

    @property
    def median_s(self) -> float | None:
        runs = self.ok_runs()
        return statistics.median(r.wall_s for r in runs if r.wall_s is not None) if runs else None

    @property
    def peak_rss_kib(self) -> int | None:
        values = [r.maxrss_kib for r in self.ok_runs() if r.maxrss_kib is not None]
        return int(statistics.median(values)) if values else None

    @property
    def capture_bytes(self) -> int | None:
        values = [r.capture_bytes for r in self.ok_runs() if r.capture_bytes is not None]
        return int(statistics.median(values)) if values else None

    def summary(self, baseline: Cell | None) -> dict[str, Any]:
        median = self.median_s
        base = baseline.median_s if baseline is not None else None
        ratio = median / base if median is not None and base else None
        overhead = median - base if median is not None and base is not None else None
        return {
            "tool": self.tool,
            "workload": self.workload,
            "mode": self.mode,
            "error": self.error,
            "median_s": median,
            "ratio": ratio,
            "overhead_s": overhead,
            "capture_bytes": self.capture_bytes,
            "peak_rss_kib": self.peak_rss_kib,
            "runs": [asdict(r) for r in self.runs],
        }


# --------------------------------------------------------------------------- processes


def run_child(
    python: Path, workload: str, mode: str, workdir: Path, scale: float, timeout: float
) -> Run:
    """Run the driver once in a fresh directory and measure it."""
    rundir = Path(tempfile.mkdtemp(prefix=f"{workload}-{mode}-", dir=workdir))
    outfile = rundir / "capture.bin"
    run = Run()
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    [str(python), str(DRIVER), workload, str(outfile), mode],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=BENCH_DIR,
                    env=child_env(scale),
                    start_new_session=True,
                )
            except OSError as exc:
                run.error = f"cannot start {python}: {exc}"
                return run
            status, usage, timed_out = wait_with_rusage(proc, timeout)
            run.process_s = time.perf_counter() - start
            run.wait4_maxrss_kib = int(usage.ru_maxrss)  # KiB on Linux
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        if timed_out:
            run.error = f"timeout after {timeout:g}s"
        elif status != 0:
            detail = last_line(stderr) or last_line(stdout) or "no output"
            run.error = f"{describe_status(status)}: {detail}"
        else:
            try:
                result = json.loads(last_line(stdout))
                run.wall_s = float(result["wall_s"])
                run.maxrss_kib = result.get("peak_rss_kib") or run.wait4_maxrss_kib
            except (ValueError, KeyError, TypeError) as exc:
                run.error = f"bad driver output ({exc}): {last_line(stdout)[:200]}"
        files = {
            str(p.relative_to(rundir)): p.stat().st_size for p in rundir.rglob("*") if p.is_file()
        }
        run.capture_files = files
        if mode != UNTRACKED:
            run.capture_bytes = sum(files.values())
        return run
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def ensure_ref_venv() -> tuple[Path, str | None]:
    """Create benchmarks/.ref-venv with memray and numpy from PyPI if missing."""
    python = REF_VENV / "bin" / "python"
    ok, _ = check_python(python, "import memray")
    if ok:
        return python, None
    if not python.exists():
        log(f"creating {REF_VENV} ...")
        # The running interpreter's venv module: the new venv gets the same Python version.
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "venv", str(REF_VENV)],
                check=False,
                capture_output=True,
                text=True,
                timeout=SETUP_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return python, f"cannot create {REF_VENV}: {exc}"
        if proc.returncode != 0:
            return python, f"cannot create {REF_VENV}: {last_line(proc.stderr)}"
    ok, message = pip_install(python, "memray", "numpy")
    return python, None if ok else f"pip install memray numpy failed: {message}"


def prepare_tool(tool: Tool, need_numpy: bool) -> None:
    """Check that the tool's interpreter runs and has memray.Tracker (and numpy if needed)."""
    if tool.error is not None:
        return
    if need_numpy:
        ok, _ = check_python(tool.python, "import numpy")
        if not ok and tool.python.exists():
            ok, message = pip_install(tool.python, "numpy")
            if not ok:
                log(f"warning: numpy missing for {tool.name} and not installable: {message}")
    ok, message = check_python(
        tool.python,
        "import memray; memray.Tracker; print(getattr(memray, '__version__', 'unknown'))",
    )
    if ok:
        tool.memray_version = message
    else:
        tool.error = f"memray not usable: {message}"


# --------------------------------------------------------------------------- formatting


def slowdown(summary: dict[str, Any], notes: Footnotes, label: str) -> str:
    if summary["error"]:
        return notes.ref(f"{label}: {summary['error']}")
    base = summary["median_s"] - summary["overhead_s"] if summary["overhead_s"] is not None else 0
    if summary["ratio"] is None or base < RATIO_MIN_BASELINE_S:
        if summary["overhead_s"] is None:
            return "-"
        overhead = summary["overhead_s"]
        return ("+" if overhead >= 0 else "-") + fmt_seconds(abs(overhead))
    return f"{summary['ratio']:.2f}x"


def spread(summary: dict[str, Any] | None) -> float | None:
    """(max - min) / median of a cell's successful run times; None below 2 runs or 50 ms."""
    if summary is None:
        return None
    times = [r["wall_s"] for r in summary["runs"] if r["error"] is None and r["wall_s"]]
    return relative_spread(times)


def render_table(rows: list[dict[str, Any]], tools: list[str]) -> str:
    notes = Footnotes()
    header = ["workload", "mode", "untracked " + "|".join(tools)]
    header += [f"{t} x" for t in tools]
    header += [f"{t} capture" for t in tools]
    header += [f"{t} RSS" for t in tools]
    header += ["untracked RSS", "spread"]
    table: list[list[str]] = [header]
    for row in rows:
        base_cells = []
        for t in tools:
            base = row["untracked"].get(t)
            if base is None:
                base_cells.append("-")
            elif base["error"]:
                base_cells.append(notes.ref(f"{t} untracked: {base['error']}"))
            else:
                base_cells.append(fmt_seconds(base["median_s"]))
        cells = [row["workload"], row["mode"], "|".join(base_cells)]
        summaries = [row["tracked"][t] for t in tools]
        labels = list(tools)
        cells += [slowdown(s, notes, label) for s, label in zip(summaries, labels, strict=True)]
        cells += ["-" if s["error"] else fmt_bytes(s["capture_bytes"]) for s in summaries]
        cells += ["-" if s["error"] else fmt_rss(s["peak_rss_kib"]) for s in summaries]
        rss = [row["untracked"][t]["peak_rss_kib"] for t in tools if row["untracked"].get(t)]
        rss = [r for r in rss if r is not None]
        cells.append(fmt_rss(max(rss)) if rss else "-")
        spreads = [spread(row["untracked"].get(t)) for t in tools] + [spread(s) for s in summaries]
        known = [x for x in spreads if x is not None]
        cells.append(f"{max(known) * 100:.0f}%" if known else "-")
        table.append(cells)
    lines = format_table(table, 2)
    if notes.messages:
        lines.append("")
        lines.append("errors:")
        lines.extend(notes.lines())
    return "\n".join(lines)


# --------------------------------------------------------------------------- overhead


def run_overhead(
    plan: dict[str, list[str]],
    tools: dict[str, Tool],
    repeat: int,
    scale: float,
    timeout: float,
) -> list[dict[str, Any]]:
    """Run every workload of ``plan`` untracked and in each of its modes; return table rows."""
    tool_names = list(tools)
    cells: dict[tuple[str, str, str], Cell] = {}
    total = sum(len(tool_names) * (1 + len(modes)) * repeat for modes in plan.values())
    done = 0
    with tempfile.TemporaryDirectory(prefix="memray-bench-") as tmp:
        workdir = Path(tmp)
        for workload, modes in plan.items():
            configs = [(t, UNTRACKED) for t in tool_names]
            configs += [(t, m) for m in modes for t in tool_names]
            for rep in range(repeat):
                # Interleaved so that drift in machine speed hits every column alike.
                for tool_name, mode in configs:
                    done += 1
                    tool = tools[tool_name]
                    cell = cells.setdefault(
                        (tool_name, workload, mode), Cell(tool_name, workload, mode)
                    )
                    if mode != UNTRACKED and tool.error is not None:
                        cell.error = tool.error
                        continue
                    if tool_name != "ours" and mode in OURS_ONLY_MODES:
                        cell.error = OURS_ONLY_MODES[mode]
                        continue
                    if cell.error is not None:
                        continue  # failed before: do not pay for it again
                    run = run_child(tool.python, workload, mode, workdir, scale, timeout)
                    cell.runs.append(run)
                    if run.error is not None:
                        cell.error = run.error
                    result = run.error or fmt_seconds(run.wall_s)
                    log(
                        f"[{done}/{total}] {workload:<12} {mode:<8} {tool_name:<4} "
                        f"rep {rep + 1}: {result}"
                    )

    rows: list[dict[str, Any]] = []
    for workload, modes in plan.items():
        untracked = {t: cells[(t, workload, UNTRACKED)].summary(None) for t in tool_names}
        for mode in modes:
            tracked = {
                t: cells[(t, workload, mode)].summary(cells[(t, workload, UNTRACKED)])
                for t in tool_names
            }
            rows.append(
                {"workload": workload, "mode": mode, "untracked": untracked, "tracked": tracked}
            )
    return rows


# --------------------------------------------------------------------------- main


def parse_list(value: str | None, allowed: list[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if allowed is not None:
        unknown = [v for v in items if v not in allowed]
        if unknown:
            raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(allowed)})")
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", help=f"comma list of {','.join(PARTS)} (default all, in that order)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="runs per cell (default 3)")
    parser.add_argument(
        "--workloads", help=f"overhead part: comma list (default {','.join(WORKLOADS)})"
    )
    parser.add_argument(
        "--modes",
        help=f"overhead part: comma list of {','.join(ALL_MODES)} "
        f"(default {','.join(DEFAULT_MODES)})",
    )
    parser.add_argument(
        "--native", action="store_true", help="overhead part: also native_traces=True rows"
    )
    parser.add_argument(
        "--native-workloads",
        help=f"native part: comma list (default {','.join(NATIVE_WORKLOADS)})",
    )
    parser.add_argument(
        "--reports",
        help=f"reports parts: comma list of {','.join(r.key for r in REPORTS)} (default all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"repeat 1, workloads and report captures scaled by {QUICK_SCALE}",
    )
    parser.add_argument("--scale", type=float, help=f"workload size factor (sets {SCALE_ENV})")
    parser.add_argument(
        "--report-scale",
        type=float,
        help="size factor of the report captures (default 1: >= 10M allocations)",
    )
    parser.add_argument(
        "--keep-captures",
        action="store_true",
        help="reports parts: keep the capture directory (printed) instead of removing it",
    )
    parser.add_argument("--tools", help="comma list of ours,ref (default both)")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per-run timeout in seconds"
    )
    parser.add_argument(
        "--ours-python",
        type=Path,
        help="interpreter with our memray (default .venv-3.X/bin/python for this 3.X, else this one)",
    )
    parser.add_argument(
        "--ref-python",
        type=Path,
        help="interpreter with the reference memray (default benchmarks/.ref-venv-3.X, created)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / f"latest-{PY_VERSION}.json",
        help="JSON results file",
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else DEFAULT_REPEAT
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    if args.report_scale is None:
        args.report_scale = QUICK_SCALE if args.quick else 1.0
    if args.scale <= 0 or args.report_scale <= 0:
        parser.error("--scale and --report-scale must be > 0")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the child clean-up


def make_tools(
    args: argparse.Namespace, tool_names: list[str], need_numpy: bool
) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for name in tool_names:
        if name == "ours":
            # The venv `make` builds for this interpreter's version, else this
            # interpreter: never another version's venv.
            default = REPO / f".venv-{PY_VERSION}" / "bin" / "python"
            python = args.ours_python or (default if default.exists() else Path(sys.executable))
            tools[name] = Tool(name, python)
        else:
            if args.ref_python is not None:
                tools[name] = Tool(name, args.ref_python)
            else:
                python, error = ensure_ref_venv()
                tools[name] = Tool(name, python, error=error)
        prepare_tool(tools[name], need_numpy)
        t = tools[name]
        status = f"memray {t.memray_version}" if t.error is None else f"UNUSABLE: {t.error}"
        log(f"{name}: {t.python} ({status})")
    return tools


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    parts = parse_list(args.parts, PARTS, "part") or list(PARTS)
    available = sorted(p.stem for p in WORKLOAD_DIR.glob("*.py") if p.stem != "__init__")
    workloads = parse_list(args.workloads, available, "workload") or WORKLOADS
    native_workloads = parse_list(args.native_workloads, available, "workload") or NATIVE_WORKLOADS
    modes = parse_list(args.modes, ALL_MODES, "mode") or list(DEFAULT_MODES)
    if args.native:
        modes += [m for m in NATIVE_MODES if m not in modes]
    report_keys = parse_list(args.reports, [r.key for r in REPORTS], "report") or [
        r.key for r in REPORTS
    ]
    tool_names = parse_list(args.tools, TOOLS, "tool") or TOOLS

    # workload -> tracked modes of the overhead and native parts (one table, shared baselines).
    plan: dict[str, list[str]] = {}
    if "overhead" in parts:
        for workload in workloads:
            plan.setdefault(workload, []).extend(modes)
    if "native" in parts:
        for workload in native_workloads:
            wanted = plan.setdefault(workload, [])
            wanted.extend(m for m in NATIVE_MODES if m not in wanted)
    section_workloads = [
        c.workload
        for name, section in (
            ("reports", REPORT_SECTION),
            ("native-reports", NATIVE_REPORT_SECTION),
        )
        if name in parts
        for c in section.captures
    ]
    need_numpy = any(w in NEEDS_NUMPY for w in [*plan, *section_workloads])

    started = time.monotonic()
    tools = make_tools(args, tool_names, need_numpy)
    report: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "runner_python": sys.version.split()[0],
        },
        "settings": {
            "parts": parts,
            "repeat": args.repeat,
            "scale": args.scale,
            "report_scale": args.report_scale,
            "timeout_s": args.timeout,
            "workloads": workloads,
            "native_workloads": native_workloads,
            "modes": modes,
            "reports": report_keys,
            "ratio_min_baseline_s": RATIO_MIN_BASELINE_S,
        },
        "tools": {
            name: {"python": str(t.python), "memray_version": t.memray_version, "error": t.error}
            for name, t in tools.items()
        },
        "rows": [],
    }

    def save() -> None:
        report["elapsed_s"] = time.monotonic() - started
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")

    outputs: list[str] = []
    if plan:
        part_started = time.monotonic()
        report["rows"] = run_overhead(plan, tools, args.repeat, args.scale, args.timeout)
        save()
        text = "== Tracking overhead" + (" (with --native rows)" if "native" in parts else "")
        text += "\n\n" + render_table(report["rows"], tool_names)
        text += (
            f"\n\nrepeat={args.repeat} scale={args.scale:g}; ratio = median tracked / median "
            f"untracked (same interpreter); '+t' = absolute overhead where the untracked run "
            f"takes < {fmt_seconds(RATIO_MIN_BASELINE_S)}; spread = largest (max - min) / "
            f"median of the run times behind the row; "
            f"{time.monotonic() - part_started:.0f}s"
        )
        print(text + "\n", flush=True)
        outputs.append(text)
    for name, section in (("reports", REPORT_SECTION), ("native-reports", NATIVE_REPORT_SECTION)):
        if name not in parts:
            continue
        if not any(k in report_keys for k in section.reports):
            log(f"{name}: none of its reports ({', '.join(section.reports)}) selected; skipped")
            continue
        result = run_section(
            section,
            tools,
            report_keys,
            args.repeat,
            args.report_scale,
            args.timeout,
            args.keep_captures,
        )
        report[section.name] = result
        save()
        text = render_section(result, tool_names)
        print(text + "\n", flush=True)
        outputs.append(text)

    save()
    if len(outputs) > 1:
        # All tables again, together, at the end of the (long) log.
        print("\n\n".join(["=" * 40 + " all results", *outputs]))
    print(f"\ntotal {time.monotonic() - started:.0f}s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
