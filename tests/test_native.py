"""Native stacks: C frames inside an extension, symbolized at report time.

A test library built with -g (a static inline function that is inlined, and
C++ code in a namespace) allocates from Python through ctypes; the native and
hybrid stacks are asserted exactly: function names, files, lines, the inlined
frame and the demangled C++ name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TIMEOUT, line_of, run_python

from memray import AllocatorType, FileReader, compute_statistics
from memray.reporters._text import size_fmt

LIB = Path(__file__).parent / "lib"


def _line(path: Path, marker: str) -> int:
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if marker in text:
            return i
    raise ValueError(marker)


def build_nativelib(out_dir: Path, name: str = "libnative.so") -> Path:
    out = out_dir / name
    objs = []
    for src, compiler in (("nativelib.c", "cc"), ("nativelib_cxx.cpp", "c++")):
        obj = out_dir / (src + ".o")
        subprocess.run(
            [
                compiler,
                "-c",
                "-fPIC",
                "-g",
                "-O1",
                "-fno-omit-frame-pointer",
                "-o",
                str(obj),
                str(LIB / src),
            ],
            check=True,
            timeout=TIMEOUT,
        )
        objs.append(str(obj))
    subprocess.run(["c++", "-shared", "-o", str(out), *objs], check=True, timeout=TIMEOUT)
    return out


@pytest.fixture(scope="module")
def nativelib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_nativelib(tmp_path_factory.mktemp("native"))


CODE = """
import ctypes, os, sys
import memray
lib = ctypes.CDLL(os.environ["NATIVELIB"])
lib.nl_alloc.restype = ctypes.c_void_p
lib.nl_alloc_cxx.restype = ctypes.c_void_p

def python_caller():
    return lib.nl_alloc(123457)  # PY_CALL

def python_caller_cxx():
    return lib.nl_alloc_cxx(123458)  # PY_CALL_CXX

with memray.Tracker("out.bin", native_traces=True):
    a = python_caller()  # PY_OUTER
    b = python_caller_cxx()  # PY_OUTER_CXX
