"""``%load_ext memray`` and the ``%%memray_flamegraph`` cell magic: in IPython's
InteractiveShell (each test's cells run in a fresh interpreter with a
timeout), in a real Jupyter kernel through nbclient, and the inline output
rendered by headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import TIMEOUT
from test_html_reports import CHROMIUM, Browser, embedded, frame_of, leaf_totals, path_of

pytest.importorskip("IPython", reason="IPython is not installed (pip install ipython)")

SIZE = 3_456_789  # far above anything IPython allocates while running a cell
LEAK = 1_234_567
ANSI = re.compile(r"\x1b\[[0-9;]*m")
INLINE = re.compile(
    r'^<div class="memray-flamegraph"><iframe srcdoc="([^"]*)" title="memray flame graph" '
    r'width="100%" height="600" style="border: 0"></iframe></div>$',
    re.DOTALL,
)

# Runs the cells given as a JSON list (argv[1]) one by one in an
# InteractiveShell and writes, per cell, what it printed, what it raised and
# the HTML it displayed (argv[2]).
SHELL = textwrap.dedent(
    """\
    import json, linecache, sys
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    results = []
    for cell in json.loads(open(sys.argv[1]).read()):
        with capture_output() as cap:
            result = shell.run_cell(cell)
        error = result.error_in_exec or result.error_before_exec
        results.append({
            "stdout": cap.stdout,
            "stderr": cap.stderr,
            "error": None if error is None else [type(error).__name__, str(error)],
            "result": repr(result.result),
            "html": [o.data["text/html"] for o in cap.outputs if "text/html" in o.data],
            "cell": cell,
            "sources": {n: "".join(e[2]) for n, e in linecache.cache.items() if len(e) == 4},
        })
    with open(sys.argv[2], "w") as out:
        json.dump(results, out)
    """
)


def run_cells(tmp_path: Path, *cells: str, load: bool = True) -> list[dict[str, Any]]:
    """Runs the cells (dedented) after ``%load_ext memray`` (unless not
    ``load``), in a fresh interpreter in tmp_path; returns one result per
    cell given."""
    first = ["%load_ext memray"] if load else []
    (tmp_path / "cells.json").write_text(json.dumps(first + [textwrap.dedent(c) for c in cells]))
    (tmp_path / "shell.py").write_text(SHELL)
    proc = subprocess.run(
        [sys.executable, "shell.py", "cells.json", "results.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ, NO_COLOR="1", TERM="dumb"),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    for result in results:
        result["stdout"] = ANSI.sub("", result["stdout"])
        result["stderr"] = ANSI.sub("", result["stderr"])
    if load:
        assert results[0]["error"] is None, results[0]
    return results[len(first) :]


def cell_name(result: dict[str, Any]) -> str:
    """The file name the cell's body was compiled under (IPython's
    "<ipython-input-N-hash>"), the magic's line left out."""
    body = result["cell"].split("\n", 1)[1]
    (name,) = [
        name
        for name, text in result["sources"].items()
        if name.startswith("<ipython-input-") and text == body
    ]
    return name


def result_dirs(tmp_path: Path) -> list[Path]:
    results = tmp_path / "memray-results"
    return sorted(results.iterdir(), key=lambda p: p.stat().st_mtime) if results.exists() else []


def inline_page(result: dict[str, Any]) -> str:
    """The page the one HTML output of a cell holds in its iframe's srcdoc."""
    assert len(result["html"]) == 1, result
    match = INLINE.match(result["html"][0])
    assert match, result["html"][0][:300]
    return html.unescape(match.group(1))


def title_of(page: str) -> str:
    match = re.search(r"<title>(.*?)</title>", page)
    assert match
    return html.unescape(match.group(1))


