"""The flamegraph and table HTML reports: on real captures made here (exact
names, sizes and counts checked in the data the page embeds), hostile program
strings, bad input, and the pages themselves loaded in headless Chromium
(driven over the DevTools protocol on a pipe: no network involved)."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import TIMEOUT

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium")

HOSTILE_NAME = "</script><img src=x onerror=alert(1)>"
HOSTILE_FILE = "</script><svg onload=alert(2)>.py"
HOSTILE_ARG = "<b>hostile-arg</b>"
PEAK_SIZE = 48 * 1024 * 1024  # far above anything else the interpreter holds

PROGRAM = textwrap.dedent(
    """\
    import ctypes, os, sys, threading, time, types
    import memray

    lib = ctypes.CDLL(os.environ["TESTALLOC"])
    lib.ta_malloc.restype = ctypes.c_void_p
    lib.ta_free.argtypes = [ctypes.c_void_p]
    keep = []


    def leaky_function():
        keep.append(lib.ta_malloc(1234567))  # LEAK


    def temporary_function():
        for _ in range(3):
            p = lib.ta_malloc(7777)  # TEMP
            lib.ta_free(p)


    def peak_function():
        p = lib.ta_malloc(PEAK_SIZE)  # PEAK
        lib.ta_free(p)


    def thread_body():
        keep.append(lib.ta_malloc(222222))  # THREAD


    def _hostile():
        keep.append(lib.ta_malloc(4242))  # HOSTILE


    code = _hostile.__code__.replace(
        co_name=HOSTILE_NAME, co_qualname=HOSTILE_NAME, co_filename=HOSTILE_FILE
    )
    hostile = types.FunctionType(code, globals())

    with memray.Tracker(sys.argv[1], native_traces=NATIVE, memory_interval_ms=5):
        leaky_function()  # CALL_LEAK
        hostile()
        time.sleep(0.05)  # memory samples for the plot between the steps
        temporary_function()
        worker = threading.Thread(target=thread_body, name="worker-thread")
        worker.start()
        worker.join()
        time.sleep(0.05)
        peak_function()
        time.sleep(0.05)
    """
)


def line_of(marker: str) -> int:
    for number, text in enumerate(PROGRAM.splitlines(), 1):
        if marker in text:
            return number
    raise ValueError(marker)


def make_capture(directory: Path, testalloc: Path, *, native: bool = False) -> tuple[Path, Path]:
    """Runs PROGRAM under a Tracker; returns (capture, program path)."""
    directory.mkdir(parents=True, exist_ok=True)
    program = directory / "prog.py"
    program.write_text(
        PROGRAM.replace("PEAK_SIZE", str(PEAK_SIZE))
        .replace("HOSTILE_NAME", repr(HOSTILE_NAME))
        .replace("HOSTILE_FILE", repr(HOSTILE_FILE))
        .replace("NATIVE", repr(native))
    )
    capture = directory / "memray-prog.bin"
    env = dict(os.environ, TESTALLOC=str(testalloc))
    proc = subprocess.run(
        [sys.executable, str(program), str(capture), HOSTILE_ARG],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return capture, program


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory, testalloc: Path) -> tuple[Path, Path]:
    return make_capture(tmp_path_factory.mktemp("capture"), testalloc)


def memray_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def report(kind: str, capture: Path, out: Path, *flags: str) -> str:
    proc = memray_cli(kind, *flags, "-o", str(out), "-f", str(capture))
    assert proc.returncode == 0, proc.stderr
    assert f"Wrote {out}" in proc.stdout
    return out.read_text(encoding="utf-8")


def embedded(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="memray-data">(.*?)</script>', html, re.DOTALL
    )
    assert match, "no embedded data"
    return json.loads(match.group(1))


def frame_of(data: dict[str, Any], f: int) -> tuple[str, str, int]:
    s, fr = data["strings"], data["frames"]
    return s[fr["func"][f]], s[fr["file"][f]], fr["line"][f]


def path_of(data: dict[str, Any], node: int) -> list[tuple[str, str, int]]:
    parent, frame = data["nodes"]["parent"], data["nodes"]["frame"]
    path = []
    while node > 0:
        path.append(frame_of(data, frame[node]))
        node = parent[node]
    return path[::-1]


def leaf_totals(
    data: dict[str, Any], sizes: list[float] | None = None, counts: list[float] | None = None
) -> dict[tuple[str, str, int], list[int]]:
    """(function, file, line) of each sample's innermost frame -> [bytes, count]."""
    sm = data["samples"]
    sizes = sm["size"] if sizes is None else sizes
    counts = sm["count"] if counts is None else counts
    totals: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for node, size, count in zip(sm["node"], sizes, counts):
        if node == 0 or (size == 0 and count == 0):
            continue
        key = frame_of(data, data["nodes"]["frame"][node])
        totals[key][0] += size
        totals[key][1] += count
    return dict(totals)