"""


def test_native_and_hybrid_stacks(tmp_path: Path, nativelib: Path) -> None:
    run_python(CODE, tmp_path, env={"NATIVELIB": str(nativelib)})
    c_src = str(LIB / "nativelib.c")
    cxx_src = str(LIB / "nativelib_cxx.cpp")
    script = str(tmp_path / "prog.py")
    with FileReader(tmp_path / "out.bin") as reader:
        assert reader.metadata.has_native_traces
        recs = {
            r.size: r for r in reader.get_leaked_allocation_records() if r.size in (123457, 123458)
        }
        assert set(recs) == {123457, 123458}
        rec = recs[123457]
        assert rec.allocator == AllocatorType.MALLOC
        native = rec.native_stack_trace()
        assert native[:2] == [
            ("inlined_alloc", c_src, _line(LIB / "nativelib.c", "NL_INLINED")),
            ("nl_alloc", c_src, _line(LIB / "nativelib.c", "NL_ENTRY")),
        ]
        assert any(f[0] == "_PyEval_EvalFrameDefault" for f in native)
        hybrid = rec.hybrid_stack_trace()
        assert hybrid[:2] == native[:2]
        py_frames = [f for f in hybrid if f[1] == script]
        assert py_frames == [
            ("python_caller", script, line_of(CODE, "# PY_CALL")),
            ("<module>", script, line_of(CODE, "# PY_OUTER")),
        ]
        assert not any(f[0] == "_PyEval_EvalFrameDefault" for f in hybrid)
        cxx = recs[123458].native_stack_trace()
        assert cxx[:3] == [
            (
                "memtest::Pool::grab(unsigned long)",
                cxx_src,
                _line(LIB / "nativelib_cxx.cpp", "NL_CXX_GRAB"),
            ),
            ("nl_cxx_alloc", cxx_src, _line(LIB / "nativelib_cxx.cpp", "NL_CXX_ENTRY")),
            ("nl_alloc_cxx", c_src, _line(LIB / "nativelib.c", "NL_CXX_CALL")),
        ]


def test_dlclose_and_reload_at_same_address(tmp_path: Path, nativelib: Path) -> None:
    other = build_nativelib(tmp_path, "libnative_other.so")
    code = """
    import ctypes, _ctypes, os
    import memray

    def load_alloc_close(path, size):
        lib = ctypes.CDLL(path)
        lib.nl_alloc.restype = ctypes.c_void_p
        p = lib.nl_alloc(size)
        handle = lib._handle
        del lib
        _ctypes.dlclose(handle)
        return p

    with memray.Tracker("out.bin", native_traces=True):
        load_alloc_close(os.environ["LIB_A"], 111111)
        load_alloc_close(os.environ["LIB_B"], 222222)
    """
    run_python(code, tmp_path, env={"LIB_A": str(nativelib), "LIB_B": str(other)})
    with FileReader(tmp_path / "out.bin") as reader:
        recs = {
            r.size: r for r in reader.get_leaked_allocation_records() if r.size in (111111, 222222)
        }
        assert recs[111111].native_segment_generation < recs[222222].native_segment_generation
        for size in (111111, 222222):
            frames = recs[size].native_stack_trace()
            assert frames[1][0] == "nl_alloc", frames[:3]
            assert frames[1][1] == str(LIB / "nativelib.c")


def test_deleted_library_gives_unknown_frames(tmp_path: Path) -> None:
    lib = build_nativelib(tmp_path, "libnative_gone.so")
    run_python(CODE, tmp_path, env={"NATIVELIB": str(lib)})
    lib.unlink()
    with FileReader(tmp_path / "out.bin") as reader:
        recs = [r for r in reader.get_leaked_allocation_records() if r.size == 123457]
        frames = recs[0].native_stack_trace()
    assert frames[0][0] == "<unknown>"
    assert frames[0][1] == str(lib)
    assert any(f[0] == "_PyEval_EvalFrameDefault" for f in frames)


def test_native_threads_have_their_own_stacks(tmp_path: Path, testalloc: Path) -> None:
    code = """
    import ctypes, os
    import memray
    lib = ctypes.CDLL(os.environ["TESTALLOC"])
    with memray.Tracker("out.bin", native_traces=True):
        lib.ta_run_pthread(31337, 1, b"nthread")
    """
    run_python(code, tmp_path, env={"TESTALLOC": str(testalloc)})
    with FileReader(tmp_path / "out.bin") as reader:
        recs = [
            r for r in reader.get_leaked_allocation_records(merge_threads=False) if r.size == 31337
        ]
    assert len(recs) == 1
    assert recs[0].thread_name == "nthread"
    frames = recs[0].native_stack_trace()
    assert frames[0][0] == "thread_main"
    assert recs[0].stack_trace() == []


def test_terminal_reporters_show_native_frames(tmp_path: Path, nativelib: Path) -> None:
    run_python(CODE, tmp_path, env={"NATIVELIB": str(nativelib)})
    for command in (["summary"], ["tree"]):
        proc = subprocess.run(
            [sys.executable, "-m", "memray", *command, str(tmp_path / "out.bin")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert proc.returncode == 0, proc.stderr
        assert "inlined_alloc" in proc.stdout, (command, proc.stdout)
        assert "memtest::Pool::grab(unsigned long)" in proc.stdout, (command, proc.stdout)
        assert "python_caller" in proc.stdout


def test_stats_top_locations_name_the_innermost_native_frame(
    tmp_path: Path, nativelib: Path
) -> None:
    run_python(CODE, tmp_path, env={"NATIVELIB": str(nativelib)})
    c_src = str(LIB / "nativelib.c")
    inlined = f"inlined_alloc:{c_src}:{_line(LIB / 'nativelib.c', 'NL_INLINED')}"
    proc = subprocess.run(
        [sys.executable, "-m", "memray", "stats", str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    by_size = proc.stdout.split("(by size):")[1].split("(by number of allocations):")[0]
    assert f"- {inlined} -> {size_fmt(123457, base=1000)}" in by_size, proc.stdout
    assert "memtest::Pool::grab(unsigned long)" in by_size, proc.stdout
    stats = compute_statistics(tmp_path / "out.bin", num_largest=1000)
    where = {loc: size for loc, size in stats.top_locations_by_size}
    assert where[("inlined_alloc", c_src, _line(LIB / "nativelib.c", "NL_INLINED"))] >= 123457
    # Every allocation is counted once, at one location.
    assert sum(where.values()) == stats.total_memory_allocated
    assert sum(n for _, n in stats.top_locations_by_count) == stats.total_num_allocations


DEEP_CODE = """
import ctypes, os
import memray
lib = ctypes.CDLL(os.environ["NATIVELIB"])
lib.nl_recurse.restype = ctypes.c_void_p

def deep(depth):
    return lib.nl_recurse(depth, 70000 + depth)  # PY_DEEP

for _ in range(20):  # the interpreter specializes the call: same path below
    deep(1)
