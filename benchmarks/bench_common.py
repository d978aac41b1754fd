"""Helpers shared by ``run.py`` (tracking overhead) and ``bench_reports.py`` (reports).

Child processes, the interpreters of the two tools, and text formatting.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DRIVER = BENCH_DIR / "driver.py"
WORKLOAD_DIR = BENCH_DIR / "workloads"
# The reference memray for the interpreter running the benchmarks: one venv
# per CPython version, so each version is compared with its own.
PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
REF_VENV = BENCH_DIR / f".ref-venv-{PY_VERSION}"
RESULTS_DIR = BENCH_DIR / "results"
SCALE_ENV = "MEMRAY_BENCH_SCALE"
SETUP_TIMEOUT_S = 900.0
# Below this median a time is too short for a ratio or a spread to mean anything.
RATIO_MIN_BASELINE_S = 0.05


@dataclass
class Tool:
    """One memray implementation and the interpreter that has it installed."""

    name: str
    python: Path
    memray_version: str | None = None
    error: str | None = None  # set when memray cannot be used with this interpreter


# --------------------------------------------------------------------------- processes


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def child_env(scale: float) -> dict[str, str]:
    env = dict(os.environ)
    # The interpreters must find their own memray, never one from the caller's path.
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    env[SCALE_ENV] = repr(scale)
    env["PYTHONHASHSEED"] = "0"
    return env


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def wait_with_rusage(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any, bool]:
    """Reap ``proc`` with wait4 (its own rusage), killing its group after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    timed_out = False
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
    except BaseException:
        # Interrupted (e.g. Ctrl-C): do not leave the child running.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        proc.returncode = -signal.SIGKILL
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen from waiting again
    return status, usage, timed_out


def check_python(python: Path, code: str, timeout: float = 120.0) -> tuple[bool, str]:
    """Run ``python -c code``; return (success, last output line)."""
    if not python.exists():
        return False, f"no interpreter at {python}"
    try:
        proc = subprocess.run(
            [str(python), "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=BENCH_DIR,
            env=child_env(1.0),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode != 0:
        return False, last_line(proc.stderr) or f"exit {proc.returncode}"
    return True, last_line(proc.stdout)


def pip_install(python: Path, *packages: str) -> tuple[bool, str]:
    log(f"installing {' '.join(packages)} into {python.parent.parent} ...")
    try:
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *packages],
            check=False,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode != 0:
        return False, last_line(proc.stderr) or f"pip exit {proc.returncode}"
    return True, ""


# --------------------------------------------------------------------------- statistics


def median_or_none(values: Sequence[float | int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def relative_spread(times: Sequence[float]) -> float | None:
    """(max - min) / median; None below 2 values or a 50 ms median."""
    if len(times) < 2 or statistics.median(times) < RATIO_MIN_BASELINE_S:
        return None
    return (max(times) - min(times)) / statistics.median(times)


# --------------------------------------------------------------------------- formatting


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1.0:
        return f"{value:.2f}s"
    if abs(value) >= 1e-3:
        return f"{value * 1e3:.1f}ms"
    return f"{value * 1e6:.0f}us"


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"  # pragma: no cover


def fmt_rss(kib: float | None) -> str:
    return "-" if kib is None else fmt_bytes(kib * 1024)


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


class Footnotes:
    """Numbers error messages so table cells stay short."""

    def __init__(self) -> None:
        self.messages: dict[str, int] = {}

    def ref(self, message: str) -> str:
        if message not in self.messages:
            self.messages[message] = len(self.messages) + 1
        return f"ERR[{self.messages[message]}]"

    def lines(self) -> list[str]:
        return [f"  [{n}] {message}" for message, n in self.messages.items()]


def format_table(table: list[list[str]], text_columns: int) -> list[str]:
    """Align ``table`` (first row = header): the first ``text_columns`` left, the rest right."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for i, row in enumerate(table):
        parts = [
            cell.ljust(width) if j < text_columns else cell.rjust(width)
            for j, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