# --- flamegraph on real captures ------------------------------------------------------


def test_flamegraph_peak_exact_sizes_stacks_and_source(
    capture: tuple[Path, Path], tmp_path: Path
) -> None:
    cap, prog = capture
    data = embedded(report("flamegraph", cap, tmp_path / "fg.html"))
    p = str(prog)
    totals = leaf_totals(data)
    assert totals[("leaky_function", p, line_of("# LEAK"))] == [1234567, 1]
    assert totals[("peak_function", p, line_of("# PEAK"))] == [PEAK_SIZE, 1]
    assert totals[("thread_body", p, line_of("# THREAD"))] == [222222, 1]
    assert totals[(HOSTILE_NAME, HOSTILE_FILE, line_of("# HOSTILE"))] == [4242, 1]
    assert ("temporary_function", p, line_of("# TEMP")) not in totals
    # The whole stack of the leak, root first, as the program ran it.
    leak_node = next(
        n
        for n in data["samples"]["node"]
        if path_of(data, n)[-1] == ("leaky_function", p, line_of("# LEAK"))
    )
    assert path_of(data, leak_node) == [
        ("<module>", p, line_of("# CALL_LEAK")),
        ("leaky_function", p, line_of("# LEAK")),
    ]
    # Tooltips show the source line, read when the report was made.
    fr, s = data["frames"], data["strings"]
    leak_frame = data["nodes"]["frame"][leak_node]
    assert s[fr["src"][leak_frame]] == "keep.append(lib.ta_malloc(1234567))  # LEAK"
    assert data["snapshots"]["time"], "no memory samples for the plot"
    assert len(data["snapshots"]["rss"]) == len(data["snapshots"]["time"])
    assert data["options"]["split_threads"] is False
    assert len(data["threads"]) == 1