with memray.Tracker("out.bin", native_traces=True):
    for depth in (10, 3000, 10000):
        deep(depth)
"""


def test_deep_native_stacks_are_kept_whole(tmp_path: Path, nativelib: Path) -> None:
    # memray 1.x keeps every frame: 3001 and 10001 nl_recurse frames, and the
    # same frames outside them as for a shallow stack.
    run_python(DEEP_CODE, tmp_path, env={"NATIVELIB": str(nativelib)})
    c_src = str(LIB / "nativelib.c")
    alloc_line = _line(LIB / "nativelib.c", "NL_RECURSE_ALLOC")
    call_line = _line(LIB / "nativelib.c", "NL_RECURSE_CALL")
    script = str(tmp_path / "prog.py")
    with FileReader(tmp_path / "out.bin") as reader:
        recs = {
            r.size - 70000: r
            for r in reader.get_leaked_allocation_records()
            if r.size - 70000 in (10, 3000, 10000)
        }
        assert set(recs) == {10, 3000, 10000}
        outer = None
        for depth, rec in sorted(recs.items()):
            native = rec.native_stack_trace()
            assert native[0] == ("nl_recurse", c_src, alloc_line)
            assert native[1 : depth + 1] == [("nl_recurse", c_src, call_line)] * depth
            assert native[depth + 1][0] != "nl_recurse"
            # Outside the recursion: the same frames whatever its depth.
            if outer is None:
                outer = native[depth + 1 :]
            assert native[depth + 1 :] == outer
            hybrid = rec.hybrid_stack_trace()
            assert hybrid[: depth + 1] == native[: depth + 1]
            assert ("deep", script, line_of(DEEP_CODE, "# PY_DEEP")) in hybrid
            assert len(rec.native_stack_trace(max_stacks=5)) == 5


def _names(frames: list) -> list:
    return [f[0] for f in frames]


HYBRID_CODE = """
import ctypes, os, sys, threading
import memray
lib = ctypes.CDLL(os.environ["NATIVELIB"])
lib.nl_alloc.restype = ctypes.c_void_p

def alloc(size):
    lib.nl_alloc(size)  # PY_ALLOC

def track_in_function():
    with memray.Tracker("func.bin", native_traces=True):
        alloc(1001)  # PY_IN_FUNCTION
        t = threading.Thread(target=alloc, args=(1002,))
        t.start()
        t.join()

def track_under_c_call(_):
    with memray.Tracker("map.bin", native_traces=True):
        alloc(1003)  # PY_UNDER_MAP

def outer():
    track_in_function()  # PY_HIDDEN
    list(map(track_under_c_call, [0]))

outer()
with memray.Tracker("module.bin", native_traces=True):
    alloc(1004)  # PY_MODULE
