"""The interactive tree (`memray tree` on a terminal): TreeReporter's merged
paths as a textual Tree, biggest children first, with the path to the biggest
allocation expanded at start and a detail panel for the selected node."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Footer, Static, Tree
from textual.widgets.tree import TreeNode

from ._text import percent, size_fmt
from .tree import Node, TreeReporter


def node_label(node: Node, total_size: int) -> Text:
    """'function  file:line  size (share)' for a node; no markup is parsed."""
    share = f"{size_fmt(node.size)} ({percent(node.size, total_size)})"
    if node.frame is None:
        return Text.assemble(("<ROOT>", "bold"), "  ", (share, "cyan"))
    function, file, line = node.frame
    where = f"{file}:{line}" if file else ""
    ratio = node.size / total_size if total_size else 0.0
    color = "red" if ratio > 0.6 else "yellow" if ratio > 0.2 else "green"
    parts: list[str | tuple[str, str]] = [(function, "bold")]
    if where:
        parts += ["  ", (where, "dim")]
    parts += ["  ", (share, color)]
    return Text.assemble(*parts)


def node_details(node: Node, total_size: int) -> str:
    if node.frame is None:
        function, file, line = "<ROOT>", "", 0
    else:
        function, file, line = node.frame
    return "\n".join(
        [
            f"Function: {function}",
            f"File: {file}",
            f"Line: {line}",
            f"Total size: {size_fmt(node.size)} ({percent(node.size, total_size)})",
            f"Allocations: {node.n_allocations}",
        ]
    )


class TreeApp(App[None]):
    """Browse a TreeReporter's tree: arrows move, enter/space expand or
    collapse, q quits."""

    TITLE = "memray tree"
    CSS = """
    #tree { width: 2fr; }
    #details { width: 1fr; min-width: 30; padding: 0 1; border-left: solid $accent; }
    """
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, reporter: TreeReporter) -> None:
        super().__init__()
        self.reporter = reporter

    def compose(self) -> ComposeResult:
        total = self.reporter.total_size
        tree: Tree[Node] = Tree(
            node_label(self.reporter.root, total), self.reporter.root, id="tree"
        )
        tree.guide_depth = 3
        with Horizontal():
            yield tree
            yield Static(node_details(self.reporter.root, total), id="details")
        yield Footer()

    def on_mount(self) -> None:
        tree: Tree[Node] = self.query_one("#tree", Tree)
        total = self.reporter.total_size
        # Iterative, so a deep program stack cannot overflow ours.
        work: list[TreeNode[Node]] = [tree.root]
        while work:
            branch = work.pop()
            assert branch.data is not None
            for kid in branch.data.sorted_children():
                label = node_label(kid, total)
                if kid.children:
                    work.append(branch.add(label, kid))
                else:
                    branch.add_leaf(label, kid)
        tree.root.expand()
        target = tree.root
        for frame in self.reporter.biggest_path:
            match = next(
                (c for c in target.children if c.data is not None and c.data.frame == frame), None
            )
            if match is None:
                break
            target = match
            target.expand()
        tree.focus()
        self.call_after_refresh(self._select, target)

    def _select(self, node: TreeNode[Node]) -> None:
        tree: Tree[Node] = self.query_one("#tree", Tree)
        tree.move_cursor(node)
        self._show(node)

    def _show(self, node: TreeNode[Node]) -> None:
        if node.data is not None:
            details = node_details(node.data, self.reporter.total_size)
            self.query_one("#details", Static).update(Text(details))

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Node]) -> None:
        self._show(event.node)