def test_flamegraph_leaks(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, prog = capture
    data = embedded(report("flamegraph", cap, tmp_path / "fg.html", "--leaks"))
    totals = leaf_totals(data)
    p = str(prog)
    assert totals[("leaky_function", p, line_of("# LEAK"))] == [1234567, 1]
    assert totals[("thread_body", p, line_of("# THREAD"))] == [222222, 1]
    assert ("peak_function", p, line_of("# PEAK")) not in totals
    assert data["options"]["kind"] == "leaks"


def test_flamegraph_temporary_allocations(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, prog = capture
    data = embedded(report("flamegraph", cap, tmp_path / "fg.html", "--temporary-allocations"))
    totals = leaf_totals(data)
    assert totals[("temporary_function", str(prog), line_of("# TEMP"))] == [3 * 7777, 3]
    assert ("leaky_function", str(prog), line_of("# LEAK")) not in totals
    data = embedded(
        report("flamegraph", cap, tmp_path / "fg0.html", "--temporary-allocation-threshold", "0")
    )
    assert data["options"]["kind"] == "temporary"


def test_flamegraph_split_threads_and_inverted(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, _ = capture
    data = embedded(
        report("flamegraph", cap, tmp_path / "fg.html", "--split-threads", "--inverted")
    )
    assert data["options"]["split_threads"] is True
    assert data["options"]["inverted"] is True
    threads = [data["strings"][t] for t in data["threads"]]
    assert len(threads) >= 2
    by_leaf = {
        path_of(data, n)[-1][0]: threads[t]
        for n, t in zip(data["samples"]["node"], data["samples"]["thread"])
        if n
    }
    assert "worker-thread" in by_leaf["thread_body"]
    assert "worker-thread" not in by_leaf["leaky_function"]


def temporal_totals(data: dict[str, Any], lo: int, hi: int) -> dict:
    """What the page shows for slots [lo, hi] (the rule of flamegraph.js)."""
    iv = data["temporal"]["intervals"]
    n = len(data["samples"]["node"])
    size, count = [0] * n, [0] * n
    peaks = data["temporal"]["high_water_mark_by_snapshot"]
    rows = zip(iv["sample"], iv["allocated"], iv["deallocated"], iv["count"], iv["size"])
    if peaks is None:
        keep = lambda a, d: lo <= a <= hi and (d < 0 or d > hi)
    else:
        window = range(lo, min(hi, len(peaks) - 1) + 1)
        k = max(window, key=lambda i: (peaks[i], -i))
        keep = lambda a, d: a <= k and (d < 0 or d > k)
    for sample, a, d, c, b in rows:
        if keep(a, d):
            size[sample] += b
            count[sample] += c
    return leaf_totals(data, size, count)


def max_slot(data: dict[str, Any]) -> int:
    iv = data["temporal"]["intervals"]
    peaks = data["temporal"]["high_water_mark_by_snapshot"] or []
    return max(
        [len(data["snapshots"]["time"]), len(peaks) - 1, *iv["allocated"], *iv["deallocated"]]
    )


def test_flamegraph_temporal_whole_run_matches_snapshots(
    capture: tuple[Path, Path], tmp_path: Path
) -> None:
    cap, prog = capture
    p = str(prog)
    leaks = embedded(report("flamegraph", cap, tmp_path / "tl.html", "--temporal", "--leaks"))
    assert leaks["options"]["temporal"] is True
    assert leaks["temporal"]["high_water_mark_by_snapshot"] is None
    whole = temporal_totals(leaks, 0, max_slot(leaks))
    plain = leaf_totals(embedded(report("flamegraph", cap, tmp_path / "l.html", "--leaks")))
    assert whole == plain
    assert whole[("leaky_function", p, line_of("# LEAK"))] == [1234567, 1]

    peak = embedded(report("flamegraph", cap, tmp_path / "tp.html", "--temporal"))
    assert peak["temporal"]["high_water_mark_by_snapshot"]
    whole = temporal_totals(peak, 0, max_slot(peak))
    assert whole[("peak_function", p, line_of("# PEAK"))] == [PEAK_SIZE, 1]
    assert whole[("leaky_function", p, line_of("# LEAK"))] == [1234567, 1]


def test_flamegraph_temporal_rejects_temporary(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, _ = capture
    proc = memray_cli(
        "flamegraph",
        "--temporal",
        "--temporary-allocations",
        "-o",
        str(tmp_path / "x.html"),
        str(cap),
    )
    assert proc.returncode == 2
    assert "temporal" in proc.stderr
    assert not (tmp_path / "x.html").exists()


def test_hostile_strings_are_escaped(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, _ = capture
    for kind in ("flamegraph", "table"):
        html = report(kind, cap, tmp_path / f"{kind}.html")
        # Nothing from the program can open an element or close the data block.
        assert "<img" not in html and "<svg" not in html and "<b>hostile" not in html
        assert html.count("</script>") == html.count("<script")
        assert "&lt;b&gt;hostile-arg&lt;/b&gt;" in html  # the command line, escaped
        data = embedded(html)
        assert HOSTILE_NAME in json.dumps(data, ensure_ascii=False)
        assert HOSTILE_FILE in json.dumps(data, ensure_ascii=False)


def test_default_output_name_and_overwrite(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, _ = capture
    local = tmp_path / cap.name
    shutil.copy(cap, local)
    for kind in ("flamegraph", "table"):
        expected = tmp_path / f"memray-{kind}-prog.html"
        proc = memray_cli(kind, str(local), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert expected.is_file()
        before = expected.read_bytes()
        proc = memray_cli(kind, str(local), cwd=tmp_path)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "already exists" in lines[0], proc.stderr
        assert expected.read_bytes() == before
        proc = memray_cli(kind, "-f", str(local), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr


# --- table on real captures ----------------------------------------------------------------


def table_rows(data: dict[str, Any]) -> list[tuple[str, int, int, str, str]]:
    s, r = data["strings"], data["rows"]
    return [
        (s[t], size, count, s[a], s[loc])
        for t, size, count, a, loc in zip(
            r["thread"], r["size"], r["count"], r["allocator"], r["location"]
        )
    ]


def test_table_rows(capture: tuple[Path, Path], tmp_path: Path) -> None:
    cap, prog = capture
    rows = table_rows(embedded(report("table", cap, tmp_path / "t.html")))
    by_location = {loc: (size, count, alloc) for _, size, count, alloc, loc in rows}
    leak = f"leaky_function at {prog}:{line_of('# LEAK')}"
    assert by_location[leak] == (1234567, 1, "malloc")
    assert by_location[f"peak_function at {prog}:{line_of('# PEAK')}"] == (
        PEAK_SIZE,
        1,
        "malloc",
    )
    assert by_location[f"{HOSTILE_NAME} at {HOSTILE_FILE}:{line_of('# HOSTILE')}"][0] == 4242

    rows = table_rows(
        embedded(report("table", cap, tmp_path / "l.html", "--leaks", "--split-threads"))
    )
    threads = {loc: thread for thread, _, _, _, loc in rows}
    assert "worker-thread" in threads[f"thread_body at {prog}:{line_of('# THREAD')}"]
    assert not any(loc.startswith("peak_function") for *_, loc in rows)

    rows = table_rows(
        embedded(report("table", cap, tmp_path / "tmp.html", "--temporary-allocations"))
    )
    temp = [r for r in rows if r[4] == f"temporary_function at {prog}:{line_of('# TEMP')}"]
    assert [(size, count) for _, size, count, _, _ in temp] == [(3 * 7777, 3)]


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, capture: tuple[Path, Path]) -> dict:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.bin").write_bytes(b"")
    (d / "garbage.bin").write_bytes(os.urandom(4096))
    (d / "text.bin").write_text("this is not a capture\n" * 50)
    data = capture[0].read_bytes()
    (d / "truncated.bin").write_bytes(data[: max(1, len(data) // 3)])
    (d / "header-only.bin").write_bytes(data[:16])
    return {
        "missing": d / "missing.bin",
        "empty": d / "empty.bin",
        "garbage": d / "garbage.bin",
        "text": d / "text.bin",
        "header-only": d / "header-only.bin",
        "truncated": d / "truncated.bin",
    }


@pytest.mark.parametrize("kind", ["flamegraph", "table"])
@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "text", "header-only"])
def test_bad_input_is_one_line(kind: str, case: str, bad_inputs: dict, tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    proc = memray_cli(kind, "-o", str(out), str(bad_inputs[case]))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("kind", ["flamegraph", "table"])
def test_truncated_capture_reports_or_fails_cleanly(
    kind: str, bad_inputs: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out.html"
    proc = memray_cli(kind, "-o", str(out), str(bad_inputs["truncated"]))
    assert "Traceback" not in proc.stderr
    if proc.returncode == 0:  # readable up to the last complete record
        embedded(out.read_text(encoding="utf-8"))
    else:
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- native traces ---------------------------------------------------------------------------


def test_flamegraph_native_capture(
    tmp_path_factory: pytest.TempPathFactory, testalloc: Path, tmp_path: Path
) -> None:
    cap, _ = make_capture(tmp_path_factory.mktemp("native"), testalloc, native=True)
    data = embedded(report("flamegraph", cap, tmp_path / "fg.html"))
    assert data["options"]["native_traces"] is True
    names = {frame_of(data, f)[0] for f in range(len(data["frames"]["func"]))}
    assert "leaky_function" in names  # Python frames inside the hybrid stacks
    assert "ta_malloc" in names  # and the native one that allocated
    table = table_rows(embedded(report("table", cap, tmp_path / "t.html")))
    # Rows are per innermost frame: natively, that is the allocating C function.
    in_ta_malloc = sum(size for _, size, _, _, loc in table if loc.startswith("ta_malloc at "))
    assert in_ta_malloc == PEAK_SIZE + 1234567 + 222222 + 4242


# --- the pages in a browser ------------------------------------------------------------------------

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-pipe",
]


class Browser:
    """A headless Chromium driven over --remote-debugging-pipe (fd 3 in, fd 4
    out, NUL-terminated JSON messages), attached to one page."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="memray-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}',
                binary,
                *CHROME_FLAGS,
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            pass_fds=(to_chrome_r, from_chrome_w),
            # Under `make test-asan` the sanitizer runtime is preloaded for
            # Python; the browser must not inherit it.
            env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
        message, _, self._buf = self._buf.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params: Any) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event["method"] == method:
                return self.events.pop(i)
        deadline = time.monotonic() + self.timeout
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            if "method" in event:
                self.events.append(event)

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def dataset(self) -> dict[str, str]:
        return json.loads(self.evaluate("JSON.stringify(document.body.dataset)"))

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        self.wait_event("Page.loadEventFired")
        self.wait_for("document.body.dataset.ready === '1'")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(expression)

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                session=True,
                type=kind,
                x=x,
                y=y,
                button="left",
                clickCount=1,
            )

    def type_text(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", session=True, text=text)

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, dialogs and network requests so far."""
        self.evaluate("0")  # flush events queued before now
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append("exception: " + json.dumps(params["exceptionDetails"])[:400])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
                "warning",
            ):
                found.append("console: " + json.dumps(params.get("args"))[:400])
            elif method == "Log.entryAdded" and params["entry"].get("level") in (
                "error",
                "warning",
            ):
                found.append("log: " + params["entry"].get("text", "")[:400])
            elif method == "Page.javascriptDialogOpening":
                found.append("dialog: " + params.get("message", ""))
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file:", "about:", "data:")):
                    found.append("network: " + url)
        return found

    def canvas_ink(self, selector: str) -> int:
        """How many pixels of a canvas are painted."""
        return self.evaluate(
            f"""(() => {{
              const c = document.querySelector({json.dumps(selector)});
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
              return n;
            }})()"""
        )

    def canvas_hash(self, selector: str) -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).toDataURL()")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture(scope="module")
def browser() -> Any:
    assert CHROMIUM is not None
    b = Browser(CHROMIUM)
    try:
        yield b
    finally:
        b.close()


@needs_chromium
def test_browser_flamegraph_draws_searches_zooms(
    browser: Browser, capture: tuple[Path, Path], tmp_path: Path
) -> None:
    cap, _ = capture
    page = tmp_path / "fg.html"
    report("flamegraph", cap, page)
    browser.open(page)
    assert browser.problems() == []
    state = browser.dataset()
    assert int(state["rendered"]) >= 4  # root, <module>, and the allocating functions
    assert int(state["plotPoints"]) > 0
    assert browser.canvas_ink("#flame") > 1000
    assert browser.canvas_ink("#plot") > 1000
    total = int(state["total"])
    assert total >= PEAK_SIZE + 1234567 + 222222 + 4242

    # Search highlights the matching frame and sums its bytes.
    before = browser.canvas_hash("#flame")
    browser.type_text("#search", "leaky_func")
    browser.wait_for("document.body.dataset.matches === '1'")
    assert browser.dataset()["matchedBytes"] == "1234567"
    assert "Matched" in browser.evaluate("document.getElementById('search-result').textContent")
    assert browser.canvas_hash("#flame") != before

    # A real click on the node zooms into it.
    spot = browser.evaluate("memrayFlamegraph.locate('leaky_function')")
    assert spot is not None
    browser.click(spot["clientX"], spot["clientY"])
    browser.wait_for("document.body.dataset.zoom.startsWith('leaky_function')")
    assert browser.dataset()["zoomTotal"] == "1234567"
    zoomed = browser.canvas_hash("#flame")
    assert zoomed != before
    # Hovering shows the tooltip with the source line.
    spot = browser.evaluate("memrayFlamegraph.locate('leaky_function')")
    browser.call(
        "Input.dispatchMouseEvent",
        session=True,
        type="mouseMoved",
        x=spot["clientX"],
        y=spot["clientY"],
    )
    tip = browser.evaluate("document.getElementById('tooltip').innerText")
    assert "keep.append(lib.ta_malloc(1234567))" in tip
    assert "1.18 MiB" in tip
    # Escape resets the zoom; the inverted view puts allocating functions first.
    browser.evaluate("document.dispatchEvent(new KeyboardEvent('keyup', {key: 'Escape'}))")
    assert browser.dataset()["zoom"] == ""
    browser.evaluate("document.getElementById('inverted').click()")
    assert browser.dataset()["inverted"] == "1"
    assert browser.evaluate("memrayFlamegraph.locate('leaky_function').y") < spot["y"]
    browser.evaluate("document.getElementById('inverted').click()")
    browser.evaluate("memrayFlamegraph.search('')")
    assert browser.problems() == []
    browser.screenshot(ARTIFACTS / "flamegraph.png")


@needs_chromium
def test_browser_flamegraph_plot_splits_rss(browser: Browser, tmp_path: Path) -> None:
    """With the split of RSS recorded (docs/memory.rst), the plot stacks its
    parts and hovering names each one with its size."""
    from capture_builder import MALLOC, CaptureBuilder

    mib = 1 << 20
    b = CaptureBuilder()
    s = b.stack(("main", "prog.py", 3))
    b.memory(10, 20 * mib, split=(12 * mib, 8 * mib, 0, 0))
    b.alloc(100, MALLOC, 0x10000, 6 * mib, s)
    b.memory(20, 30 * mib, split=(18 * mib, 10 * mib, 2 * mib, 0))
    b.free(100, 5, 0x10000)
    b.alloc(100, MALLOC, 0x900000, 1 * mib, s)
    b.memory(30, 40 * mib, split=(29 * mib, 10 * mib, 1 * mib, 0))
    cap = b.write(tmp_path / "split.bin")
    page = tmp_path / "fg.html"
    report("flamegraph", cap, page)
    browser.open(page)
    assert browser.problems() == []
    assert browser.dataset()["plotPoints"] == "3"
    legend = browser.evaluate("document.querySelector('.legend').innerText")
    assert "untracked anonymous" in legend and "file-backed" in legend
    box = browser.evaluate(
        "(() => { const r = document.getElementById('plot').getBoundingClientRect();"
        " return {x: r.left, y: r.top, w: r.width, h: r.height}; })()"
    )
    browser.call(
        "Input.dispatchMouseEvent",
        session=True,
        type="mouseMoved",
        x=box["x"] + box["w"] - 14,  # the last sample
        y=box["y"] + box["h"] / 2,
    )
    tip = browser.evaluate("document.getElementById('tooltip').innerText")
    lines = [" ".join(line.split()) for line in tip.splitlines() if line.strip()]
    assert lines[1:] == [
        "Resident set size 40.00 MiB",
        "Heap size 1.00 MiB",
        "heap: tracked allocations 1.00 MiB",
        "untracked anonymous: interpreter, static data, allocator free lists, "
        "fragmentation 28.00 MiB",
        "file-backed: code of Python and libraries, mmap'd files 10.00 MiB",
        "shared: /dev/shm, tmpfs, shared mappings 1.00 MiB",
    ], tip
    assert browser.canvas_ink("#plot") > 1000
    browser.screenshot(ARTIFACTS / "flamegraph-rss.png")
    assert browser.problems() == []


@needs_chromium
def test_browser_flamegraph_threads_and_temporal(
    browser: Browser, capture: tuple[Path, Path], tmp_path: Path
) -> None:
    cap, _ = capture
    page = tmp_path / "fg.html"
    report("flamegraph", cap, page, "--split-threads", "--leaks", "--temporal")
    browser.open(page)
    assert browser.problems() == []
    options = browser.evaluate(
        "Array.from(document.querySelectorAll('#thread option')).map(o => o.textContent)"
    )
    worker = next(i for i, name in enumerate(options) if "worker-thread" in name)
    whole = int(browser.dataset()["total"])
    whole_range = browser.dataset()["range"]
    browser.evaluate(
        f"var s = document.getElementById('thread'); s.value = '{worker - 1}';"
        " s.dispatchEvent(new Event('change'))"
    )
    state = browser.dataset()
    assert state["thread"] == str(worker - 1)
    worker_total = int(state["total"])
    assert 222222 <= worker_total < whole  # the worker's leaked block and little else
    # Drag across the plot's left tenth: the leak made at the start is in it or
    # not, but the range changes and the page stays consistent.
    box = browser.evaluate(
        "(() => { const r = document.getElementById('plot').getBoundingClientRect();"
        " return {x: r.left, y: r.top, w: r.width, h: r.height}; })()"
    )
    y = box["y"] + box["h"] / 2
    browser.call(
        "Input.dispatchMouseEvent",
        session=True,
        type="mousePressed",
        x=box["x"] + 80,
        y=y,
        button="left",
        clickCount=1,
    )
    browser.call(
        "Input.dispatchMouseEvent",
        session=True,
        type="mouseMoved",
        x=box["x"] + 200,
        y=y,
        button="left",
        buttons=1,
    )
    browser.call(
        "Input.dispatchMouseEvent",
        session=True,
        type="mouseReleased",
        x=box["x"] + 200,
        y=y,
        button="left",
        clickCount=1,
    )
    assert browser.dataset()["range"] != whole_range
    assert "Selected" in browser.evaluate("document.getElementById('range-label').textContent")
    browser.evaluate("document.getElementById('reset-range').click()")
    assert browser.evaluate("document.getElementById('range-label').textContent") == "Whole run"
    assert browser.dataset()["range"] == whole_range
    assert int(browser.dataset()["total"]) == worker_total
    assert browser.problems() == []


@needs_chromium
def test_browser_table_sorts_searches_pages(
    browser: Browser, capture: tuple[Path, Path], tmp_path: Path
) -> None:
    cap, prog = capture
    page = tmp_path / "t.html"
    report("table", cap, page)
    browser.open(page)
    assert browser.problems() == []
    state = browser.dataset()
    assert int(state["rows"]) > 0
    rows = browser.evaluate("memrayTable.visibleRows()")
    sizes = browser.evaluate(
        "Array.from(document.querySelectorAll('#table tbody tr')).map(r => r.cells[1].title)"
    )
    assert rows[0][4] == f"peak_function at {prog}:{line_of('# PEAK')}"  # biggest first
    assert sizes[0] == f"{PEAK_SIZE:,} bytes"
    browser.type_text("#search", "leaky_function")
    browser.wait_for("document.body.dataset.filtered === '1'")
    assert browser.evaluate("memrayTable.visibleRows()") == [
        [rows[0][0], "1.18 MiB", "1", "malloc", f"leaky_function at {prog}:{line_of('# LEAK')}"]
    ]
    browser.evaluate("memrayTable.search('')")
    browser.evaluate("document.querySelector('th[data-key=location]').click()")
    assert browser.dataset()["sort"] == "location:asc"
    locations = [r[4] for r in browser.evaluate("memrayTable.visibleRows()")]
    assert locations == sorted(locations)
    browser.evaluate(
        "document.getElementById('page-size').value = '10';"
        "document.getElementById('page-size').dispatchEvent(new Event('change'))"
    )
    if int(browser.dataset()["pages"]) > 1:
        browser.evaluate("document.getElementById('next').click()")
        assert browser.dataset()["page"] == "1"
    # Hostile names are text, not markup.
    assert browser.evaluate("document.querySelectorAll('img, svg').length") == 0
    browser.type_text("#search", "onerror")
    browser.wait_for("document.body.dataset.filtered === '1'")
    assert HOSTILE_NAME in browser.evaluate("memrayTable.visibleRows()")[0][4]
    assert browser.problems() == []
    browser.screenshot(ARTIFACTS / "table.png")


# --- scale: 100,000+ distinct frames ---------------------------------------------------------------


@dataclass
class FakeRecord:
    """Stands in for a grouped AllocationRecord when feeding the renderer directly."""

    stack: list[tuple[str, str, int]]
    size: int
    n_allocations: int = 1
    tid: int = 1
    thread_name: str = "0x1 (MainThread)"
    allocator: int = 6
    intervals: list = field(default_factory=list)

    def stack_trace(self, max_stacks: int | None = None) -> list[tuple[str, str, int]]:
        return self.stack[:max_stacks] if max_stacks else self.stack

    hybrid_stack_trace = stack_trace


@dataclass
class FakeMetadata:
    command_line: str = "python big.py"
    pid: int = 1
    has_native_traces: bool = False


@dataclass
class FakeSnapshot:
    time: int
    rss: int
    heap: int


def big_records(n_frames: int = 120_000) -> list[FakeRecord]:
    """A call tree with n_frames distinct frames: 40 modules x 3000 functions,
    each leaf stack 4 deep plus a shared root."""
    records = []
    for i in range(n_frames // 3):
        module = f"/app/pkg{i % 40}/mod{i % 997}.py"
        stack = [
            (f"leaf_{i}", module, 10 + i % 50),
            (f"middle_{i}", module, 100),
            (f"outer_{i}", module, 200),
            (f"group_{i % 40}", "/app/main.py", 5 + i % 40),
            ("main", "/app/main.py", 1),
        ]
        records.append(FakeRecord(stack=stack, size=1000 + (i * 7919) % 100_000))
    records.append(
        FakeRecord(
            stack=[("needle_function", "/app/needle.py", 7), ("main", "/app/main.py", 1)],
            size=50_000_000,
        )
    )
    return records


def test_big_tree_renders_compactly() -> None:
    from memray.reporters.flamegraph import render_flamegraph

    records = big_records()
    started = time.perf_counter()
    html = render_flamegraph(
        records,
        metadata=FakeMetadata(),
        snapshots=[FakeSnapshot(i, 10 * i, 5 * i) for i in range(100)],
    )
    elapsed = time.perf_counter() - started
    data = embedded(html)
    assert len(data["frames"]["func"]) >= 120_000
    assert len(data["nodes"]["parent"]) == 1 + 1 + 40 + 3 * 40_000 + 1
    assert sum(data["samples"]["size"]) == sum(r.size for r in records)
    assert elapsed < 30, elapsed
    # Strings are stored once: each module name appears once in the table.
    assert data["strings"].count("/app/main.py") == 1


@needs_chromium
def test_browser_big_tree_stays_responsive(browser: Browser, tmp_path: Path) -> None:
    from memray.reporters.flamegraph import render_flamegraph

    page = tmp_path / "big.html"
    page.write_text(
        render_flamegraph(big_records(), metadata=FakeMetadata(), snapshots=[], merge_threads=True),
        encoding="utf-8",
    )
    started = time.monotonic()
    browser.open(page)
    load_seconds = time.monotonic() - started
    assert browser.problems() == []
    state = browser.dataset()
    assert int(state["nodes"]) >= 120_000
    assert load_seconds < 20, load_seconds
    assert int(state["renderMs"]) < 5000, state
    # Only what is visible is drawn.
    assert 0 < int(state["rendered"]) < 20_000
    started = time.monotonic()
    browser.evaluate("memrayFlamegraph.search('needle')")
    assert browser.dataset()["matchedBytes"] == "50000000"
    spot = browser.evaluate("memrayFlamegraph.locate('group_7')")
    browser.click(spot["clientX"], spot["clientY"])
    assert browser.dataset()["zoom"].startswith("group_7")
    browser.evaluate("document.getElementById('hide-uninteresting').click()")
    browser.evaluate("document.getElementById('inverted').click()")
    assert browser.dataset()["inverted"] == "1"
    assert time.monotonic() - started < 10
    assert browser.problems() == []


# --- `memray run` captures: import-system frames --------------------------------------------


def test_import_frames_flagged_and_hidden(tmp_path: Path) -> None:
    (tmp_path / "heavy_module.py").write_text("DATA = [bytearray(300000) for _ in range(4)]\n")
    (tmp_path / "main.py").write_text("import heavy_module\n")
    cap = tmp_path / "run.bin"
    proc = memray_cli("run", "-q", "-o", str(cap), str(tmp_path / "main.py"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = tmp_path / "fg.html"
    data = embedded(report("flamegraph", cap, page))
    heavy = [
        path_of(data, n)
        for n in data["samples"]["node"]
        if n and path_of(data, n)[-1][1].endswith("heavy_module.py")
    ]
    assert heavy, "no allocation made while importing heavy_module"
    fr = data["frames"]
    flags = {frame_of(data, f): fr["flags"][f] for f in range(len(fr["func"]))}
    importlib = [frame for frame in heavy[0] if "importlib" in frame[1]]
    program = [frame for frame in heavy[0] if frame[1].startswith(str(tmp_path))]
    assert importlib and all(flags[frame] & 1 for frame in importlib), heavy[0]
    assert program and not any(flags[frame] for frame in program), heavy[0]
    if CHROMIUM is None:
        return
    b = Browser(CHROMIUM)
    try:
        b.open(page)
        shown = int(b.dataset()["nodes"])
        b.evaluate("document.getElementById('hide-import').click()")
        assert int(b.dataset()["nodes"]) < shown
        prefix = json.dumps(f"<module> at {tmp_path / 'heavy_module.py'}")
        assert b.evaluate(f"memrayFlamegraph.locate({prefix})") is not None
        assert b.problems() == []
    finally:
        b.close()


def test_frame_flags_know_each_interpreters_plumbing() -> None:
    from memray._memray import interpreter_facts

    from memray.reporters._common import (
        FLAG_IMPORT_SYSTEM,
        FLAG_NATIVE,
        FLAG_UNINTERESTING,
        frame_flags,
    )

    facts = interpreter_facts()
    assert [f["since"] for f in facts] == [0x030D0000, 0x030C0000, 0x030B0000]
    assert any(f["since"] <= sys.hexversion < f["since"] + 0x10000 for f in facts)
    lib = f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}"
    cases = {
        ("_find_and_load", "<frozen importlib._bootstrap>"): FLAG_IMPORT_SYSTEM,
        ("exec_module", "<frozen importlib._bootstrap_external>"): FLAG_IMPORT_SYSTEM,
        ("_call_with_frames_removed", f"{lib}/importlib/_bootstrap.py"): FLAG_IMPORT_SYSTEM,
        ("_run_code", "<frozen runpy>"): FLAG_UNINTERESTING,
        ("_run_module_as_main", f"{lib}/runpy.py"): FLAG_UNINTERESTING,
        ("main", "/home/me/app/myrunpy.py"): 0,
        ("load", "/home/me/app/importlib_helpers.py"): 0,
        ("import_name", "Python/ceval.c"): FLAG_IMPORT_SYSTEM | FLAG_NATIVE,
    }
    for (function, file), flags in cases.items():
        assert frame_flags(function, file, native_traces=True) == flags, (function, file)


ARENA_WARNING = "Report generated using <code>--leaks</code> with an arena allocator"


@pytest.mark.parametrize("reporter", ["flamegraph", "table"])
def test_leaks_of_untraced_pymalloc_carry_memray_1x_warning(tmp_path: Path, reporter: str) -> None:
    (tmp_path / "prog.py").write_text("keep = [bytearray(100) for _ in range(10)]\n")
    runs = {
        "plain.bin": ([], {}),
        "traced.bin": (["--trace-python-allocators"], {}),
        "malloc.bin": ([], {"PYTHONMALLOC": "malloc"}),
    }
    for name, (flags, env) in runs.items():
        proc = subprocess.run(
            [sys.executable, "-m", "memray", "run", "-q", *flags, "-o", name, "prog.py"],
            cwd=tmp_path,
            env=dict(os.environ, **env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "report.html"
    # pymalloc without its calls traced: leaks are not to be trusted, and the
    # report says so and how to fix it.
    html = report(reporter, tmp_path / "plain.bin", out, "--leaks")
    assert ARENA_WARNING in html and "--trace-python-allocators" in html
    assert ARENA_WARNING not in report(reporter, tmp_path / "plain.bin", out)
    assert ARENA_WARNING not in report(reporter, tmp_path / "traced.bin", out, "--leaks")
    assert ARENA_WARNING not in report(reporter, tmp_path / "malloc.bin", out, "--leaks")
