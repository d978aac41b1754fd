"""Shared fixtures: the test allocation library and running tracked programs
in a fresh interpreter with a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TIMEOUT = 120


def _build_testalloc(out_dir: Path, name: str = "libtestalloc.so") -> Path:
    out = out_dir / name
    subprocess.run(
        [
            "cc",
            "-shared",
            "-fPIC",
            "-O0",
            "-g",
            "-o",
            str(out),
            str(HERE / "lib" / "testalloc.c"),
            "-lpthread",
        ],
        check=True,
        timeout=TIMEOUT,
    )
    return out


@pytest.fixture(scope="session")
def testalloc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of libtestalloc.so, built once per session."""
    return _build_testalloc(tmp_path_factory.mktemp("lib"))


@pytest.fixture(scope="session")
def testalloc_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, separately named copy, for loading after tracking starts."""
    return _build_testalloc(tmp_path_factory.mktemp("lib2"), "libtestalloc_late.so")


def run_python(
    code: str, cwd: Path, *, env: dict | None = None, check: bool = True, timeout: int = TIMEOUT
) -> subprocess.CompletedProcess:
    """Runs code (dedented) as a script file in a fresh interpreter."""
    script = cwd / "prog.py"
    script.write_text(textwrap.dedent(code))
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def line_of(code: str, marker: str) -> int:
    """1-based line number of the line holding marker in dedented code."""
    for i, line in enumerate(textwrap.dedent(code).splitlines(), 1):
        if marker in line:
            return i
    raise ValueError(marker)