def records_of(capture: Path, size: int, kind: str = "high_watermark") -> list[tuple]:
    """(size, allocator, count, stack) of the grouped records of that size."""
    import memray

    with memray.FileReader(capture) as reader:
        records = getattr(reader, f"get_{kind}_allocation_records")()
        return [
            (r.size, r.allocator.name, r.n_allocations, r.stack_trace())
            for r in records
            if r.size == size
        ]


PEAK_CELL = f"""\
    %%memray_flamegraph
    from memray._test import MemoryAllocator
    allocator = MemoryAllocator()
    assert allocator.malloc({SIZE})
    allocator.free()
    """


def test_load_ext_registers_the_cell_magic(tmp_path: Path) -> None:
    registered = "'memray_flamegraph' in get_ipython().magics_manager.magics['cell']"
    before, load, after = run_cells(
        tmp_path, registered, "%load_ext memray", registered, load=False
    )
    assert [before["result"], load["result"], after["result"]] == ["False", "None", "True"]
    assert load["error"] is None and load["stdout"] == load["stderr"] == ""


def test_cell_is_tracked_and_the_report_kept_in_memray_results(tmp_path: Path) -> None:
    (result,) = run_cells(tmp_path, PEAK_CELL)
    assert result["error"] is None
    (folder,) = result_dirs(tmp_path)
    assert folder.name.startswith("tmp")
    assert sorted(p.name for p in folder.iterdir()) == ["flamegraph.html", "memray.dump"]
    assert result["stdout"] == f"Results saved to memray-results/{folder.name}/flamegraph.html\n"
    assert result["stderr"] == ""

    # The inline output is the page itself, written to the folder too.
    page = inline_page(result)
    assert page == (folder / "flamegraph.html").read_text(encoding="utf-8")
    assert title_of(page) == "memray flame graph: peak memory usage"

    # The capture: the malloc, exactly, with the cell's frame as the whole stack
    # (no IPython or memray frame above it).
    name = cell_name(result)
    assert records_of(folder / "memray.dump", SIZE) == [
        (SIZE, "MALLOC", 1, [("<module>", name, 3)])
    ]
    # The page: the same, and the cell's source line, read from linecache.
    data = embedded(page)
    assert data["options"]["kind"] == "high_water_mark"
    assert leaf_totals(data)[("<module>", name, 3)] == [SIZE, 1]
    frames = data["frames"]
    index = next(
        i for i in range(len(frames["func"])) if frame_of(data, i) == ("<module>", name, 3)
    )
    assert data["strings"][frames["src"][index]] == f"assert allocator.malloc({SIZE})"


def test_cell_functions_show_as_stacks_with_their_source(tmp_path: Path) -> None:
    (result,) = run_cells(
        tmp_path,
        f"""\
        %%memray_flamegraph --leaks
        from memray._test import MemoryAllocator
        allocator = MemoryAllocator()
        def leak():
            allocator.valloc({LEAK})  # keeps it
        leak()
        """,
    )
    assert result["error"] is None
    (folder,) = result_dirs(tmp_path)
    name = cell_name(result)
    stack = [("leak", name, 4), ("<module>", name, 5)]
    assert records_of(folder / "memray.dump", LEAK, "leaked") == [(LEAK, "VALLOC", 1, stack)]
    page = inline_page(result)
    assert title_of(page) == "memray flame graph: leaked memory"
    data = embedded(page)
    assert data["options"]["kind"] == "leaks"
    node = next(n for n in data["samples"]["node"] if path_of(data, n) == stack[::-1])
    sample = data["samples"]["node"].index(node)
    assert data["samples"]["size"][sample] == LEAK
    sources = {frame_of(data, i): data["strings"][s] for i, s in enumerate(data["frames"]["src"])}
    assert sources[stack[0]] == f"allocator.valloc({LEAK})  # keeps it"
    assert sources[stack[1]] == "leak()"


