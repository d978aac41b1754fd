"""Make the documentation's pictures from real captures of the bundled examples.

    python docs/tools/make_pictures.py OUT_DIR

Runs examples/demo.py and docs/examples/thumbnails.py under memray (in a
temporary directory, each program in a fresh interpreter with a timeout),
makes the reports the pages show, and writes into OUT_DIR:

- PNG screenshots of the HTML reports (flame graphs, table, diff), taken by
  headless Chromium;
- SVG pictures of the terminal reports (summary, tree, stats, diff), from
  their real output on a pseudo-terminal, drawn by rich's
  ``Console(record=True).export_svg()``;
- an SVG of the live view (``memray live``) following
  docs/examples/service.py as it runs, drawn by textual's own screenshot.

`make docs` runs it before sphinx-build; the pages include the files from
docs/_build/pictures. Nothing here is drawn by hand: a report that changes
changes its picture at the next build. The Python running this script is the
one whose memray is pictured.
"""

from __future__ import annotations

import concurrent.futures
import errno
import io
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from fcntl import ioctl
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds, for any one program or report
TERMINAL_ROWS = 50

# (picture, report command, window width, window height): the HTML reports.
SCREENSHOTS = [
    ("flamegraph.png", ["flamegraph", "-o", "flamegraph.html", "thumbnails.bin"], 1200, 470),
    (
        "flamegraph-leaks.png",
        ["flamegraph", "--leaks", "-o", "flamegraph-leaks.html", "thumbnails.bin"],
        1200,
        470,
    ),
    (
        "flamegraph-temporary.png",
        [
            "flamegraph",
            "--temporary-allocations",
            "-o",
            "flamegraph-temporary.html",
            "thumbnails.bin",
        ],
        1200,
        470,
    ),
    ("table.png", ["table", "-o", "table.html", "thumbnails.bin"], 1200, 310),
    ("diff.png", ["diff", "--html", "-o", "diff.html", "base.bin", "new.bin"], 1200, 460),
    ("demo-flamegraph.png", ["flamegraph", "-o", "demo.html", "demo.bin"], 1200, 470),
]

# (picture, report command, terminal columns): the terminal reports.
TERMINAL = [
    ("summary.svg", ["summary", "thumbnails.bin"], 130),
    ("tree.svg", ["tree", "thumbnails.bin"], 100),
    ("stats.svg", ["stats", "thumbnails.bin"], 100),
    ("diff.svg", ["diff", "base.bin", "new.bin"], 120),
]


def run(args: list[str], cwd: Path) -> None:
    """Runs one program or report to completion; its failure stops the build."""
    proc = subprocess.run(
        args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"make_pictures: {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")


def memray(args: list[str], cwd: Path) -> None:
    run([sys.executable, "-m", "memray", *args], cwd)


def make_captures(work: Path) -> None:
    """The captures every picture is made from, as the pages make them."""
    shutil.copy(REPO / "examples" / "demo.py", work / "demo.py")
    shutil.copy(REPO / "docs" / "examples" / "thumbnails.py", work / "thumbnails.py")
    shutil.copy(REPO / "docs" / "examples" / "service.py", work / "service.py")
    run([sys.executable, "demo.py", "demo.bin"], work)
    memray(["run", "-q", "-o", "thumbnails.bin", "thumbnails.py"], work)
    # docs/cli/diff.rst: the same program, then with larger batches and thumbnails.
    memray(["run", "-q", "-o", "base.bin", "thumbnails.py"], work)
    memray(["run", "-q", "-o", "new.bin", "thumbnails.py", "60", "16"], work)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("make_pictures: no chromium on PATH (`make deps` installs Debian's chromium)")


def screenshot(chromium: str, page: Path, picture: Path, width: int, height: int) -> None:
    """A PNG of the page as headless Chromium shows it in a window of that size."""
    with tempfile.TemporaryDirectory(prefix="memray-docs-chromium-") as profile:
        run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--user-data-dir={profile}",
                f"--screenshot={picture}",
                f"--window-size={width},{height}",
                page.as_uri(),
            ],
            page.parent,
        )
    if not picture.is_file() or picture.stat().st_size == 0:
        sys.exit(f"make_pictures: chromium wrote no {picture}")


