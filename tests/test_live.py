"""Live tracking: a program tracked to a SocketDestination on a free loopback
port, followed by memray.SocketReader while it runs (exact sizes, stacks,
threads, the end); the reader going away (the program carries on and exits
0); bad inputs (port in use, nothing listening, a foreign peer, a silent
peer, a stream cut mid-record); the `memray run --live*` and `memray live`
command lines (under a pseudo-terminal where a terminal UI runs); and the
live view itself, driven with textual's pilot from a fake snapshot source."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from capture_builder import MALLOC, CaptureBuilder
from conftest import TIMEOUT, line_of

import memray
from memray import AllocatorType, FileFormat, SocketDestination, SocketReader
from memray.reporters.live_tui import LiveApp, aggregate_locations

# Seconds to wait for something that normally takes milliseconds.
WAIT = 20.0

PRELUDE = """\
import ctypes, os, sys, threading, time
import memray
lib = ctypes.CDLL(os.environ["TESTALLOC"])
lib.ta_malloc.restype = ctypes.c_void_p
lib.ta_free.argtypes = [ctypes.c_void_p]


def wait_for_file(name):
    deadline = time.monotonic() + 60
    while not os.path.exists(name):
        if time.monotonic() > deadline:
            sys.exit("the test never created " + name)
        time.sleep(0.01)
"""


def program(code: str) -> str:
    return PRELUDE + textwrap.dedent(code)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def tracked_program(
    code: str, tmp_path: Path, testalloc: Path, port: int
) -> Iterator[subprocess.Popen[str]]:
    """Runs the program (prelude + code) with the port as argv[1]; kills it
    if the test fails before it ended."""
    script = tmp_path / "prog.py"
    script.write_text(program(code))
    env = dict(os.environ, TESTALLOC=str(testalloc))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)


@contextlib.contextmanager
def connect(port: int, proc: subprocess.Popen[str] | None = None) -> Iterator[SocketReader]:
    """A SocketReader entered on port, retrying while the program starts."""
    reader = connect_now(port, proc)
    try:
        yield reader
    finally:
        reader.__exit__(None, None, None)


def connect_now(port: int, proc: subprocess.Popen[str] | None = None) -> SocketReader:
    deadline = time.monotonic() + WAIT
    while True:
        reader = SocketReader(port)
        try:
            return reader.__enter__()
        except ConnectionRefusedError:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the program exited: {proc.communicate()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def by_size(records: Any, size: int) -> list[Any]:
    return [r for r in records if r.size == size]


# -- the API, end to end ------------------------------------------------------

FOLLOWED = """
port = int(sys.argv[1])


def alloc_here():
    return lib.ta_malloc(123457)  # ALLOC


def worker(ready):
    threading.current_thread().name = "worker-1"
    lib.ta_malloc(54321)  # WORKER (leaked on purpose)
    ready.set()


with memray.Tracker(destination=memray.SocketDestination(port)):
    kept = alloc_here()  # CALLER
    ready = threading.Event()
    t = threading.Thread(target=worker, args=(ready,), name="worker-1")
    t.start()
    ready.wait()
    t.join()
    wait_for_file("go")
    lib.ta_free(kept)