@pytest.mark.parametrize(
    ("options", "title", "kind", "temporal"),
    [
        ("--leaks", "leaked memory", "leaks", False),
        ("--temporary-allocations", "temporary allocations (threshold 1)", "temporary", False),
        (
            "--temporary-allocation-threshold 3",
            "temporary allocations (threshold 3)",
            "temporary",
            False,
        ),
        ("--temporal", "peak memory usage, over time (temporal)", "high_water_mark", True),
        ("--temporal --leaks", "leaked memory, over time (temporal)", "leaks", True),
    ],
)
def test_report_options_choose_the_report_and_its_title(
    tmp_path: Path, options: str, title: str, kind: str, temporal: bool
) -> None:
    (result,) = run_cells(
        tmp_path, PEAK_CELL.replace("%%memray_flamegraph", f"%%memray_flamegraph {options}")
    )
    assert result["error"] is None, result
    page = inline_page(result)
    assert title_of(page) == f"memray flame graph: {title}"
    data = embedded(page)
    assert data["options"]["kind"] == kind
    assert data["options"]["temporal"] is temporal
    assert ("temporal" in data) is temporal
    name = cell_name(result)
    totals = leaf_totals(data)
    if kind == "high_water_mark" and not temporal:
        assert totals[("<module>", name, 3)] == [SIZE, 1]
    elif kind == "temporary":
        # malloc then free with nothing in between: a temporary allocation.
        assert totals[("<module>", name, 3)] == [SIZE, 1]
    elif kind == "leaks" and not temporal:
        assert ("<module>", name, 3) not in totals  # freed: no leak
    if temporal:
        # The peak over time holds the block; leaks over time do not (freed
        # before any memory sample could see it).
        sizes = [s for s in data["temporal"]["intervals"]["size"] if s == SIZE]
        assert sizes == ([SIZE] if kind == "high_water_mark" else [])


