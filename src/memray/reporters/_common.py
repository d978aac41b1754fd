"""Helpers shared by the HTML reporters: safe embedding of program strings,
frame classification (import system, uninteresting), source lines, templates.

Every string that comes from the tracked program reaches a page either through
Jinja's autoescaping or through ``dumps_for_html``; nothing else is allowed.
"""

from __future__ import annotations

import json
import linecache
import os
import re
import stat
import sys
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol

import jinja2

from memray._memray import interpreter_facts

Frame = tuple[str, str, int]

_HERE = Path(__file__).parent
_ASSETS = _HERE / "assets"
_TEMPLATES = _HERE / "templates"

# Bits of the per-frame flags embedded in the flame graph data.
FLAG_IMPORT_SYSTEM = 1
FLAG_UNINTERESTING = 2
FLAG_NATIVE = 4

# Longest source line embedded in a page; longer ones are cut (generated code
# can have megabyte-long lines and only the start fits in a tooltip anyway).
MAX_SOURCE_LINE = 240

_MEMRAY_DIR = str(Path(__file__).resolve().parent.parent) + os.sep

_CPYTHON_SOURCE = re.compile(r"(Include|Objects|Modules|Python|Programs|cpython)[^/]*/.*\.[ch]$")
_CPYTHON_CALL_SYMBOLS = frozenset(
    {
        "PyObject_Call",
        "cfunction_call",
        "cfunction_vectorcall_O",
        "method_vectorcall",
        "methoddescr_call",
        "slot_tp_call",
        "type_call",
        "wrapper_call",
        "wrapperdescr_call",
        "function_code_fastcall",
        "do_call_core",
    }
)


class Record(Protocol):
    """What the reporters need from a grouped AllocationRecord."""

    tid: int
    size: int
    n_allocations: int
    allocator: int
    thread_name: str

    def stack_trace(self, max_stacks: int | None = None) -> list[Frame]: ...

    def hybrid_stack_trace(self, max_stacks: int | None = None) -> list[Frame]: ...


def record_stack(record: Record, native: bool) -> list[Frame]:
    """The record's stack, innermost frame first (hybrid when native traces exist)."""
    return list(record.hybrid_stack_trace() if native else record.stack_trace())


def dumps_for_html(obj: Any) -> str:
    """JSON text that is safe inside a <script> element.

    '<', '>' and '&' only ever occur inside JSON strings, where their \\u
    escapes mean the same; with them gone no '</script>' or '<!--' can end
    the element early. U+2028/9 are escaped for old JavaScript parsers.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@cache
def _asset(name: str) -> str:
    text = (_ASSETS / name).read_text(encoding="utf-8")
    # Assets are inlined into <script>/<style>; they must not close them.
    if "</script" in text.lower() or "</style" in text.lower():
        raise RuntimeError(f"asset {name} would close its element")
    return text


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["asset"] = _asset
    return env


def render_template(name: str, **context: Any) -> str:
    """Renders templates/<name> with autoescaping; ``data`` goes in as safe JSON."""
    data = context.pop("data")
    return _environment().get_template(name).render(data_json=dumps_for_html(data), **context)


def _interpreter_files(key: str) -> tuple[str, ...]:
    """The union over every supported CPython (pyframe.h) of one fact."""
    return tuple(sorted({name for facts in interpreter_facts() for name in facts[key]}))


_IMPORT_FILES = _interpreter_files("import_files")
_IMPORT_NATIVE = frozenset(_interpreter_files("import_native"))
_RUNPY_FILES = _interpreter_files("runpy_files")


def _names_file(file: str, names: tuple[str, ...]) -> bool:
    """file is one of names: itself for "<frozen ...>" names, else by its tail."""
    return any(file == n or (not n.startswith("<") and file.endswith("/" + n)) for n in names)


def is_import_system(function: str, file: str) -> bool:
    if _names_file(file, _IMPORT_FILES):
        return True
    return function in _IMPORT_NATIVE and file.endswith("ceval.c")


def is_cpython_internal(function: str, file: str) -> bool:
    """A native frame of the interpreter's own call machinery (eval loop, vectorcall)."""
    candidate = (
        function.startswith(("PyEval", "_PyEval", "_Py", "PyObject_Vectorcall"))
        or "vectorcall" in function.lower()
        or function in _CPYTHON_CALL_SYMBOLS
    )
    return candidate and (
        _CPYTHON_SOURCE.search(file) is not None
        or file.endswith(("python", "python3"))
        or "libpython" in file
    )


def is_uninteresting(function: str, file: str) -> bool:
    """Frames that are plumbing rather than the program: runpy, memray itself,
    the interpreter's call machinery in native traces."""
    if _names_file(file, _RUNPY_FILES):
        return True
    if file.startswith(_MEMRAY_DIR):
        return True
    return is_cpython_internal(function, file)


def is_native(file: str) -> bool:
    return not (file.endswith((".py", ".pyw")) or file.startswith("<"))


def frame_flags(function: str, file: str, native_traces: bool) -> int:
    flags = 0
    if is_import_system(function, file):
        flags |= FLAG_IMPORT_SYSTEM
    if is_uninteresting(function, file):
        flags |= FLAG_UNINTERESTING
    if native_traces and is_native(file):
        flags |= FLAG_NATIVE
    return flags


# Files already found unreadable: linecache keeps the readable ones, but it
# would look for a missing file again (along sys.path) for every frame.
_UNREADABLE: set[str] = set()


# A larger "source file" is not one (and reading it would cost too much).
MAX_SOURCE_FILE = 64 << 20


