"""The self-contained wheel of the running CPython: installed into a fresh venv
with ``pip install --only-binary=:all:``, its extension loads libdw, libelf,
libunwind and libzstd from inside the installed wheel (not from the system),
and ``memray run --native`` and reports work from it, native symbols resolved.

``make test`` builds the wheels first (``make wheel``) and points
MEMRAY_TEST_WHEEL_DIR at dist/; run alone, the test builds its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TIMEOUT
from test_native import build_nativelib

REPO = Path(__file__).resolve().parent.parent
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
VENDORED = ("libdw", "libelf", "libunwind", "libzstd")
INSTALL_TIMEOUT = 600


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def _built_wheel(out: Path) -> Path:
    """Builds and repairs a wheel for this interpreter, as `make wheel` does."""
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent))
    if auditwheel is None:
        pytest.fail("auditwheel is not installed next to this interpreter (make installs it)")
    raw = out / "raw"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps"]
        + [f"-Cbuild-dir={out / 'build'}", "-w", str(raw), str(REPO)],
        timeout=INSTALL_TIMEOUT,
    )
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    _run(
        [auditwheel, "repair", "-w", str(out), *map(str, raw.glob("*.whl"))],
        env=env,
        timeout=INSTALL_TIMEOUT,
    )
    return _only_wheel(out)


def _only_wheel(directory: Path) -> Path:
    wheels = sorted(directory.glob(f"memray-*-{TAG}-{TAG}-manylinux_*.whl"))
    assert len(wheels) == 1, f"want one {TAG} manylinux wheel in {directory}: {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel (and its pure-Python dependencies)."""
    given = os.environ.get("MEMRAY_TEST_WHEEL_DIR")
    if given:
        wheel = _only_wheel(REPO / given)
    else:
        wheel = _built_wheel(tmp_path_factory.mktemp("wheel"))
    assert re.fullmatch(rf"memray-[\d.]+-{TAG}-{TAG}-manylinux_\d+_\d+_x86_64\.whl", wheel.name)
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=TIMEOUT)
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--only-binary=:all:"]
        + [str(wheel)],
        timeout=INSTALL_TIMEOUT,
    )
    return venv


def _extension(venv: Path) -> Path:
    py = venv / "bin" / "python"
    proc = _run([str(py), "-c", "import memray._memray as m; print(m.__file__)"], timeout=TIMEOUT)
    return Path(proc.stdout.strip())


def test_extension_loads_the_vendored_libraries(wheel_venv: Path) -> None:
    ext = _extension(wheel_venv)
    # Installed, not this checkout's build.
    assert ext.is_relative_to(wheel_venv), ext
    libs_dir = ext.parent.parent / "memray.libs"
    assert libs_dir.is_dir()
    ldd = _run(["ldd", str(ext)], timeout=TIMEOUT).stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    assert "not found" not in ldd, ldd
    for lib in VENDORED:
        names = [name for name in resolved if name.startswith(lib + "-") or name.startswith(lib)]
        assert names, f"{lib} is not a dependency of the extension:\n{ldd}"
        for name in names:
            path = Path(resolved[name])
            assert path.parent.resolve() == libs_dir.resolve(), f"{name} => {path}"
    # Nothing of the vendored set comes from the system.
    assert not re.search(r"=> /(usr/)?lib\S*/(libdw|libelf|libunwind|libzstd)\.so", ldd), ldd


def test_run_native_and_report_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    nativelib = build_nativelib(tmp_path)
    prog = tmp_path / "prog.py"
    prog.write_text(
        textwrap.dedent(
            """
            import ctypes, os
            lib = ctypes.CDLL(os.environ["NATIVELIB"])
            lib.nl_alloc.restype = ctypes.c_void_p
            lib.nl_alloc_cxx.restype = ctypes.c_void_p

            def python_caller():
                return lib.nl_alloc(123457), lib.nl_alloc_cxx(123458)

            keep = python_caller()
            """
        )
    )
    py = str(wheel_venv / "bin" / "python")
    env = dict(os.environ, NATIVELIB=str(nativelib))
    # No PYTHONPATH or checkout on the path: the venv's memray only.
    env.pop("PYTHONPATH", None)
    out = tmp_path / "out.bin"
    _run(
        [py, "-m", "memray", "run", "--native", "-q", "-o", str(out), str(prog)],
        cwd=tmp_path,
        env=env,
        timeout=TIMEOUT,
    )
    summary = _run([py, "-m", "memray", "summary", str(out)], cwd=tmp_path, timeout=TIMEOUT)
    assert "inlined_alloc" in summary.stdout, summary.stdout
    assert "memtest::Pool::grab(unsigned long)" in summary.stdout, summary.stdout
    assert "python_caller" in summary.stdout, summary.stdout
    html = tmp_path / "flame.html"
    _run(
        [py, "-m", "memray", "flamegraph", "-o", str(html), str(out)],
        cwd=tmp_path,
        timeout=TIMEOUT,
    )
    assert "inlined_alloc" in html.read_text()