def test_view_options_reach_the_page(tmp_path: Path) -> None:
    sleeper = "%%memray_flamegraph{}\nimport time\ntime.sleep(0.5)\n"
    plain, options = run_cells(
        tmp_path,
        sleeper.format(""),
        sleeper.format(" --split-threads --inverted --max-memory-records 5"),
    )
    for result in (plain, options):
        assert result["error"] is None, result
    plain_data, data = embedded(inline_page(plain)), embedded(inline_page(options))
    assert plain_data["options"]["split_threads"] is False
    assert plain_data["options"]["inverted"] is False
    assert data["options"]["split_threads"] is True
    assert data["options"]["inverted"] is True
    # A memory sample every 10 ms for half a second: the page keeps them all,
    # or every k-th to stay within 5, as `memray flamegraph` does.
    import memray

    plain_folder, folder = result_dirs(tmp_path)
    for capture, page_data, cap in ((plain_folder, plain_data, 10000), (folder, data, 5)):
        with memray.FileReader(capture / "memray.dump") as reader:
            times = [s.time for s in reader.get_memory_snapshots()]
        assert len(times) > 20
        stride = -(-len(times) // cap) if len(times) > cap else 1
        assert page_data["snapshots"]["time"] == times[::stride]
    assert len(data["snapshots"]["time"]) <= 5


def test_tracking_options_reach_the_tracker(tmp_path: Path) -> None:
    import memray

    pymalloc = """\
        %%memray_flamegraph{}
        from memray._test import PymallocDomain, PymallocMemoryAllocator
        allocator = PymallocMemoryAllocator(PymallocDomain.PYMALLOC_MEM)
        assert allocator.malloc(7101)
        """
    plain, traced, native = run_cells(
        tmp_path,
        pymalloc.format(""),
        pymalloc.format(" --trace-python-allocators"),
        PEAK_CELL.replace("%%memray_flamegraph", "%%memray_flamegraph --native"),
    )
    folders = result_dirs(tmp_path)
    assert len(folders) == 3
    captures = [folder / "memray.dump" for folder in folders]
    metadata = []
    for capture in captures:
        with memray.FileReader(capture) as reader:
            metadata.append(reader.metadata)
    assert [m.trace_python_allocators for m in metadata] == [False, True, False]
    assert [m.has_native_traces for m in metadata] == [False, False, True]
    # pymalloc hands a block this large to malloc: without the option that
    # malloc is what is recorded; with it, the pymalloc call (and only it).
    at = lambda result: [("<module>", cell_name(result), 3)]  # noqa: E731
    assert records_of(captures[0], 7101, "leaked") == [(7101, "MALLOC", 1, at(plain))]
    assert records_of(captures[1], 7101, "leaked") == [(7101, "PYMALLOC_MALLOC", 1, at(traced))]
    # Native: the malloc's native stack reaches the test helper's C function,
    # and the page says it has native frames.
    with memray.FileReader(captures[2]) as reader:
        (record,) = [r for r in reader.get_high_watermark_allocation_records() if r.size == SIZE]
        functions = [frame[0] for frame in record.native_stack_trace()]
    assert any("malloc" in f.lower() for f in functions), functions
    assert embedded(inline_page(native))["options"]["native_traces"] is True


def test_follow_fork_keeps_tracking_the_child(tmp_path: Path) -> None:
    (result,) = run_cells(
        tmp_path,
        f"""\
        %%memray_flamegraph --follow-fork
        import os
        from memray._test import MemoryAllocator
        pid = os.fork()
        if pid == 0:
            MemoryAllocator().valloc({LEAK})
            os._exit(0)
        os.waitpid(pid, 0)
        """,
    )
    assert result["error"] is None, result
    (folder,) = result_dirs(tmp_path)
    names = sorted(p.name for p in folder.iterdir())
    child = [n for n in names if n.startswith("memray.dump.")]
    assert names == sorted(["flamegraph.html", "memray.dump", *child]) and len(child) == 1
    cell = cell_name(result)
    assert records_of(folder / child[0], LEAK, "leaked") == [
        (LEAK, "VALLOC", 1, [("<module>", cell, 5)])
    ]
    assert records_of(folder / "memray.dump", LEAK, "leaked") == []


def test_output_and_force(tmp_path: Path) -> None:
    report = tmp_path / "mine.html"
    first, refused, forced = run_cells(
        tmp_path,
        PEAK_CELL.replace("%%memray_flamegraph", "%%memray_flamegraph -o mine.html"),
        "%%memray_flamegraph --output mine.html\nprint('ran')\nx = 1\n",
        PEAK_CELL.replace("%%memray_flamegraph", "%%memray_flamegraph --leaks -o mine.html -f"),
    )
    assert first["error"] is None
    assert first["stdout"] == "Results saved to mine.html\n"
    folders = result_dirs(tmp_path)
    assert [sorted(p.name for p in f.iterdir()) for f in folders] == [["memray.dump"]] * 2
    # Without --force an existing report is not overwritten and the cell not run.
    assert refused["error"] == [
        "UsageError",
        "File already exists, will not overwrite (use -f): mine.html",
    ]
    assert "ran" not in refused["stdout"]
    assert forced["error"] is None
    assert forced["stdout"] == "Results saved to mine.html\n"
    assert title_of(report.read_text()) == "memray flame graph: leaked memory"
    assert report.read_text() == inline_page(forced)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--bogus", "unrecognized arguments: --bogus"),
        (
            "--leaks --temporary-allocations",
            "argument --temporary-allocations: not allowed with argument --leaks",
        ),
        (
            "--temporal --temporary-allocations",
            "Can't create a temporal flame graph of temporary allocations",
        ),
        ("--max-memory-records 0", "argument --max-memory-records: must be 1 or more, not 0"),
        (
            "--temporary-allocation-threshold x",
            "argument --temporary-allocation-threshold: invalid int value: 'x'",
        ),
        ("'unclosed", "No closing quotation"),
    ],
)
def test_bad_options_print_the_usage_and_run_nothing(
    tmp_path: Path, line: str, message: str
) -> None:
    (result, check) = run_cells(
        tmp_path, f"%%memray_flamegraph {line}\nprint('ran')\nran = True\n", "print('ran' in dir())"
    )
    assert result["error"] is None
    assert result["stdout"] == ""
    assert result["stderr"].startswith("usage: %%memray_flamegraph [-h] [--native]")
    assert result["stderr"].endswith(f"\n%%memray_flamegraph: error: {message}\n")
    assert result["html"] == []
    assert not (tmp_path / "memray-results").exists()
    assert check["stdout"] == "False\n"