print("finished")
"""


def test_reader_follows_a_running_program_and_sees_it_end(tmp_path: Path, testalloc: Path) -> None:
    port = free_port()
    full = program(FOLLOWED)
    script = str(tmp_path / "prog.py")
    with tracked_program(FOLLOWED, tmp_path, testalloc, port) as proc:
        with connect(port, proc) as reader:
            assert reader.pid == proc.pid
            assert "prog.py" in reader.command_line and str(port) in reader.command_line
            assert reader.has_native_traces is False

            def both_alive() -> list[Any] | None:
                snap = list(reader.get_current_snapshot(merge_threads=False))
                if by_size(snap, 123457) and by_size(snap, 54321):
                    return snap
                return None

            snap = wait_until(both_alive, "both allocations in a snapshot")
            assert reader.is_active  # the program waits for "go"
            (main,) = by_size(snap, 123457)
            assert main.n_allocations == 1
            assert main.allocator == AllocatorType.MALLOC
            assert main.stack_trace() == [
                ("alloc_here", script, line_of(full, "# ALLOC")),
                ("<module>", script, line_of(full, "# CALLER")),
            ]
            assert main.stack_trace(max_stacks=1) == [
                ("alloc_here", script, line_of(full, "# ALLOC"))
            ]
            assert main.tid == proc.pid and main.thread_name == "MainThread"
            (work,) = by_size(snap, 54321)
            assert work.tid != main.tid and work.thread_name == "worker-1"
            assert work.stack_trace()[0] == ("worker", script, line_of(full, "# WORKER"))
            assert main.hybrid_stack_trace() == main.stack_trace()
            assert main.native_stack_trace() == []

            merged = list(reader.get_current_snapshot(merge_threads=True))
            assert {r.tid for r in merged} == {-1}
            (m,) = by_size(merged, 123457)
            assert m.thread_name == "merged thread" and m.stack_trace() == main.stack_trace()

            (tmp_path / "go").write_text("")
            wait_until(lambda: not reader.is_active, "the end of the stream")
            assert proc.wait(timeout=TIMEOUT) == 0
            after = list(reader.get_current_snapshot(merge_threads=True))
            assert by_size(after, 123457) == []  # freed before tracking stopped
            assert len(by_size(after, 54321)) == 1  # leaked
        # Records outlive the reader's connection.
        assert main.stack_trace()[0][0] == "alloc_here"
        assert proc.stdout is not None and proc.stdout.read() == "finished\n"


def test_reader_dropping_mid_run_leaves_the_program_running(
    tmp_path: Path, testalloc: Path
) -> None:
    code = """
    port = int(sys.argv[1])
    with memray.Tracker(destination=memray.SocketDestination(port)):
        kept = lib.ta_malloc(77777)
        wait_for_file("go")
        # The reader is gone: these are not recorded, and nothing hangs.
        for i in range(20000):
            lib.ta_free(lib.ta_malloc(1000 + i % 100))
        blocks = [bytearray(100_000) for _ in range(50)]
    print("finished", len(blocks))
    """
    port = free_port()
    with tracked_program(code, tmp_path, testalloc, port) as proc:
        reader = connect_now(port, proc)
        wait_until(
            lambda: by_size(reader.get_current_snapshot(merge_threads=True), 77777),
            "the first allocation",
        )
        reader.close()
        assert not reader.is_active
        (tmp_path / "go").write_text("")
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert out == "finished 50\n"
        assert "Traceback" not in err
        # What was read before closing stays readable.
        assert len(by_size(reader.get_current_snapshot(merge_threads=True), 77777)) == 1


def test_reader_killed_mid_run_leaves_the_program_running(tmp_path: Path, testalloc: Path) -> None:
    code = """
    port = int(sys.argv[1])
    with memray.Tracker(destination=memray.SocketDestination(port)):
        wait_for_file("go")
        for i in range(20000):
            lib.ta_free(lib.ta_malloc(1000))
    print("finished")
    """
    port = free_port()
    watcher = textwrap.dedent(
        f"""
        import time, memray
        while True:
            try:
                reader = memray.SocketReader({port}).__enter__()
                break
            except ConnectionRefusedError:
                time.sleep(0.02)
        print("connected", flush=True)
        time.sleep(600)
        """
    )
    with tracked_program(code, tmp_path, testalloc, port) as proc:
        other = subprocess.Popen([sys.executable, "-c", watcher], stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None and other.stdout.readline() == "connected\n"
            other.kill()  # SIGKILL: the connection is torn down by the kernel
            other.wait(timeout=TIMEOUT)
        finally:
            if other.poll() is None:
                other.kill()
            other.communicate(timeout=TIMEOUT)
        (tmp_path / "go").write_text("")
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert out == "finished\n"


def test_program_killed_ends_the_stream_without_error(tmp_path: Path, testalloc: Path) -> None:
    code = """
    port = int(sys.argv[1])
    with memray.Tracker(destination=memray.SocketDestination(port)):
        kept = lib.ta_malloc(31337)
        wait_for_file("never")
    """
    port = free_port()
    with tracked_program(code, tmp_path, testalloc, port) as proc, connect(port, proc) as reader:
        wait_until(
            lambda: by_size(reader.get_current_snapshot(merge_threads=True), 31337),
            "the allocation",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        wait_until(lambda: not reader.is_active, "the end of the stream")
        # Cut between records: the program died; what it held stays visible.
        assert len(by_size(reader.get_current_snapshot(merge_threads=True), 31337)) == 1


def test_forked_child_does_not_hold_the_stream_open(tmp_path: Path, testalloc: Path) -> None:
    code = """
    port = int(sys.argv[1])
    with memray.Tracker(destination=memray.SocketDestination(port)):
        pid = os.fork()
        if pid == 0:
            lib.ta_malloc(999)  # not recorded: the child does not follow
            time.sleep(60)
            os._exit(0)
        open("child", "w").write(str(pid))
        kept = lib.ta_malloc(65432)
        wait_for_file("never")
    """
    port = free_port()
    with tracked_program(code, tmp_path, testalloc, port) as proc, connect(port, proc) as reader:
        wait_until(
            lambda: by_size(reader.get_current_snapshot(merge_threads=True), 65432),
            "the parent's allocation",
        )
        child = int((tmp_path / "child").read_text())
        try:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)
            # The child still runs, yet the reader sees the end.
            wait_until(lambda: not reader.is_active, "the end of the stream")
            assert by_size(reader.get_current_snapshot(merge_threads=True), 999) == []
        finally:
            os.kill(child, signal.SIGKILL)


# -- the API, bad inputs ------------------------------------------------------


def test_socket_destination_checks() -> None:
    with pytest.raises(RuntimeError):
        memray.Tracker(destination=SocketDestination(server_port=1), follow_fork=True)
    with pytest.raises(RuntimeError):
        memray.Tracker(
            destination=SocketDestination(server_port=1),
            file_format=FileFormat.AGGREGATED_ALLOCATIONS,
        )
    for bad in (0, 70000, -1):
        with pytest.raises(ValueError):
            memray.Tracker(destination=SocketDestination(server_port=bad))
    for bad in (0, 65536):
        with pytest.raises(ValueError):
            SocketReader(bad)


def test_tracker_port_in_use_is_an_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(OSError) as info:
            memray.Tracker(destination=SocketDestination(server_port=port))
        assert time.monotonic() - start < 5
        assert info.value.errno == 98  # EADDRINUSE
        assert f"127.0.0.1:{port}" in str(info.value)
        assert not memray._memray.is_tracking()


def test_reader_nothing_listening_is_an_error() -> None:
    port = free_port()
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError) as info, SocketReader(port, timeout=0.5):
        pass
    # It kept trying until its timeout, then gave up.
    assert 0.4 < time.monotonic() - start < 5
    assert f"127.0.0.1:{port}" in str(info.value)


def test_reader_started_before_the_program_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "prog.py").write_text(
        textwrap.dedent(
            f"""
            import time, memray
            time.sleep(1.0)  # the reader is already trying
            with memray.Tracker(destination=memray.SocketDestination(server_port={port})):
                keep = [bytearray(100_000) for _ in range(10)]
                time.sleep(0.5)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(tmp_path / "prog.py")], cwd=tmp_path)
    try:
        with SocketReader(port, timeout=30) as reader:
            assert reader.pid == proc.pid
    finally:
        proc.wait(timeout=TIMEOUT)
    assert proc.returncode == 0