def terminal_output(args: list[str], cwd: Path, columns: int) -> str:
    """What the command prints on a terminal of that many columns (with
    colours), its standard input not a terminal (so `memray tree` prints its
    tree instead of starting its interactive view) and standard error left
    out (progress bars)."""
    master, slave = pty.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", TERMINAL_ROWS, columns, 0, 0))
    env = dict(
        os.environ,
        COLUMNS=str(columns),
        LINES=str(TERMINAL_ROWS),
        TERM="xterm-256color",
        COLORTERM="truecolor",
    )
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.DEVNULL
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit(f"make_pictures: {' '.join(args)} did not finish in {TIMEOUT} s")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as error:  # EIO: the other side closed
                if error.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        status = proc.wait(timeout=TIMEOUT)
    if status != 0:
        sys.exit(f"make_pictures: {' '.join(args)} failed ({status})")
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def terminal_svg(args: list[str], cwd: Path, picture: Path, columns: int) -> None:
    from rich.console import Console
    from rich.text import Text

    output = terminal_output([sys.executable, "-m", "memray", *args], cwd, columns)
    output = re.sub(r"\x1b\[\?25[lh]", "", output)  # cursor shown/hidden
    console = Console(
        record=True,
        width=columns,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
    )
    console.print(Text.from_ansi(output.rstrip("\n")), soft_wrap=True)
    picture.write_text(offline(console.export_svg(title="memray " + " ".join(args))))


def offline(svg: str) -> str:
    """rich and textual name a web font by URL; the pages are read offline
    too, and the browser's own monospace font does."""
    return re.sub(r',\s*url\("https?://[^"]*"\)\s*format\("[^"]*"\)', "", svg)


def live_svg(work: Path, picture: Path) -> None:
    """The live view of docs/examples/service.py, as `memray live PORT` shows
    it after a few seconds (drawn headless by textual, at 110 x 20)."""
    import asyncio
    import socket

    from memray import SocketReader
    from memray.reporters.live_tui import LiveApp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "memray", "run", "--live-remote", "-p", str(port),
         "service.py", "20"],
        cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with SocketReader(port, timeout=TIMEOUT) as reader:

            async def draw() -> str:
                app = LiveApp(reader, refresh_interval=0.5)
                async with app.run_test(size=(110, 20)) as pilot:
                    await pilot.pause(3.0)
                    return app.export_screenshot(title="memray live " + str(port))

            picture.write_text(offline(asyncio.run(draw())))
    finally:
        child.terminate()
        child.wait(timeout=TIMEOUT)


def live_view_picture(work: Path, picture: Path, attempts: int = 3) -> None:
    """live_svg, tried again when the view fails: once in about twenty runs
    on a loaded machine, textual raised NoMatches('#table') from the live
    view (an app that is not yet, or no longer, composed)."""
    for attempt in range(1, attempts + 1):
        try:
            live_svg(work, picture)
            return
        except Exception as error:  # any failure of the view
            if attempt == attempts:
                raise
            print(f"make_pictures: live view failed ({type(error).__name__}: {error}); again")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # A short folder name: the reports show the examples' paths.
    with tempfile.TemporaryDirectory(prefix="docs-") as tmp:
        work = Path(tmp)
        make_captures(work)
        for _, command, _, _ in SCREENSHOTS:
            memray(command, work)
        chromium = find_chromium()
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [
                pool.submit(
                    screenshot,
                    chromium,
                    work / command[command.index("-o") + 1],
                    out / picture,
                    width,
                    height,
                )
                for picture, command, width, height in SCREENSHOTS
            ]
            for picture, command, columns in TERMINAL:
                jobs.append(pool.submit(terminal_svg, command, work, out / picture, columns))
            live_view_picture(work, out / "live.svg")  # meanwhile, in this thread
            for job in jobs:
                job.result()
    print(f"make_pictures: {len(SCREENSHOTS) + len(TERMINAL) + 1} pictures in {out} "
          f"({time.monotonic() - started:.1f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