def test_help_prints_every_option_and_runs_nothing(tmp_path: Path) -> None:
    (result,) = run_cells(tmp_path, "%%memray_flamegraph -h\nprint('CELL RAN')\n")
    assert result["error"] is None
    assert result["stdout"].startswith("usage: %%memray_flamegraph [-h]")
    for option in (
        "--native",
        "--trace-python-allocators",
        "--follow-fork",
        "--leaks",
        "--temporary-allocations",
        "--temporary-allocation-threshold N",
        "--temporal",
        "--split-threads",
        "--inverted",
        "--max-memory-records N",
        "-f, --force",
    ):
        assert f"\n  {option}" in result["stdout"], option
    # argparse names the value once from Python 3.13 on.
    assert re.search(r"\n  -o( OUTPUT)?, --output OUTPUT", result["stdout"])
    assert "CELL RAN" not in result["stdout"]
    assert not (tmp_path / "memray-results").exists()


def test_exception_is_reraised_after_the_report(tmp_path: Path) -> None:
    (result, after) = run_cells(
        tmp_path,
        PEAK_CELL + "raise ValueError('boom')\n",
        "print(allocator is not None)",  # the cell's names stay defined
    )
    assert result["error"] == ["ValueError", "boom"]
    (folder,) = result_dirs(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["flamegraph.html", "memray.dump"]
    name = cell_name(result)
    assert records_of(folder / "memray.dump", SIZE) == [
        (SIZE, "MALLOC", 1, [("<module>", name, 3)])
    ]
    assert inline_page(result) == (folder / "flamegraph.html").read_text(encoding="utf-8")
    # The report came first, then the traceback, which starts at the cell.
    out = result["stdout"]
    assert out.index("Results saved to") < out.index("ValueError")
    assert "raise ValueError('boom')" in out
    # memray's own frames are hidden (__tracebackhide__), as IPython's are.
    assert "_ipython.py" not in out
    assert after["stdout"] == "True\n"


def test_an_active_tracker_refuses_the_magic_and_runs_nothing(tmp_path: Path) -> None:
    start, refused, stop = run_cells(
        tmp_path,
        "import memray\ntracker = memray.Tracker('other.bin')\n_ = tracker.__enter__()\n",
        "%%memray_flamegraph\nran = True\n",
        "tracker.__exit__(None, None, None)\nprint('ran' in dir())\n",
    )
    assert start["error"] is None
    assert refused["error"] == [
        "UsageError",
        "cannot start tracking: No more than one Tracker instance can be active at the same time",
    ]
    assert refused["html"] == []
    assert stop["stdout"] == "False\n"
    assert (tmp_path / "memray-results").is_dir()
    assert result_dirs(tmp_path) == []


def test_a_cell_that_does_not_compile_raises_and_runs_nothing(tmp_path: Path) -> None:
    result, check = run_cells(
        tmp_path, "%%memray_flamegraph\nran = True\nx = )\n", "print('ran' in dir())"
    )
    assert result["error"][0] == "SyntaxError"
    assert check["stdout"] == "False\n"
    assert result["html"] == []
    assert not (tmp_path / "memray-results").exists()


def test_source_lines_come_from_linecache() -> None:
    import linecache

    from memray.reporters._common import source_line

    name = "<ipython-input-7-0123456789ab>"
    linecache.cache[name] = (20, None, ["x = 1\n", "  y = [0] * 100  \n"], name)
    try:
        assert source_line(name, 2) == "y = [0] * 100"
        assert source_line(name, 3) == ""
    finally:
        del linecache.cache[name]
    assert source_line("<ipython-input-8-0123456789ab>", 1) == ""
    assert source_line("<string>", 1) == ""


# --- a real Jupyter kernel ------------------------------------------------------------

NOTEBOOK_CELLS = [
    "%load_ext memray",
    PEAK_CELL.replace("    ", "") + "print('cell done')\n",
]


def execute_notebook(tmp_path: Path) -> Any:
    """Runs NOTEBOOK_CELLS in an ipykernel started from this interpreter (a
    kernelspec of our own, so the test venv's python runs it) via nbclient."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed")
    spec = tmp_path / "jupyter" / "kernels" / "memray-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "memray test",
                "language": "python",
            }
        )
    )
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(
            notebook,
            kernel_name="memray-test",
            timeout=TIMEOUT,
            startup_timeout=TIMEOUT,
            resources={"metadata": {"path": str(work)}},
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook, work


def test_jupyter_kernel_shows_the_flame_graph_inline(tmp_path: Path) -> None:
    notebook, work = execute_notebook(tmp_path)
    outputs = notebook.cells[1].outputs
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    (folder,) = result_dirs(work)
    assert streams == f"cell done\nResults saved to memray-results/{folder.name}/flamegraph.html\n"
    (display,) = [o for o in outputs if o.output_type == "display_data"]
    page = inline_page({"html": [display.data["text/html"]]})
    assert page == (folder / "flamegraph.html").read_text(encoding="utf-8")
    assert title_of(page) == "memray flame graph: peak memory usage"
    # ipykernel names a cell's code after a file in its temporary folder; the
    # page shows the cell's line from linecache all the same.
    data = embedded(page)
    (frame,) = [
        frame_of(data, i)
        for i in range(len(data["frames"]["func"]))
        if data["strings"][data["frames"]["src"][i]] == f"assert allocator.malloc({SIZE})"
    ]
    assert frame[0] == "<module>" and frame[2] == 3
    assert re.fullmatch(r".*/ipykernel_\d+/\d+\.py", frame[1]), frame
    assert leaf_totals(data)[frame] == [SIZE, 1]
    assert records_of(folder / "memray.dump", SIZE) == [(SIZE, "MALLOC", 1, [frame])]


# --- the inline output in a browser ----------------------------------------------------


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_inline_output_renders_in_chromium_without_errors(tmp_path: Path) -> None:
    (result,) = run_cells(tmp_path, PEAK_CELL)
    (output,) = result["html"]
    host = tmp_path / "notebook.html"
    host.write_text(f"<!DOCTYPE html>\n<html><body>{output}</body></html>\n", encoding="utf-8")
    browser = Browser(CHROMIUM)
    try:
        browser.call("Page.navigate", session=True, url=host.resolve().as_uri())
        browser.wait_event("Page.loadEventFired")
        frame = "document.querySelector('.memray-flamegraph iframe').contentDocument"
        browser.wait_for(f"{frame}.body.dataset.ready === '1'")
        assert browser.problems() == []
        assert browser.evaluate(f"{frame}.title") == "memray flame graph: peak memory usage"
        assert int(browser.evaluate(f"{frame}.body.dataset.total")) >= SIZE
        ink = f"""(() => {{
            const c = {frame}.querySelector('#flame');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
            return n;
        }})()"""
        assert browser.evaluate(ink) > 1000
        box = browser.evaluate(
            "JSON.stringify(document.querySelector('.memray-flamegraph iframe')"
            ".getBoundingClientRect())"
        )
        assert json.loads(box)["height"] == 600
        assert browser.problems() == []
    finally:
        browser.close()