"""


def test_hybrid_stack_ends_as_memray_1x(tmp_path: Path, nativelib: Path) -> None:
    run_python(HYBRID_CODE, tmp_path, env={"NATIVELIB": str(nativelib)})
    script = str(tmp_path / "prog.py")
    alloc_frame = ("alloc", script, line_of(HYBRID_CODE, "# PY_ALLOC"))

    def hybrid(capture: str, size: int) -> list:
        with FileReader(tmp_path / capture) as reader:
            (rec,) = [
                r
                for r in reader.get_leaked_allocation_records(merge_threads=False)
                if r.size == size
            ]
            return rec.hybrid_stack_trace()

    # The Python frames above the `with` are hidden, and so are the native
    # frames that ran them: the stack ends at its outermost shown frame.
    in_function = hybrid("func.bin", 1001)
    assert in_function[0][0] == "inlined_alloc"
    assert in_function[-2:] == [
        alloc_frame,
        ("track_in_function", script, line_of(HYBRID_CODE, "# PY_IN_FUNCTION")),
    ]
    # Also when the frame holding the `with` was called from C (map).
    under_map = hybrid("map.bin", 1003)
    assert under_map[-2:] == [
        alloc_frame,
        ("track_under_c_call", script, line_of(HYBRID_CODE, "# PY_UNDER_MAP")),
    ]
    # Another thread: its Python frames where its interpreter loops ran them,
    # then the thread's native start frames.
    thread = _names(hybrid("func.bin", 1002))
    assert thread[-1] in ("clone3", "__clone3", "clone"), thread
    assert "start_thread" in thread[-3:], thread
    assert thread.index("_bootstrap") < thread.index("start_thread")
    assert thread.index("alloc") < thread.index("run") < thread.index("_bootstrap_inner")
    assert "_PyEval_EvalFrameDefault" not in thread
    # A `with` at module level hides no Python frame: as memray 1.x, the
    # stack goes on to the process's start-up frames.
    module = hybrid("module.bin", 1004)
    names = _names(module)
    i = names.index("<module>")
    assert module[i - 1 : i + 1] == [
        alloc_frame,
        ("<module>", script, line_of(HYBRID_CODE, "# PY_MODULE")),
    ]
    assert names[-1] == "_start", names
    assert "Py_RunMain" in names[i:] or "Py_BytesMain" in names[i:], names


def test_library_loaded_by_relative_path_is_symbolized(tmp_path: Path, nativelib: Path) -> None:
    (tmp_path / "sub").mkdir()
    build_nativelib(tmp_path / "sub", "libnative_rel.so")
    code = """
    import ctypes, os
    import memray
    os.chdir("sub")
    lib = ctypes.CDLL("./libnative_rel.so")
    lib.nl_alloc.restype = ctypes.c_void_p
    os.chdir("/")  # the relative name no longer leads to the file
    with memray.Tracker(os.environ["OUT"], native_traces=True):
        lib.nl_alloc(123321)
    """
    run_python(code, tmp_path, env={"OUT": str(tmp_path / "out.bin")})
    with FileReader(tmp_path / "out.bin") as reader:
        (rec,) = [r for r in reader.get_leaked_allocation_records() if r.size == 123321]
        native = rec.native_stack_trace()
    c_src = str(LIB / "nativelib.c")
    assert native[:2] == [
        ("inlined_alloc", c_src, _line(LIB / "nativelib.c", "NL_INLINED")),
        ("nl_alloc", c_src, _line(LIB / "nativelib.c", "NL_ENTRY")),
    ]


@pytest.mark.parametrize("tag", ["RPATH", "RUNPATH", "LD_LIBRARY_PATH"])
def test_dlopen_by_bare_name_searches_the_callers_paths(tmp_path: Path, tag: str) -> None:
    # libdlopen_caller.so dlopens libdlopen_helper.so by its bare name; the
    # helper lives only in $ORIGIN/sub, named by the caller's RPATH or RUNPATH,
    # or by LD_LIBRARY_PATH (the caller then names no path of its own).
    (tmp_path / "sub").mkdir()
    helper = tmp_path / "sub" / "libdlopen_helper.so"
    caller = tmp_path / "libdlopen_caller.so"
    flags = ["-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer"]
    subprocess.run(
        ["cc", *flags, "-o", str(helper), str(LIB / "dlopen_helper.c")],
        check=True,
        timeout=TIMEOUT,
    )
    dtags = "--disable-new-dtags" if tag == "RPATH" else "--enable-new-dtags"
    paths = [] if tag == "LD_LIBRARY_PATH" else [f"-Wl,{dtags},-rpath,$ORIGIN/sub"]
    subprocess.run(
        ["cc", *flags, *paths, "-o", str(caller), str(LIB / "dlopen_caller.c"), "-ldl"],
        check=True,
        timeout=TIMEOUT,
    )
    dynamic = subprocess.run(
        ["readelf", "-d", str(caller)], capture_output=True, text=True, check=True
    ).stdout
    if tag == "LD_LIBRARY_PATH":
        assert "PATH)" not in dynamic
    else:
        assert f"({tag})" in dynamic and "$ORIGIN/sub" in dynamic
    code = """
    import ctypes, os
    import memray
    lib = ctypes.CDLL(os.environ["CALLER"])
    lib.dc_load_and_alloc.restype = ctypes.c_void_p
    lib.dc_error.restype = ctypes.c_char_p
    with memray.Tracker("out.bin", native_traces=True):
        p = lib.dc_load_and_alloc(424242)
    assert p, lib.dc_error()
    """
    env = {"CALLER": str(caller)}
    if tag == "LD_LIBRARY_PATH":
        env["LD_LIBRARY_PATH"] = str(tmp_path / "sub")
    run_python(code, tmp_path, env=env)
    with FileReader(tmp_path / "out.bin") as reader:
        (rec,) = [r for r in reader.get_leaked_allocation_records() if r.size == 424242]
        native = rec.native_stack_trace()
    assert native[:2] == [
        ("dh_alloc", str(LIB / "dlopen_helper.c"), _line(LIB / "dlopen_helper.c", "DH_ALLOC")),
        (
            "dc_load_and_alloc",
            str(LIB / "dlopen_caller.c"),
            _line(LIB / "dlopen_caller.c", "DC_CALL"),
        ),
    ]
