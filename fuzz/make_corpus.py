"""Writes the fuzzers' seed corpus with memray's own Tracker, in every mode.

    .venv-3.11/bin/python fuzz/make_corpus.py [--out fuzz/corpus]

Each capture is made in a fresh interpreter (a Tracker is used once, and
``follow_fork`` forks) running a small workload: a few allocations of known
sizes, frees, a realloc, named threads, mmap and munmap, a dlopen, a fork.
Modes: every-event and aggregated captures; native traces on and off; the
pymalloc domains traced or not; compressed on exit or not; the buffered sink;
a followed fork (the parent's capture and the child's); a process killed
mid-run (zero-filled tail); and, for the live harness, the socket stream a
live reader receives, saved byte for byte behind the harness's two control
bytes (chunk sizes, early close; see fuzz_live.c).

Seeds stay small (the live ones are cut at ``MAX_SEED`` bytes, which the
reader treats as a capture that ends mid-stream) so that ``make test`` replays
them in seconds. File names carry no ``.bin`` (git ignores those).
"""

from __future__ import annotations

import argparse
import mmap
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

MAX_SEED = 64 * 1024
# Control bytes of the live harness: (largest chunk, scale bits | close-early bit 3).
LIVE_SPLITS = {
    "whole": (0, 0),
    "bytewise": (1, 0),
    "small": (7, 0),
    "medium": (100, 2),
    "large": (255, 6),
    "close-early": (33, 8 | 1),
}


