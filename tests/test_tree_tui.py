"""The interactive `memray tree` (reporters/tree_tui.py), driven with
textual's pilot on a tree built from fake records, and the command's choice
between it and the plain tree."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from capture_builder import MALLOC, CaptureBuilder

from memray.reporters._text import size_fmt
from memray.reporters.tree import Node, TreeReporter
from memray.reporters.tree_tui import TreeApp

MiB = 1024 * 1024
WAIT = 20.0
Frame = tuple[str, str, int]


@dataclass
class FakeRecord:
    size: int
    n_allocations: int
    stack: list[Frame]  # innermost first, as stack_trace() gives

    def stack_trace(self, max_stacks: int | None = None) -> list[Frame]:
        return self.stack

    def hybrid_stack_trace(self, max_stacks: int | None = None) -> list[Frame]:
        return [("c_alloc", "lib.c", 7), *self.stack]


MODULE = ("<module>", "a.py", 20)
PARENT = ("parent", "a.py", 10)
BIG = ("big", "b.py", 3)
SMALL = ("small", "b.py", 9)
OTHER = ("other", "a.py", 11)

FAKE = [
    FakeRecord(4 * MiB, 2, [BIG, PARENT, MODULE]),
    FakeRecord(1 * MiB, 1, [SMALL, PARENT, MODULE]),
    FakeRecord(3 * MiB, 3, [OTHER, MODULE]),
]
TOTAL = 8 * MiB


def run_app(reporter: TreeReporter, scenario: Callable[[TreeApp, Any], Awaitable[None]]) -> TreeApp:
    app = TreeApp(reporter)

    async def main() -> None:
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(asyncio.wait_for(main(), WAIT))
    return app


def visible_rows(app: TreeApp) -> list[str]:
    """The tree's visible lines as plain text labels, top to bottom."""
    from textual.widgets import Tree

    tree = app.query_one("#tree", Tree)
    return [
        str(tree.get_node_at_line(i).label)  # type: ignore[union-attr]
        for i in range(tree.last_line + 1)
    ]


def cursor_data(app: TreeApp) -> Node:
    from textual.widgets import Tree

    node = app.query_one("#tree", Tree).cursor_node
    assert node is not None and node.data is not None
    return node.data


def details(app: TreeApp) -> str:
    from textual.widgets import Static

    return str(app.query_one("#details", Static).render())


def test_rows_biggest_first_with_the_biggest_path_expanded() -> None:
    async def scenario(app: TreeApp, pilot: Any) -> None:
        assert visible_rows(app) == [
            f"<ROOT>  {size_fmt(TOTAL)} (100.00%)",
            f"<module>  a.py:20  {size_fmt(TOTAL)} (100.00%)",
            f"parent  a.py:10  {size_fmt(5 * MiB)} (62.50%)",
            f"big  b.py:3  {size_fmt(4 * MiB)} (50.00%)",
            f"small  b.py:9  {size_fmt(1 * MiB)} (12.50%)",
            f"other  a.py:11  {size_fmt(3 * MiB)} (37.50%)",
        ]
        # The cursor starts on the biggest allocation, shown in the panel.
        assert cursor_data(app).frame == BIG
        text = details(app)
        for expected in (
            "Function: big",
            "File: b.py",
            "Line: 3",
            f"Total size: {size_fmt(4 * MiB)} (50.00%)",
            "Allocations: 2",
        ):
            assert expected in text

    run_app(TreeReporter.from_snapshot(FAKE), scenario)


def test_collapse_expand_and_move_update_the_panel() -> None:
    async def scenario(app: TreeApp, pilot: Any) -> None:
        await pilot.press("up")  # to parent
        assert cursor_data(app).frame == PARENT
        assert "Function: parent" in details(app) and "Allocations: 3" in details(app)
        await pilot.press("space")  # collapse parent
        await pilot.pause()
        rows = visible_rows(app)
        assert len(rows) == 4 and not any(r.startswith(("big", "small")) for r in rows)
        await pilot.press("space")  # and expand it again
        await pilot.pause()
        assert len(visible_rows(app)) == 6
        await pilot.press("down", "down", "down")  # big, small, other
        assert cursor_data(app).frame == OTHER
        assert "Function: other" in details(app) and "Line: 11" in details(app)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running

    run_app(TreeReporter.from_snapshot(FAKE), scenario)


def test_native_tree_shows_the_c_frame_and_escapes_markup() -> None:
    records = [FakeRecord(100, 1, [("[bold]odd", "x.py", 1)])]

    async def scenario(app: TreeApp, pilot: Any) -> None:
        rows = visible_rows(app)
        assert rows[1].startswith("[bold]odd  x.py:1")
        assert rows[2].startswith("c_alloc  lib.c:7")
        assert cursor_data(app).frame == ("c_alloc", "lib.c", 7)

    run_app(TreeReporter.from_snapshot(records, native=True), scenario)


def write_capture(path: Path) -> Path:
    builder = CaptureBuilder(command_line="prog.py")
    stack = builder.stack(("<module>", "prog.py", 3))
    builder.alloc(1, MALLOC, 0x1000, 4096, stack)
    return builder.write(path)


class FakeTTY(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("stdin_tty", "stdout_tty"), [(True, True), (False, True), (True, False)])
def test_command_is_interactive_only_with_both_terminals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdin_tty: bool, stdout_tty: bool
) -> None:
    from memray.commands import main

    capture = write_capture(tmp_path / "cap.bin")
    ran: list[TreeReporter] = []
    monkeypatch.setattr(TreeApp, "run", lambda self, *a, **k: ran.append(self.reporter))
    out = FakeTTY(stdout_tty)
    monkeypatch.setattr(sys, "stdin", FakeTTY(stdin_tty))
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["tree", str(capture)]) == 0
    if stdin_tty and stdout_tty:
        assert len(ran) == 1 and ran[0].total_size == 4096
        assert out.getvalue() == ""
    else:
        assert ran == []
        assert "<module>" in out.getvalue() and "Biggest 1 allocating paths" in out.getvalue()
