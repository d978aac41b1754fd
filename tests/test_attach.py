"""memray attach / detach: tracking a running process through gdb."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import TIMEOUT

from memray import FileReader

TARGET = """
import ctypes, os, sys, time
lib = ctypes.CDLL(os.environ["TESTALLOC"])
lib.ta_malloc.restype = ctypes.c_void_p
print("ready", flush=True)
keep = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    keep.append(lib.ta_malloc(424242))  # TARGET_LINE
    time.sleep(0.02)
"""


def memray_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memray", *args], capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.fixture
def target(tmp_path: Path, testalloc: Path):
    script = tmp_path / "target.py"
    script.write_text(textwrap.dedent(TARGET))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=dict(os.environ, TESTALLOC=str(testalloc)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc, script
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)


def test_attach_then_detach_records_the_running_program(tmp_path: Path, target) -> None:
    proc, script = target
    out = tmp_path / "attached.bin"
    attached = memray_cli("attach", str(proc.pid), "-o", str(out))
    assert attached.returncode == 0, attached.stderr
    assert f"Tracking process {proc.pid}" in attached.stdout
    again = memray_cli("attach", str(proc.pid), "-o", str(tmp_path / "second.bin"))
    assert again.returncode == 1
    assert "already attached" in again.stderr and len(again.stderr.splitlines()) == 1
    time.sleep(0.5)
    detached = memray_cli("detach", str(proc.pid))
    assert detached.returncode == 0, detached.stderr
    assert proc.poll() is None  # the program runs on
    with FileReader(out) as reader:
        assert reader.metadata.pid == proc.pid
        recs = [r for r in reader.get_leaked_allocation_records() if r.size % 424242 == 0]
    line = next(
        i for i, t in enumerate(textwrap.dedent(TARGET).splitlines(), 1) if "TARGET_LINE" in t
    )
    assert len(recs) == 1
    assert recs[0].n_allocations >= 2
    assert recs[0].size == 424242 * recs[0].n_allocations
    assert recs[0].stack_trace() == [("<module>", str(script), line)]
    second = memray_cli("detach", str(proc.pid))
    assert second.returncode == 1
    assert "not attached" in second.stderr and len(second.stderr.splitlines()) == 1


def test_attach_with_duration_stops_by_itself(tmp_path: Path, target) -> None:
    proc, _ = target
    out = tmp_path / "timed.bin"
    attached = memray_cli("attach", str(proc.pid), "-o", str(out), "--duration", "1")
    assert attached.returncode == 0, attached.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if memray_cli("detach", str(proc.pid)).returncode == 1:
            break  # "not attached": the timer already stopped it
        time.sleep(0.5)
    with FileReader(out) as reader:
        assert any(r.size % 424242 == 0 for r in reader.get_leaked_allocation_records())


def test_attach_errors_are_one_line(tmp_path: Path) -> None:
    missing = memray_cli("attach", "999999999", "-o", str(tmp_path / "x.bin"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == "memray: error: no process with pid 999999999"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        not_python = memray_cli("attach", str(sleeper.pid), "-o", str(tmp_path / "y.bin"))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not_python.returncode == 1
    assert len(not_python.stderr.splitlines()) == 1
    assert "could not run code in process" in not_python.stderr
