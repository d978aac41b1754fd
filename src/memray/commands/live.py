"""``memray live PORT``: the live view of a program started with
``memray run --live-remote``; and the two halves of ``memray run --live``
(the tracked program in a child process, the view in this one).

It owns connecting (with retries while a child starts) and turning failures
into one line; the view is memray.reporters.live_tui.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from .common import CommandError, one_line

HELP = "Show the memory of a program run with `memray run --live-remote` as it runs"
DESCRIPTION = """\
Attach a live view to a program started with `memray run --live-remote`
(which prints the port to use), and watch what it holds now, per location.

Keys: t, o, a sort by total memory, own memory, allocation count; < and >
switch threads, m merges them; p pauses; q quits.
"""

# How long `memray run --live` waits for its child to listen, and both wait
# for the stream's header once connected (seconds).
CONNECT_TIMEOUT = 10.0
HEADER_TIMEOUT = 10.0


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", type=int, help="Port the tracked program listens on")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    port = check_port(args.port)
    require_terminal("memray live")
    reader = connect(port)
    return show(reader)


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        # memray 1.x's words, so scripts that look for them still match.
        raise CommandError(f"Invalid port: {port} (it must be between 1 and 65535)")
    return port


def require_terminal(what: str) -> None:
    try:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        raise CommandError(f"{what} shows a terminal UI: run it in a terminal")


def connect(port: int, *, child: subprocess.Popen[Any] | None = None) -> Any:
    """A SocketReader connected to port. With a child (`run --live`), retries
    while the child starts listening; without, nothing listening is an error
    at once."""
    from memray import SocketReader

    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        reader = SocketReader(port, timeout=HEADER_TIMEOUT)
        try:
            return reader.__enter__()
        except ConnectionRefusedError as error:
            if child is None:
                raise CommandError(
                    f"nothing listens on port {port} (start the program with "
                    f"`memray run --live-remote`): {error.strerror or one_line(error)}"
                ) from None
            if child.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"the program did not start listening on port {port}") from None
            time.sleep(0.05)
        except OSError as error:
            raise CommandError(f"cannot follow port {port}: {one_line(error)}") from None


def show(reader: Any) -> int:
    """Runs the view until the user quits; a broken stream is an error then."""
    from memray.reporters.live_tui import LiveApp

    app = LiveApp(reader)
    try:
        app.run()
    finally:
        reader.close()
    if app.error is not None:
        raise CommandError(app.error)
    return 0


def free_port() -> int:
    """A port nobody listens on now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(port: int) -> None:
    """Fails early, with the port in the message, when port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as error:
            raise CommandError(
                f"cannot listen on port {port}: {error.strerror or one_line(error)}"
            ) from None


def run_and_attach(port: int, child_args: list[str]) -> int:
    """`memray run --live`: runs `memray run --live-remote` with child_args in
    a child process (its output would garble the view: stdout is dropped,
    stderr kept for errors) and shows the view here. Quitting the view stops
    the program. Returns the program's exit status if it ended by itself."""
    require_terminal("memray run --live")
    check_port_free(port)
    command = [
        sys.executable,
        "-m",
        "memray",
        "run",
        "--live-remote",
        "--live-port",
        str(port),
        *child_args,
    ]
    with tempfile.TemporaryFile("w+", prefix="memray-live-", suffix=".log") as errors:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
        )
        try:
            try:
                reader = connect(port, child=child)
            except CommandError as error:
                raise CommandError(f"{error}{_child_error(child, errors)}") from None
            show(reader)
        finally:
            stopped = _stop(child)
        status = child.returncode
        if not stopped and status != 0:
            sys.stderr.write(_read(errors))
        return 0 if stopped else status


def _stop(child: subprocess.Popen[Any]) -> bool:
    """Ends the child if it still runs; True if it had to be stopped."""
    if child.poll() is not None:
        return False
    child.terminate()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    return True


def _read(errors: Any) -> str:
    errors.flush()
    errors.seek(0)
    return str(errors.read())


def _child_error(child: subprocess.Popen[Any], errors: Any) -> str:
    try:
        child.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return ""
    lines = [line for line in _read(errors).splitlines() if line.strip()]
    detail = f": {lines[-1].strip()}" if lines else ""
    return f" (it exited with status {child.returncode}{detail})"