def workload(threads: bool, use_mmap: bool, fork: bool, dlopen: bool) -> None:
    """Allocations a report has something to say about, kept few."""
    kept = [bytearray(1000 + i) for i in range(8)]  # alive at the end: leaks
    for _ in range(4):
        tmp = bytearray(4096)  # freed at once: temporary allocations
        del tmp
    grow = bytearray(16)
    grow.extend(b"x" * 5000)  # a realloc
    del kept[::2]
    if threads:

        def worker(n: int) -> None:
            data = [bytes(200 * n) for _ in range(3)]
            del data

        pool = [
            threading.Thread(target=worker, args=(i + 1,), name=f"worker-{i}") for i in range(2)
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    if use_mmap:
        page = mmap.PAGESIZE
        anon = mmap.mmap(-1, 4 * page)
        anon[0] = 1
        anon.close()
        two = mmap.mmap(-1, 2 * page)
        other = mmap.mmap(-1, page)
        two.close()
        other.close()
    if dlopen:  # a new MAPPINGS generation, and allocations under it
        import ctypes

        for name in ("libexpat.so.1", "libuuid.so.1", "libbz2.so.1.0", "liblzma.so.5"):
            try:
                ctypes.CDLL(name)
                break
            except OSError:
                continue
        after = [bytearray(777) for _ in range(3)]
        del after
    if fork:
        pid = os.fork()
        if pid == 0:
            child = [bytearray(333) for _ in range(3)]
            del child
            os._exit(0)
        os.waitpid(pid, 0)
    time.sleep(0.03)  # a few memory samples (memory_interval_ms=10)
    del grow


def child(mode: str, path: str) -> None:
    """Runs in the fresh interpreter: one Tracker, one capture."""
    import memray

    opts = set(mode.split("-"))
    fmt = (
        memray.FileFormat.AGGREGATED_ALLOCATIONS
        if "agg" in opts
        else memray.FileFormat.ALL_ALLOCATIONS
    )
    kwargs = dict(
        native_traces="native" in opts,
        trace_python_allocators="pymalloc" in opts,
        follow_fork="fork" in opts,
        memory_interval_ms=10,
        file_format=fmt,
    )
    if "live" in opts:
        port = int(path)
        dest = memray.SocketDestination(server_port=port)
    else:
        dest = memray.FileDestination(
            path, overwrite=True, compress_on_exit="zstd" in opts, buffered="buffered" in opts
        )
    with memray.Tracker(destination=dest, **kwargs):
        workload("threads" in opts, "mmap" in opts, "fork" in opts, "dlopen" in opts)
        if "killed" in opts:
            os.kill(os.getpid(), signal.SIGKILL)


FILE_MODES = [
    "all",
    "all-zstd",
    "all-buffered",
    "native",
    "native-zstd",
    "pymalloc",
    "native-pymalloc",
    "threads",
    "threads-native-zstd",
    "mmap",
    "mmap-native",
    "dlopen-native",
    "fork",
    "killed",
    "killed-native",
    "agg",
    "agg-zstd",
    "agg-native",
    "agg-pymalloc-threads",
    "agg-mmap",
]
LIVE_MODES = ["live-threads-mmap", "live-native"]


def run_child(mode: str, target: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", mode, target])


def trim_zero_tail(data: bytes) -> bytes:
    """The file sink grows its file in zero-filled steps: a killed process
    (or a forked child that left by os._exit) leaves up to megabytes of zeros,
    of which a few say as much."""
    stripped = data.rstrip(b"\0")
    return data[: len(stripped) + 16]


def make_file_seed(mode: str, tmp: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
    path = tmp / f"{mode}.cap"
    proc = run_child(mode, str(path))
    proc.wait(timeout=120)
    if proc.returncode != 0 and "killed" not in mode:
        raise SystemExit(f"{mode}: the tracked child failed ({proc.returncode})")
    written = []
    # follow_fork: the child's capture is <path>.<pid>.
    for i, src in enumerate(sorted(tmp.glob(f"{mode}.cap*"))):
        data = trim_zero_tail(src.read_bytes())
        name = mode if i == 0 else f"{mode}-child"
        dst = out / "reader" / name
        dst.write_bytes(data[:MAX_SEED])
        written.append(dst)
        src.unlink()
    return written


def make_live_seeds(mode: str, out: pathlib.Path) -> list[pathlib.Path]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = run_child(mode, str(port))
    deadline = time.monotonic() + 60
    while True:  # the Tracker listens once its constructor runs
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    chunks = []
    with conn:
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
    proc.wait(timeout=120)
    stream = b"".join(chunks)[: MAX_SEED - 2]
    written = []
    for split, (c0, c1) in LIVE_SPLITS.items():
        dst = out / "live" / f"{mode}-{split}"
        dst.write_bytes(bytes([c0, c1]) + stream)
        written.append(dst)
    # The same stream is a capture the file reader must take too.
    dst = out / "reader" / mode
    dst.write_bytes(stream)
    written.append(dst)
    return written


# Merged captures (memray merge) of seeds written above: PROCESS records,
# renumbered ids and generations, per-process addresses.
MERGES = {
    "merged-fork": ["fork", "fork-child"],
    "merged-agg": ["agg", "agg-native"],
    "merged-native": ["native", "dlopen-native"],
}


def make_merged_seeds(out: pathlib.Path) -> list[pathlib.Path]:
    from memray import _memray

    written = []
    for name, parts in MERGES.items():
        paths = [out / "reader" / part for part in parts]
        fds = [os.open(path, os.O_RDONLY) for path in paths]
        try:
            merge = _memray.Merge(fds, [path.name for path in paths])
        finally:
            for fd in fds:
                os.close(fd)
        dst = out / "reader" / name
        merge.write(str(dst), True)
        dst.write_bytes(dst.read_bytes()[:MAX_SEED])
        written.append(dst)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = pathlib.Path(__file__).resolve().parent
    parser.add_argument("--out", type=pathlib.Path, default=here / "corpus")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    for sub in ("reader", "live"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".tmp"
    tmp.mkdir(exist_ok=True)
    try:
        written = []
        for mode in FILE_MODES:
            written += make_file_seed(mode, tmp, args.out)
        for mode in LIVE_MODES:
            written += make_live_seeds(mode, args.out)
        written += make_merged_seeds(args.out)
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    for path in written:
        print(f"{path.stat().st_size:7d}  {path.relative_to(args.out)}")
    print(f"{len(written)} seeds, {sum(p.stat().st_size for p in written)} bytes")


if __name__ == "__main__":
    main()
