"""The tree: the N biggest allocating stacks of a snapshot, merged from the
outermost frame, each node with its bytes and share of the whole snapshot.

Reads grouped records once, keeping only the N biggest; renders with rich on a
terminal and as an indented plain tree otherwise.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ._text import percent, size_fmt

Frame = tuple[str, str, int]


@dataclass
class Node:
    """A frame on the merged paths (sizes in bytes, summed over the paths through it)."""

    frame: Frame | None
    size: int = 0
    n_allocations: int = 0
    children: dict[Frame, Node] = field(default_factory=dict)

    def child(self, frame: Frame) -> Node:
        node = self.children.get(frame)
        if node is None:
            node = self.children[frame] = Node(frame)
        return node

    def sorted_children(self) -> list[Node]:
        return sorted(self.children.values(), key=lambda n: (-n.size, n.frame))


class TreeReporter:
    def __init__(
        self,
        root: Node,
        total_size: int,
        total_allocations: int,
        shown: int,
        biggest_path: tuple[Frame, ...] = (),
    ) -> None:
        self.root = root
        self.total_size = total_size
        self.total_allocations = total_allocations
        self.shown = shown
        # Frames from the root to the node of the single biggest record.
        self.biggest_path = biggest_path

    @classmethod
    def from_snapshot(
        cls, records: Iterable[Any], biggest_allocs: int = 200, native: bool = False
    ) -> TreeReporter:
        totals = [0, 0]

        def counted() -> Iterator[Any]:
            for record in records:
                totals[0] += record.size
                totals[1] += record.n_allocations
                yield record

        biggest = heapq.nlargest(biggest_allocs, counted(), key=lambda r: r.size)
        root = Node(None, totals[0], totals[1])
        biggest_path: tuple[Frame, ...] = ()
        for record in biggest:
            node = root
            path: list[Frame] = []
            stack = record.hybrid_stack_trace() if native else record.stack_trace()
            for frame in reversed(stack):
                node = node.child(tuple(frame))
                path.append(tuple(frame))
                node.size += record.size
                node.n_allocations += record.n_allocations
            if node is root:  # no Python frame at all
                unavailable: Frame = ("<stack trace unavailable>", "", 0)
                node = root.child(unavailable)
                node.size += record.size
                node.n_allocations += record.n_allocations
                path.append(unavailable)
            if record is biggest[0]:
                biggest_path = tuple(path)
        return cls(root, totals[0], totals[1], len(biggest), biggest_path)

    def _label(self, node: Node) -> tuple[str, str]:
        """(size and share, where) for a node."""
        share = f"{size_fmt(node.size)} ({percent(node.size, self.total_size)})"
        if node.frame is None:
            return share, "<ROOT>"
        function, file, line = node.frame
        where = function if not file else f"{function}  {file}:{line}"
        return share, where

    def render(self, *, file: IO[str] | None = None, use_rich: bool | None = None) -> None:
        out = file if file is not None else sys.stdout
        if use_rich is None:
            use_rich = out.isatty()
        if use_rich:
            self._render_rich(out)
        else:
            self._render_plain(out)

    def _render_plain(self, out: IO[str]) -> None:
        share, where = self._label(self.root)
        print(f"{share} {where}", file=out)
        # Iterative, so deep recursion in the program cannot overflow ours.
        stack: list[tuple[Node, str, bool]] = [
            (child, "", i == len(kids) - 1)
            for kids in [self.root.sorted_children()]
            for i, child in enumerate(kids)
        ][::-1]
        while stack:
            node, prefix, last = stack.pop()
            share, where = self._label(node)
            print(f"{prefix}{'└── ' if last else '├── '}{share} {where}", file=out)
            kids = node.sorted_children()
            child_prefix = prefix + ("    " if last else "│   ")
            for i in range(len(kids) - 1, -1, -1):
                stack.append((kids[i], child_prefix, i == len(kids) - 1))

    def _render_rich(self, out: IO[str]) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.tree import Tree

        def text(node: Node) -> str:
            share, where = self._label(node)
            ratio = node.size / self.total_size if self.total_size else 0.0
            color = "red" if ratio > 0.6 else "yellow" if ratio > 0.2 else "green"
            icon = "📂" if node.children else "📄"
            return f"{icon} [{color}]{escape(share)}[/] [bold]{escape(where)}[/]"

        tree = Tree(text(self.root), guide_style="dim")
        work: list[tuple[Node, Tree]] = [(self.root, tree)]
        while work:
            node, branch = work.pop()
            for kid in node.sorted_children():
                work.append((kid, branch.add(text(kid))))
        Console(file=out, highlight=False, soft_wrap=True).print(tree)
