"""memray attach / detach: tracking a running process through a debugger.

Every test that injects runs once per method (gdb, lldb, auto). A method is
probed first by running one line of Python in a fresh interpreter; a method
that cannot do that on this machine (gdb cannot on some CPUs) is skipped with
the debugger's own reason, and auto is skipped only when no method works."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import TIMEOUT

from memray import AllocatorType, FileReader
from memray.commands.attach import METHODS, inject
from memray.commands.common import CommandError

_PROBE = """
with open(__STATUS__, "w") as status:
    status.write("ok")
"""
_probed: dict[str, str | None] = {}


def _why_not(method: str) -> str | None:
    """None when method can run code in a Python process here, else why not."""
    if method not in _probed:
        sleeper = subprocess.Popen(
            [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sleeper.stdout.readline().strip() == "ready"
            outcome = inject(sleeper.pid, _PROBE, method)
            _probed[method] = None if outcome == "ok" else outcome
        except CommandError as error:
            _probed[method] = str(error)
        finally:
            sleeper.kill()
            sleeper.wait(timeout=TIMEOUT)
    return _probed[method]


@pytest.fixture(params=[*METHODS, "auto"])
def method(request: pytest.FixtureRequest) -> str:
    if request.param == "auto":
        reasons = [_why_not(m) for m in METHODS]
        if all(reasons):
            pytest.skip("no debugger can run code in a process here: " + "; ".join(reasons))
    else:
        why = _why_not(request.param)
        if why:
            pytest.skip(f"{request.param} cannot run code in a process here: {why}")
    return request.param


TARGET = """
import ctypes, os, sys, time
lib = ctypes.CDLL(os.environ["TESTALLOC"])
lib.ta_malloc.restype = ctypes.c_void_p
print("ready", flush=True)
keep = []
# Names the injected code uses: attach and detach must leave them alone.
tracker = status_path = outcome = base64 = "the program's"
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    keep.append(lib.ta_malloc(424242))  # TARGET_LINE
    time.sleep(0.02)
    assert tracker == status_path == outcome == base64 == "the program's"
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


def target_blocks_leaked(out: Path, script: Path) -> int:
    """How many 424242-byte blocks TARGET_LINE allocated in the capture; all
    of them leak, at that line and only there."""
    line = next(
        i for i, t in enumerate(textwrap.dedent(TARGET).splitlines(), 1) if "TARGET_LINE" in t
    )
    where = [("<module>", str(script), line)]
    with FileReader(out) as reader:
        allocs = [r for r in reader.get_allocation_records() if r.size == 424242]
        leaked = [
            r
            for r in reader.get_leaked_allocation_records()
            if r.stack_trace() == where and r.allocator == AllocatorType.MALLOC
        ]
    assert len(allocs) >= 1
    assert all(r.stack_trace() == where for r in allocs)
    # The line's malloc leaks: every block (and the list's item array, when
    # the list grew through malloc meanwhile: the same line).
    assert len(leaked) == 1
    assert leaked[0].size - 424242 * len(allocs) in range(0, 424242)
    return len(allocs)


def test_attach_then_detach_records_the_running_program(
    tmp_path: Path, target, method: str
) -> None:
    proc, script = target
    out = tmp_path / "attached.bin"
    attached = memray_cli("attach", str(proc.pid), "-o", str(out), "--method", method)
    assert attached.returncode == 0, attached.stderr
    assert f"Tracking process {proc.pid}" in attached.stdout
    again = memray_cli(
        "attach", str(proc.pid), "-o", str(tmp_path / "second.bin"), "--method", method
    )
    assert again.returncode == 1
    assert "already attached" in again.stderr and len(again.stderr.splitlines()) == 1
    time.sleep(0.5)
    detached = memray_cli("detach", str(proc.pid), "--method", method)
    assert detached.returncode == 0, detached.stderr
    assert proc.poll() is None  # the program runs on
    with FileReader(out) as reader:
        assert reader.metadata.pid == proc.pid
    assert target_blocks_leaked(out, script) >= 2
    second = memray_cli("detach", str(proc.pid), "--method", method)
    assert second.returncode == 1
    assert "not attached" in second.stderr and len(second.stderr.splitlines()) == 1


