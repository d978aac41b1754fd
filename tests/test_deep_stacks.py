"""Deep, varied stacks (benchmarks/workloads/deep_stack.py's shape): every
allocation comes from a path of its own, 37 frames deep. More distinct stack
prefixes than the tracker's trie table holds (pystack.c NODE_TABLE_MAX_SLOTS)
make it start afresh; every stack must still read back exactly. The tracked
program runs in a subprocess with a timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import TIMEOUT, line_of

from memray import AllocatorType, FileReader

PROGRAM = """
import sys
import memray

DEPTH, VARYING = 37, 11

def which(i, depth):
    return (i // 3 ** (depth - 1)) % 3 if depth <= VARYING else depth % 3

def f(i, depth):
    if depth == DEPTH:
        return bytearray(1000)  # LEAF
    return FUNCS[which(i, depth)](i, depth + 1)

def g(i, depth):
    if depth == DEPTH:
        return bytearray(1000)  # LEAF
    return FUNCS[which(i, depth)](i, depth + 1)

def h(i, depth):
    if depth == DEPTH:
        return bytearray(1000)  # LEAF
    return FUNCS[which(i, depth)](i, depth + 1)

FUNCS = (f, g, h)
keep = [None] * int(sys.argv[2])
with memray.Tracker(sys.argv[1]):
    for i in range(len(keep)):
        keep[i] = f(i, 1)
"""

N = 16000  # x ~36 new trie nodes each: past the table's 367,000


def expected_path(i: int) -> list[str]:
    """Function names, outermost first, of iteration i's stack."""
    names, depth, fn = [], 1, "f"
    while True:
        names.append(fn)
        if depth == 37:
            return names
        fn = "fgh"[(i // 3 ** (depth - 1)) % 3 if depth <= 11 else depth % 3]
        depth += 1


def test_every_deep_stack_reads_back_after_the_trie_table_starts_afresh(tmp_path: Path) -> None:
    script = tmp_path / "deep.py"
    script.write_text(textwrap.dedent(PROGRAM))
    out = tmp_path / "deep.bin"
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(N)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    leaf = line_of(PROGRAM, "# LEAF")
    paths = []
    with FileReader(out) as reader:
        for r in reader.get_leaked_allocation_records(merge_threads=True):
            if r.allocator != AllocatorType.MALLOC or r.size != 1001 * r.n_allocations:
                continue
            stack = r.stack_trace()
            assert stack[0][2] == leaf
            names = [function for function, file, _ in reversed(stack) if file == str(script)]
            paths.extend([tuple(names)] * r.n_allocations)
    # Iteration i's path, for every i, each exactly once.
    want = sorted(tuple(["<module>", *expected_path(i)]) for i in range(N))
    assert sorted(paths) == want