@contextlib.contextmanager
def fake_peer(send: bytes, *, close: bool = True) -> Iterator[int]:
    """A server on a free port that sends `send` to whoever connects, then
    closes the connection (or keeps it open until the test ends)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(send)
            if not close:
                done.wait(WAIT)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(WAIT)
        server.close()


def test_reader_foreign_peer_is_an_error() -> None:
    banner = b"SSH-2.0-OpenSSH_9.2\r\n"
    with fake_peer(banner, close=False) as port:
        start = time.monotonic()
        with pytest.raises(OSError, match="does not send a memray capture stream"):
            SocketReader(port).__enter__()
        assert time.monotonic() - start < 5


def test_reader_silent_peer_times_out() -> None:
    with fake_peer(b"", close=False) as port:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="no memray header"):
            SocketReader(port, timeout=0.3).__enter__()
        assert time.monotonic() - start < 5


def test_reader_peer_closing_at_once_is_an_error() -> None:
    with fake_peer(b"") as port:
        with pytest.raises(OSError, match="closed before any data"):
            SocketReader(port).__enter__()


def test_stream_cut_mid_record_is_an_error() -> None:
    builder = CaptureBuilder(pid=999, command_line="cut.py")
    stack = builder.stack(("<module>", "cut.py", 3))
    builder.alloc(1, MALLOC, 0x1000, 4096, stack)
    whole = builder.data()
    # Then the start of a CODE record whose name never arrives.
    cut = whole + bytes([0x04, 40]) + b"half"
    with fake_peer(cut) as port, SocketReader(port) as reader:
        assert reader.pid == 999 and reader.command_line == "cut.py"
        wait_until(lambda: not reader.is_active, "the end of the stream")
        with pytest.raises(OSError, match="cut off in the middle of a record"):
            reader.get_current_snapshot(merge_threads=True)


def test_stream_of_garbage_after_the_header_is_an_error() -> None:
    builder = CaptureBuilder()
    data = builder.data() + b"\xff" * 200
    with fake_peer(data) as port, SocketReader(port) as reader:
        wait_until(lambda: not reader.is_active, "the end of the stream")
        with pytest.raises(OSError, match="corrupt"):
            list(reader.get_current_snapshot(merge_threads=False))


def test_reader_outside_its_context() -> None:
    reader = SocketReader(free_port())
    assert reader.pid is None and reader.command_line is None
    assert reader.is_active is False and reader.has_native_traces is False
    assert list(reader.get_current_snapshot(merge_threads=True)) == []


# -- the command line ---------------------------------------------------------


def memray_cli(*args: str, cwd: Path, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memray: error: "), proc.stderr
    return lines[0]


def test_run_live_refuses_file_options(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("print('ran')\n")
    for flags, name in (
        (["--live", "-o", "x.bin"], "-o/--output"),
        (["--live-remote", "--aggregate"], "--aggregate"),
        (["--live-remote", "-p", "5000", "--follow-fork"], "--follow-fork"),
        (["--live", "--buffered-file-io"], "--buffered-file-io"),
    ):
        proc = memray_cli("run", *flags, "prog.py", cwd=tmp_path)
        line = one_line_error(proc)
        assert name in line and "--live" in line
        assert "ran" not in proc.stdout
    line = one_line_error(memray_cli("run", "--live-port", "5000", "prog.py", cwd=tmp_path))
    assert "--live-port" in line
    line = one_line_error(memray_cli("run", "--live-remote", "-p", "0", "prog.py", cwd=tmp_path))
    assert "Invalid port: " in line


def test_run_live_remote_port_in_use(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("print('ran')\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = memray_cli("run", "--live-remote", "-p", str(port), "prog.py", cwd=tmp_path)
    line = one_line_error(proc)
    assert str(port) in line and "in use" in line
    assert "ran" not in proc.stdout


def test_run_live_remote_streams_to_a_reader(tmp_path: Path, testalloc: Path) -> None:
    code = """
    keep = lib.ta_malloc(424242)  # HERE
    wait_for_file("go")
    print("program done")
    """
    script = tmp_path / "prog.py"
    script.write_text(program(code))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memray",
            "run",
            "--live-remote",
            "--live-port",
            str(port),
            "prog.py",
            "arg1",
        ],
        cwd=tmp_path,
        env=dict(os.environ, TESTALLOC=str(testalloc)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        hint = proc.stdout.readline()
        assert f" live {port}' in another shell" in hint and hint.startswith("Run '")
        with connect(port, proc) as reader:
            assert reader.command_line == "prog.py arg1"
            snap = wait_until(
                lambda: by_size(reader.get_current_snapshot(merge_threads=True), 424242),
                "the allocation",
            )
            assert snap[0].stack_trace() == [
                ("<module>", str(script), line_of(program(code), "# HERE"))
            ]
            (tmp_path / "go").write_text("")
            wait_until(lambda: not reader.is_active, "the end of the stream")
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert out == "program done\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


class Terminal:
    """`python -m memray ARGS` on a pseudo-terminal: what it draws (escape
    sequences stripped) and the keys it is sent."""

    ESCAPES = re.compile(
        rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])"
    )

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        import fcntl
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        full_env = dict(os.environ, TERM="xterm-256color", **(env or {}))
        full_env.pop("COLUMNS", None)
        full_env.pop("LINES", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memray", *args],
            cwd=cwd,
            env=full_env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the other side is closed
                data = b""
            self.raw += data

    @property
    def text(self) -> str:
        plain = self.ESCAPES.sub(b"", self.raw).decode("utf-8", "replace")
        return " ".join(plain.split())

    def wait_for(self, pattern: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never appeared in: {self.text[-2000:]}")
            self._pump(0.05)

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_exit(self, timeout: float = WAIT) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"never exited: {self.text[-2000:]}")
            self._pump(0.05)
        self._pump(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Terminal:
        t = Terminal(list(args), cwd, env)
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()


def test_memray_live_needs_a_terminal_and_a_valid_port(tmp_path: Path) -> None:
    assert "terminal" in one_line_error(memray_cli("live", str(free_port()), cwd=tmp_path))
    assert "Invalid port: 0" in one_line_error(memray_cli("live", "0", cwd=tmp_path))


def test_memray_live_bad_peers_are_one_line(tmp_path: Path, terminal: Any) -> None:
    port = free_port()
    t = terminal("live", str(port), cwd=tmp_path)
    assert t.wait_exit() == 1
    assert f"memray: error: nothing listens on port {port}" in t.text
    assert "Traceback" not in t.text
    with fake_peer(b"GET / HTTP/1.1\r\n\r\n", close=False) as port:
        t = terminal("live", str(port), cwd=tmp_path)
        assert t.wait_exit() == 1
        assert "does not send a memray capture stream" in t.text
    builder = CaptureBuilder()
    with fake_peer(builder.data() + bytes([0x04, 40]) + b"half") as port:
        t = terminal("live", str(port), cwd=tmp_path)
        t.wait_for("PROGRAM ENDED")
        t.press("q")
        assert t.wait_exit() == 1
        assert "memray: error:" in t.text and "cut off in the middle of a record" in t.text


def test_memray_live_attaches_to_run_live_remote(
    tmp_path: Path, testalloc: Path, terminal: Any
) -> None:
    code = """
    def grow():
        return lib.ta_malloc(5_555_555)  # GROW
    keep = grow()
    wait_for_file("go")
    """
    (tmp_path / "prog.py").write_text(program(code))
    port = free_port()
    remote = subprocess.Popen(
        [sys.executable, "-m", "memray", "run", "--live-remote", "-p", str(port), "prog.py"],
        cwd=tmp_path,
        env=dict(os.environ, TESTALLOC=str(testalloc)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert remote.stdout is not None and "in another shell" in remote.stdout.readline()
        t = terminal("live", str(port), cwd=tmp_path)
        t.wait_for("grow")
        t.wait_for(f"prog.py:{line_of(program(code), '# GROW')}")
        t.wait_for("5.298MB")
        t.wait_for("Running")
        t.press("p")
        t.wait_for("PAUSED")
        t.press("p")
        (tmp_path / "go").write_text("")
        t.wait_for("PROGRAM ENDED")
        assert remote.wait(timeout=TIMEOUT) == 0
        t.press("q")
        assert t.wait_exit() == 0
    finally:
        if remote.poll() is None:
            remote.kill()
        remote.communicate(timeout=TIMEOUT)


def test_run_live_shows_the_program_and_stops_it_on_quit(
    tmp_path: Path, testalloc: Path, terminal: Any
) -> None:
    code = """
    def hold():
        return lib.ta_malloc(3_333_333)  # HOLD
    keep = hold()
    print("noise that must not reach the view")
    open("started", "w").close()
    time.sleep(600)
    """
    (tmp_path / "prog.py").write_text(program(code))
    t = terminal("run", "--live", "prog.py", cwd=tmp_path, env={"TESTALLOC": str(testalloc)})
    t.wait_for("hold")
    t.wait_for("3.179MB")
    assert (tmp_path / "started").exists()
    t.press("q")
    assert t.wait_exit() == 0  # the program was stopped
    assert "noise" not in t.text


def test_run_live_program_ending_by_itself(tmp_path: Path, terminal: Any) -> None:
    (tmp_path / "prog.py").write_text(
        "import sys\nkeep = [bytearray(1_000_000) for _ in range(4)]\nsys.exit(3)\n"
    )
    t = terminal("run", "--live", "prog.py", cwd=tmp_path)
    t.wait_for("PROGRAM ENDED")
    t.press("q")
    assert t.wait_exit() == 3  # its exit status


# -- the view, driven by textual's pilot ----------------------------------------


class FakeRecord:
    def __init__(
        self, tid: int, thread: str, size: int, n: int, stack: list[tuple[str, str, int]]
    ) -> None:
        self.tid = tid
        self.thread_name = thread
        self.size = size
        self.n_allocations = n
        self._stack = stack

    def stack_trace(self, max_stacks: int | None = None) -> list[tuple[str, str, int]]:
        return list(self._stack)


class FakeSource:
    """SocketReader's face, fed by the test."""

    def __init__(self, records: list[FakeRecord]) -> None:
        self.pid = 4242
        self.command_line = "service.py --port 80"
        self.is_active = True
        self.records = records
        self.error: str | None = None
        self.calls = 0

    def get_current_snapshot(self, *, merge_threads: bool) -> list[FakeRecord]:
        assert merge_threads is False  # the view merges by itself
        self.calls += 1
        if self.error is not None:
            raise OSError(self.error)
        return list(self.records)