def test_attach_with_duration_stops_by_itself(tmp_path: Path, target, method: str) -> None:
    proc, script = target
    out = tmp_path / "timed.bin"
    attached = memray_cli(
        "attach", str(proc.pid), "-o", str(out), "--duration", "1", "--method", method
    )
    assert attached.returncode == 0, attached.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if memray_cli("detach", str(proc.pid), "--method", method).returncode == 1:
            break  # "not attached": the timer already stopped it
        time.sleep(0.5)
    assert target_blocks_leaked(out, script) >= 1


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
    # Each debugger tried gives its own reason.
    for m in METHODS:
        assert f"{m}: " in not_python.stderr, not_python.stderr


def test_a_failing_debugger_gives_its_own_reason(tmp_path: Path, monkeypatch) -> None:
    """A debugger that cannot run the code: its words, not a guess."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for m in METHODS:
        (fake / m).write_text(
            '#!/bin/sh\necho "warning: something unrelated"\n'
            f'echo "Couldn\'t write extended state status ({m}): Bad address" >&2\nexit 1\n'
        )
        (fake / m).chmod(0o755)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "memray", "attach", str(sleeper.pid), "-o", str(tmp_path / "x")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}"),
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"memray: error: could not run code in process {sleeper.pid} ("
        "gdb: Couldn't write extended state status (gdb): Bad address; "
        "lldb: Couldn't write extended state status (lldb): Bad address)"
    )


def test_auto_falls_back_when_gdb_cannot_inject(tmp_path: Path, target) -> None:
    """As on CPUs where gdb 13 fails: auto goes on to lldb."""
    why = _why_not("lldb")
    if why:
        pytest.skip(f"lldb cannot run code in a process here: {why}")
    proc, script = target
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gdb").write_text(
        '#!/bin/sh\necho "Couldn\'t write extended state status: Bad address." >&2\nexit 1\n'
    )
    (fake / "gdb").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    out = tmp_path / "auto.bin"
    for command in (["attach", str(proc.pid), "-o", str(out)], ["detach", str(proc.pid)]):
        done = subprocess.run(
            [sys.executable, "-m", "memray", *command],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        time.sleep(0.3)
    assert target_blocks_leaked(out, script) >= 1


def _attach_payload(status: Path, output: Path) -> str:
    from memray.commands import attach

    source = attach._ATTACH.format(
        pkg_parent="/nonexistent",
        output=str(output),
        native=False,
        pyalloc=False,
        follow_fork=False,
        file_format="ALL_ALLOCATIONS",
        duration=0,
    )
    return source.replace("__STATUS__", repr(str(status)))


def test_injected_code_never_writes_through_a_planted_status(tmp_path: Path) -> None:
    """The code a debugger runs in the target creates its status file
    (O_EXCL, O_NOFOLLOW): a symlink planted there is not followed, a file
    planted there (say, with "ok" in it) makes it do nothing."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for planted in ("symlink", "file"):
        status = tmp_path / f"status-{planted}"
        if planted == "symlink":
            status.symlink_to(victim)
        else:
            status.write_text("ok")
        output = tmp_path / f"{planted}.bin"
        proc = subprocess.run(
            [sys.executable, "-c", _attach_payload(status, output)],
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        assert proc.returncode != 0 and "FileExistsError" in proc.stderr, proc.stderr
        assert not output.exists()  # no tracking started
    assert victim.read_text() == "precious"
    assert (tmp_path / "status-file").read_text() == "ok"


def test_attach_directory_is_private_and_checked(tmp_path: Path, monkeypatch) -> None:
    from memray.commands import attach
    from memray.commands.common import CommandError

    seen = []

    def fake_inject_with(method: str, pid: int, status: Path, code: str):
        seen.append(stat.S_IMODE(status.parent.stat().st_mode))
        status.write_text("ok")  # as the target would
        return None

    monkeypatch.setattr(attach, "_inject_with", fake_inject_with)
    assert attach.inject(os.getpid(), "pass", "gdb") == "ok"
    assert seen == [0o700]  # not world-writable: no one else can plant the status

    # Something already there before the code ran: refused, nothing run.
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "status").symlink_to(tmp_path / "elsewhere")

    class Planted:
        def __init__(self, **kwargs) -> None:
            pass

        def __enter__(self) -> str:
            return str(planted)

        def __exit__(self, *exc) -> None:
            pass

    monkeypatch.setattr(attach.tempfile, "TemporaryDirectory", Planted)
    seen.clear()
    with pytest.raises(CommandError, match="exists before the code ran"):
        attach.inject(os.getpid(), "pass", "gdb")
    assert seen == []
