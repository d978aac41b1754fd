"""Tracker(follow_children=True) and memray run --follow-children: every Python
child (fork, multiprocessing fork/spawn/forkserver, subprocess, exec) writes
<file>.<pid>[.<image>] with its parent's pid in the header; nothing outside the
tree is tracked. Each tracked program runs in a fresh interpreter with a
timeout; each child allocates an exact size (valloc, which nothing else calls)
at a known line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TIMEOUT, line_of, run_python

import memray
from memray import AllocatorType, FileReader
from memray._children import ENV_VAR


def vallocs(path: Path) -> list[tuple[int, tuple[str, str, int]]]:
    """(size, innermost frame) of every valloc in a capture, in order."""
    with FileReader(path) as reader:
        return [
            (r.size, r.stack_trace()[0])
            for r in reader.get_allocation_records()
            if r.allocator == AllocatorType.VALLOC
        ]


def metadata(path: Path) -> memray.Metadata:
    with FileReader(path) as reader:
        return reader.metadata


def captures(directory: Path, base: str = "out.bin") -> list[str]:
    return sorted(p.name for p in directory.glob(base + "*"))


POOL = """
import json, multiprocessing, os, sys
import memray
from memray._test import MemoryAllocator

def work(size):
    MemoryAllocator().valloc(size)  # WORK
    return os.getpid(), os.getppid(), size

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with memray.Tracker("out.bin", follow_children=True):
        pool = ctx.Pool(2)
        results = pool.map(work, [40960, 81920, 122880], chunksize=1)
        pool.close()
        pool.join()
        process = ctx.Process(target=work, args=(163840,))
        process.start()
        process.join()
    print(json.dumps({"root": os.getpid(), "results": results, "process": process.pid}))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_each_write_their_capture(tmp_path: Path, method: str) -> None:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(POOL))
    proc = subprocess.run(
        [sys.executable, str(script), method],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    root = out["root"]
    work_frame = ("work", str(script), line_of(POOL, "# WORK"))

    # The root's capture has none of the children's allocations.
    assert vallocs(tmp_path / "out.bin") == []
    assert metadata(tmp_path / "out.bin").parent_pid == 0

    per_worker: dict[int, list[int]] = {}
    parents = {}
    for pid, ppid, size in out["results"]:
        per_worker.setdefault(pid, []).append(size)
        parents[pid] = ppid
    per_worker.setdefault(out["process"], []).append(163840)
    for pid, sizes in per_worker.items():
        capture = tmp_path / f"out.bin.{pid}"
        assert capture.exists(), captures(tmp_path)
        md = metadata(capture)
        assert md.pid == pid
        assert vallocs(capture) == [(size, work_frame) for size in sizes]
        if method == "forkserver":
            # Forked by the fork server, itself a followed child of the root.
            server = parents.get(pid, md.parent_pid)
            assert md.parent_pid == server != root
            server_md = metadata(tmp_path / f"out.bin.{server}")
            assert server_md.parent_pid == root
            assert "multiprocessing.forkserver" in server_md.command_line
        else:
            assert md.parent_pid == root
    # Every other capture of the tree is a pool worker that got no task or a
    # helper of multiprocessing's (resource tracker, fork server): nothing of
    # the work shows there.
    servers = {metadata(tmp_path / f"out.bin.{pid}").parent_pid for pid in per_worker} - {root}
    for name in captures(tmp_path):
        if name == "out.bin" or int(name.split(".")[2]) in per_worker:
            continue
        assert vallocs(tmp_path / name) == []
        assert metadata(tmp_path / name).parent_pid in {root} | servers


CHAIN = """
import os, subprocess, sys
from memray._test import MemoryAllocator

level = int(sys.argv[1])
MemoryAllocator().valloc(4096 * (level + 1))  # LEVEL
print(level, os.getpid(), flush=True)
if level < 3:
    subprocess.run([sys.executable, __file__, str(level + 1)], check=True)
"""


def test_subprocess_chain_records_each_level_and_its_parent(tmp_path: Path) -> None:
    (tmp_path / "chain.py").write_text(textwrap.dedent(CHAIN))
    code = """
    import os, subprocess, sys
    import memray
    with memray.Tracker("out.bin", follow_children=True):
        subprocess.run([sys.executable, "chain.py", "1"], check=True)
    print(0, os.getpid())
    """
    proc = run_python(code, tmp_path)
    pids = {
        int(level): int(pid)
        for level, pid in (line.split() for line in proc.stdout.split("\n") if line)
    }
    assert sorted(pids) == [0, 1, 2, 3]
    assert captures(tmp_path) == sorted(
        ["out.bin"] + [f"out.bin.{pids[level]}" for level in (1, 2, 3)]
    )
    frame = ("<module>", str(tmp_path / "chain.py"), line_of(CHAIN, "# LEVEL"))
    for level in (1, 2, 3):
        capture = tmp_path / f"out.bin.{pids[level]}"
        md = metadata(capture)
        assert (md.pid, md.parent_pid) == (pids[level], pids[level - 1])
        assert "chain.py " + str(level) in md.command_line
        assert vallocs(capture) == [(4096 * (level + 1), frame)]


EXEC = """
import os, sys
from memray._test import MemoryAllocator

image = int(sys.argv[1])
MemoryAllocator().valloc(8192 * (image + 1))  # IMAGE
if image < 2:
    os.execv(sys.executable, [sys.executable, __file__, str(image + 1)])
print(os.getpid(), flush=True)
"""


def test_exec_of_python_keeps_every_image(tmp_path: Path) -> None:
    (tmp_path / "images.py").write_text(textwrap.dedent(EXEC))
    code = """
    import os, subprocess, sys
    import memray
    with memray.Tracker("out.bin", follow_children=True):
        subprocess.run([sys.executable, "images.py", "0"], check=True)
        pid = os.fork()
        if pid == 0:  # a forked child that execs python
            os.execv(sys.executable, [sys.executable, "images.py", "2"])
        os.waitpid(pid, 0)
    print(os.getpid(), pid)
    """
    proc = run_python(code, tmp_path)
    lines = proc.stdout.split()
    child, root, forked = int(lines[0]), int(lines[2]), int(lines[3])
    assert int(lines[1]) == forked
    assert captures(tmp_path) == sorted(
        [
            "out.bin",
            f"out.bin.{child}",
            f"out.bin.{child}.1",
            f"out.bin.{child}.2",
            f"out.bin.{forked}",
            f"out.bin.{forked}.1",
        ]
    )
    frame = ("<module>", str(tmp_path / "images.py"), line_of(EXEC, "# IMAGE"))
    assert vallocs(tmp_path / f"out.bin.{child}") == [(8192, frame)]
    assert vallocs(tmp_path / f"out.bin.{child}.1") == [(16384, frame)]
    assert vallocs(tmp_path / f"out.bin.{child}.2") == [(24576, frame)]
    assert vallocs(tmp_path / f"out.bin.{forked}") == []
    assert vallocs(tmp_path / f"out.bin.{forked}.1") == [(24576, frame)]
    for name in (f"{child}", f"{child}.1", f"{child}.2", f"{forked}", f"{forked}.1"):
        md = metadata(tmp_path / f"out.bin.{name}")
        assert (md.pid, md.parent_pid) == (int(name.split(".")[0]), root)


def test_processes_outside_the_tree_are_not_tracked(tmp_path: Path) -> None:
    code = f"""
    import os, subprocess, sys
    import memray
    from memray._test import MemoryAllocator
    child = "from memray._test import MemoryAllocator; import sys, os; "
    child += "sys.stdin.read(); MemoryAllocator().valloc(12288); print(os.getpid())"
    before = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    with memray.Tracker("out.bin", follow_children=True):
        assert {ENV_VAR!r} in os.environ
        clean = {{k: v for k, v in os.environ.items() if k != {ENV_VAR!r}}}
        untracked = subprocess.run([sys.executable, "-c", child], input="", env=clean,
                                   capture_output=True, text=True, check=True)
        # python -S runs no .pth file (memray itself comes from PYTHONPATH).
        site_dir = os.path.dirname(os.path.dirname(memray.__file__))
        no_site = subprocess.run([sys.executable, "-S", "-c", child], input="",
                                 env=dict(os.environ, PYTHONPATH=site_dir),
                                 capture_output=True, text=True, check=True)
        tracked = subprocess.run([sys.executable, "-c", child], input="",
                                 capture_output=True, text=True, check=True)
        before_out = before.communicate("")[0]
        assert int(before_out) == before.pid
    assert {ENV_VAR!r} not in os.environ
    after = subprocess.run([sys.executable, "-c", child], input="",
                           capture_output=True, text=True, check=True)
    print(before_out.strip(), untracked.stdout.strip(), no_site.stdout.strip(),
          tracked.stdout.strip(), after.stdout.strip())
    """
    proc = run_python(code, tmp_path)
    before, untracked, no_site, tracked, after = (int(x) for x in proc.stdout.split())
    assert captures(tmp_path) == sorted(["out.bin", f"out.bin.{tracked}"])
    assert [size for size, _ in vallocs(tmp_path / f"out.bin.{tracked}")] == [12288]
    assert vallocs(tmp_path / "out.bin") == []
    assert len({before, untracked, no_site, after}) == 4


def test_child_that_starts_its_own_tracker_takes_over(tmp_path: Path) -> None:
    code = """
    import os, subprocess, sys
    import memray
    child = '''
    import os, memray
    from memray._test import MemoryAllocator
    MemoryAllocator().valloc(4096)
    with memray.Tracker("own.bin"):
        MemoryAllocator().valloc(20480)
    MemoryAllocator().valloc(8192)
    print(os.getpid())
    '''
    with memray.Tracker("out.bin", follow_children=True):
        pid = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                             check=True).stdout.strip()
    print(pid)
    """
    proc = run_python(code, tmp_path)
    pid = int(proc.stdout.strip())
    assert [size for size, _ in vallocs(tmp_path / f"out.bin.{pid}")] == [4096]
    assert [size for size, _ in vallocs(tmp_path / "own.bin")] == [20480]


def test_follow_fork_records_the_parent_pid(tmp_path: Path) -> None:
    code = """
    import os
    import memray
    with memray.Tracker("out.bin", follow_fork=True):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    print(os.getpid(), pid)
    """
    proc = run_python(code, tmp_path)
    root, child = (int(x) for x in proc.stdout.split())
    assert metadata(tmp_path / f"out.bin.{child}").parent_pid == root
    assert metadata(tmp_path / "out.bin").parent_pid == 0
    parse = subprocess.run(
        [sys.executable, "-m", "memray", "parse", f"out.bin.{child}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert f"pid={child} parent_pid={root} " in parse.stdout.splitlines()[0]


def test_follow_children_needs_a_file() -> None:
    with pytest.raises(RuntimeError, match="follow_children requires an output file"):
        memray.Tracker(destination=memray.SocketDestination(server_port=1), follow_children=True)


def test_run_follow_children_lists_the_files_written(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(
        textwrap.dedent(
            """
            import subprocess, sys
            for size in (4096, 8192):
                code = f"from memray._test import MemoryAllocator; MemoryAllocator().valloc({size})"
                subprocess.run([sys.executable, "-c", code], check=True)
            """
        )
    )
    (tmp_path / "out.bin.1").write_text("left by an earlier run")
    proc = subprocess.run(
        [sys.executable, "-m", "memray", "run", "--follow-children", "-o", "out.bin", "prog.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    heading = "[memray] Captures written (the program's, then one per child process):"
    listed = proc.stdout.split(heading + "\n", 1)[1].split()
    children = [name for name in captures(tmp_path) if name not in ("out.bin", "out.bin.1")]
    assert len(children) == 2
    assert listed == sorted(["out.bin", *children])
    sizes = sorted(size for name in children for size, _ in vallocs(tmp_path / name))
    assert sizes == [4096, 8192]
    root = metadata(tmp_path / "out.bin").pid
    assert {metadata(tmp_path / name).parent_pid for name in children} == {root}


def test_run_follow_children_refused_with_live(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("pass\n")
    proc = subprocess.run(
        [sys.executable, "-m", "memray", "run", "--live-remote", "--follow-children", "prog.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode != 0
    assert "--follow-children cannot be used with --live-remote" in proc.stderr


def test_untracked_interpreter_pays_nothing(tmp_path: Path) -> None:
    code = "import sys; print('memray' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.stdout.strip() == "False"