def snapshot_records() -> list[FakeRecord]:
    main = [("main", "app.py", 50)]
    return [
        FakeRecord(10, "MainThread", 4000, 1, [("load", "app.py", 7), *main]),
        FakeRecord(10, "MainThread", 1000, 40, [("parse", "app.py", 20), *main]),
        FakeRecord(11, "worker", 3000, 3, [("handle", "srv.py", 5)]),
        FakeRecord(11, "worker", 500, 500, [("handle", "srv.py", 9)]),
    ]


def run_app(source: FakeSource, scenario: Callable[[LiveApp, Any], Any]) -> None:
    async def main() -> None:
        app = LiveApp(source, refresh_interval=3600)  # the test refreshes by hand
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(asyncio.wait_for(main(), WAIT * 3))


def table_rows(app: LiveApp) -> list[list[str]]:
    from textual.widgets import DataTable

    table = app.query_one("#table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def status(app: LiveApp) -> str:
    from textual.widgets import Static

    return str(app.query_one("#status", Static).render())


def test_view_rows_sorting_threads_and_pause() -> None:
    source = FakeSource(snapshot_records())

    async def scenario(app: LiveApp, pilot: Any) -> None:
        # The first thread (lowest tid), sorted by total memory.
        assert "Thread 1 of 2: 10 (MainThread)" in status(app)
        assert table_rows(app) == [
            ["main", "app.py:50", "4.883KB", "100.00%", "0.000B", "0.00%", "41"],
            ["load", "app.py:7", "3.906KB", "80.00%", "3.906KB", "80.00%", "1"],
            ["parse", "app.py:20", "1000.000B", "20.00%", "1000.000B", "20.00%", "40"],
        ]
        assert "PID: 4242" in str(app.query_one("#info").render())
        assert "service.py --port 80" in str(app.query_one("#info").render())
        await pilot.press("o")
        assert [r[0] for r in table_rows(app)] == ["load", "parse", "main"]
        assert "Sorted by own memory" in status(app)
        await pilot.press("a")
        assert [r[0] for r in table_rows(app)] == ["main", "parse", "load"]
        await pilot.press("t")
        assert [r[0] for r in table_rows(app)] == ["main", "load", "parse"]

        # Next thread: the worker; its two lines are two locations.
        await pilot.press("greater_than_sign")
        assert "Thread 2 of 2: 11 (worker)" in status(app)
        assert [(r[0], r[1], r[2]) for r in table_rows(app)] == [
            ("handle", "srv.py:5", "2.930KB"),
            ("handle", "srv.py:9", "500.000B"),
        ]
        await pilot.press("right")  # wraps around
        assert "Thread 1 of 2" in status(app)
        await pilot.press("left")
        assert "Thread 2 of 2" in status(app)
        await pilot.press("less_than_sign")
        assert "Thread 1 of 2" in status(app)

        # Merged: every thread's locations, shares of the whole heap.
        await pilot.press("m")
        assert "all 2 merged" in status(app)
        rows = table_rows(app)
        assert [r[0] for r in rows] == ["main", "load", "handle", "parse", "handle"]
        assert rows[0][3] == "58.82%"  # 5000 of 8500
        await pilot.press("m")
        assert "Thread 1 of 2" in status(app)

        # Pause: new data is not shown until resumed.
        await pilot.press("p")
        assert "PAUSED" in status(app)
        source.records = [FakeRecord(10, "MainThread", 999, 1, [("new", "app.py", 1)])]
        app.refresh_data()
        await pilot.pause()
        assert "load" in [r[0] for r in table_rows(app)]
        assert "Current heap: 8.301KB" in str(app.query_one("#info").render())
        await pilot.press("p")
        assert "Running" in status(app)
        assert table_rows(app) == [
            ["new", "app.py:1", "999.000B", "100.00%", "999.000B", "100.00%", "1"]
        ]
        # The thread list follows the snapshot: the worker is gone.
        assert "Thread 1 of 1" in status(app)
        assert "Peak heap: 8.301KB" in str(app.query_one("#info").render())
        await pilot.press("q")

    run_app(source, scenario)


def test_view_shows_the_end_and_stops_polling() -> None:
    source = FakeSource(snapshot_records())

    async def scenario(app: LiveApp, pilot: Any) -> None:
        source.is_active = False
        source.records = source.records[:1]
        app.refresh_data()
        await pilot.pause()
        assert "PROGRAM ENDED" in status(app)
        assert app.query_one("#status").has_class("ended")
        assert [r[0] for r in table_rows(app)] == ["load", "main"]  # its final state (a tie)
        calls = source.calls
        app.refresh_data()
        assert source.calls == calls  # nothing more to poll
        assert app.error is None
        await pilot.press("q")

    run_app(source, scenario)


def test_view_shows_a_broken_stream() -> None:
    source = FakeSource(snapshot_records())

    async def scenario(app: LiveApp, pilot: Any) -> None:
        source.error = "127.0.0.1:1: the stream was cut off in the middle of a record at byte 9"
        source.is_active = False
        app.refresh_data()
        await pilot.pause()
        assert "the stream broke" in status(app) and "cut off" in status(app)
        assert app.error == source.error
        assert len(table_rows(app)) == 3  # the last good snapshot stays
        await pilot.press("q")

    run_app(source, scenario)


def test_view_end_while_paused_shows_the_final_state_on_resume() -> None:
    source = FakeSource(snapshot_records())

    async def scenario(app: LiveApp, pilot: Any) -> None:
        await pilot.press("p")
        source.records = []
        source.is_active = False
        app.refresh_data()
        await pilot.pause()
        assert "PROGRAM ENDED" in status(app)
        assert len(table_rows(app)) == 3  # still paused on the old view
        await pilot.press("p")
        assert table_rows(app) == []
        await pilot.press("q")

    run_app(source, scenario)


def test_aggregate_locations_counts_recursion_once() -> None:
    rec = FakeRecord(1, "", 100, 2, [("f", "a.py", 1), ("f", "a.py", 1), ("g", "a.py", 9)])
    unknown = FakeRecord(1, "", 7, 1, [])
    rows = {(r.function, r.line): r for r in aggregate_locations([rec, unknown])}
    assert (rows[("f", 1)].total_memory, rows[("f", 1)].own_memory) == (100, 100)
    assert rows[("f", 1)].n_allocations == 2
    assert (rows[("g", 9)].total_memory, rows[("g", 9)].own_memory) == (100, 0)
    assert rows[("<unknown>", 0)].own_memory == 7


def test_view_shows_names_verbatim() -> None:
    source = FakeSource([FakeRecord(1, "[red]t", 10, 1, [("[bold]f", "x[1].py", 2)])])
    source.command_line = "prog.py [/oops] [1]"

    async def scenario(app: LiveApp, pilot: Any) -> None:
        assert table_rows(app)[0][:2] == ["[bold]f", "x[1].py:2"]
        assert "prog.py [/oops] [1]" in str(app.query_one("#info").render())
        assert "1 ([red]t)" in status(app)
        await pilot.press("q")

    run_app(source, scenario)


class FakeNativeRecord(FakeRecord):
    def __init__(self, python: list[tuple[str, str, int]], hybrid: list[tuple[str, str, int]]):
        super().__init__(1, "MainThread", 64, 1, python)
        self._hybrid = hybrid

    def hybrid_stack_trace(self, max_stacks: int | None = None) -> list[tuple[str, str, int]]:
        return list(self._hybrid)


def test_view_shows_native_frames_of_native_captures() -> None:
    rec = FakeNativeRecord(
        [("caller", "app.py", 3)],
        [("c_alloc", "ext.c", 40), ("caller", "app.py", 3), ("main", "python.c", 1)],
    )
    source = FakeSource([rec])
    source.has_native_traces = True  # type: ignore[attr-defined]

    async def scenario(app: LiveApp, pilot: Any) -> None:
        rows = table_rows(app)
        assert [r[:2] for r in rows][0] == ["c_alloc", "ext.c:40"]
        assert {r[0] for r in rows} == {"c_alloc", "caller", "main"}
        await pilot.press("q")

    run_app(source, scenario)


def test_live_remote_refuses_what_is_not_python_before_waiting(tmp_path: Path) -> None:
    (tmp_path / "binary.py").write_bytes(b"\x00\x01\x02 not python")
    (tmp_path / "broken.py").write_text("def broken(:\n    pass\n")
    port = str(free_port())
    for program in (["binary.py"], ["broken.py"], ["-c", "x = ("]):
        for mode in ("--live-remote", "--live"):
            proc = memray_cli("run", mode, "--live-port", port, *program, cwd=tmp_path)
            line = one_line_error(proc)
            assert "Only valid Python files or commands can be executed under memray" in line
            assert "another shell" not in proc.stdout  # it never waited for a reader