def _only_regular_files(file: str) -> bool:
    """Whether every file linecache could open for this name is a regular
    file of sensible size: names come from a capture, which is untrusted, and
    reading a FIFO would block, /dev/zero would never end."""
    candidates = [file] if os.path.isabs(file) else [os.path.join(d, file) for d in sys.path]
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SOURCE_FILE:
            return False
    return True


def _source_lines(file: str) -> list[str]:
    """The file's lines, or [] when it is not a readable text file here.

    Code that lives in memory only (an IPython cell, a notebook's, anything
    registered in linecache under a "<...>" name) has its lines in linecache's
    cache, as tracebacks find them. Other relative names are only looked up
    (along sys.path, as tracebacks do) for Python files: a native frame's
    "malloc.c" must not match a stranger.
    """
    in_memory = file in linecache.cache
    if not in_memory and (
        file in _UNREADABLE
        or file.startswith("<")
        or not (os.path.isabs(file) or file.endswith((".py", ".pyw")))
    ):
        return []
    if not _only_regular_files(file):
        _UNREADABLE.add(file)
        return []
    try:
        lines = linecache.getlines(file)
    except (OSError, UnicodeError, ValueError, MemoryError):
        lines = []
    if not lines and not in_memory:
        _UNREADABLE.add(file)
    return lines


def source_line(file: str, line: int) -> str:
    """The stripped source line, or '' when the file is not readable here."""
    if line <= 0 or not file:
        return ""
    lines = _source_lines(file)
    if line > len(lines):
        return ""
    text = lines[line - 1].strip()
    if "\x00" in text:  # a binary file: nothing worth showing
        return ""
    return text[:MAX_SOURCE_LINE]


class StringTable:
    """Deduplicated strings, referenced by index from the embedded data."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self.strings)
            self.strings.append(text)
        return index


def format_location(frame: Frame | None) -> str:
    if frame is None:
        return "???"
    function, file, line = frame
    return f"{function} at {file}:{line}" if line > 0 else f"{function} at {file}"


def iter_snapshots(snapshots: Iterable[Any]) -> dict[str, list[int]]:
    """Columnar form of MemorySnapshot(time ms, rss, heap) samples; with the
    split of RSS recorded (in any sample), also anon, file, shared and mapped
    (MemorySnapshot's anon_rss, file_rss, shared_rss, mapped_heap)."""
    columns: dict[str, list[int]] = {"time": [], "rss": [], "heap": []}
    split: dict[str, list[int]] = {"anon": [], "file": [], "shared": [], "mapped": []}
    any_split = False
    for snapshot in snapshots:
        columns["time"].append(int(snapshot.time))
        columns["rss"].append(int(snapshot.rss))
        columns["heap"].append(int(snapshot.heap))
        anon = int(getattr(snapshot, "anon_rss", 0))
        file = int(getattr(snapshot, "file_rss", 0))
        shared = int(getattr(snapshot, "shared_rss", 0))
        any_split = any_split or anon + file + shared > 0
        split["anon"].append(anon)
        split["file"].append(file)
        split["shared"].append(shared)
        split["mapped"].append(int(getattr(snapshot, "mapped_heap", 0)))
    if any_split:
        columns.update(split)
    return columns


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


_KIND_TITLES = {
    "high_water_mark": "peak memory usage",
    "leaks": "leaked memory",
    "temporary": "temporary allocations",
}


def report_title(kind: str, temporary_threshold: int = 1) -> str:
    """What an HTML report shows, in words: "leaked memory", ..."""
    title = _KIND_TITLES.get(kind, kind)
    if kind == "temporary":
        title += f" (threshold {temporary_threshold})"
    return title


def arena_leaks_warning(kind: str, metadata: Any) -> bool:
    """Whether a report needs memray 1.x's warning: leaks from a capture made
    with pymalloc active but without trace_python_allocators count the memory
    pymalloc keeps in its arenas for reuse as leaked."""
    allocator = getattr(metadata, "python_allocator", "")
    name = str(getattr(allocator, "name", allocator)).lower()
    return (
        kind == "leaks"
        and name == "pymalloc"
        and not getattr(metadata, "trace_python_allocators", False)
    )


def describe_metadata(metadata: Any) -> dict[str, Any]:
    """Display strings for a capture's Metadata (escaped later by the template);
    ``processes`` lists a merged capture's processes, one string each."""

    def get(name: str, default: Any = "") -> Any:
        return getattr(metadata, name, default)

    start, end = get("start_time", None), get("end_time", None)
    duration = ""
    try:
        duration = f"{(end - start).total_seconds():.3f} s"
    except (TypeError, AttributeError):
        pass
    allocator = get("python_allocator", "")
    return {
        "command_line": str(get("command_line", "")),
        "pid": str(get("pid", "")),
        "parent_pid": str(get("parent_pid", 0) or ""),
        "processes": [
            f"{p.pid} (parent {p.parent_pid or '-'}, +{p.start_offset_ms / 1000:.3f} s): "
            f"{p.command_line}"
            for p in get("processes", ()) or ()
        ],
        "start_time": str(start or ""),
        "end_time": str(end or ""),
        "duration": duration,
        "total_allocations": f"{int(get('total_allocations', 0) or 0):,}",
        "peak_memory": format_bytes(int(get("peak_memory", 0) or 0)),
        "python_allocator": str(getattr(allocator, "name", allocator)).lower(),
        "native_traces": "yes" if get("has_native_traces", False) else "no",
        # A sampled capture: every size shown is an estimate.
        "sample_every": format_bytes(int(get("sample_every", 0) or 0))
        if get("sample_every", 0)
        else "",
    }
