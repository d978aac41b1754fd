"""Reading the documentation's sources as the tests need them: the code
blocks of a reStructuredText page with their language, its list tables by
title, the options it documents per program, and the fenced blocks of a
Markdown file (README.md).

A code block is ``.. code-block:: LANG``, its option lines (``:caption:``
...), one blank line, then its text indented under the directive. The text
returned is dedented, ends with one newline and keeps blank lines inside it,
so it is byte for byte what a reader copies.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

_DIRECTIVE = re.compile(r"^(?P<indent>[ ]*)\.\. (?P<name>[\w-]+)::[ ]*(?P<arg>.*?)[ ]*$")
_OPTION_LINE = re.compile(r"^[ ]*:(?P<key>[\w-]+):[ ]*(?P<value>.*)$")


@dataclass
class Block:
    """One code block: its language, text, 1-based line of its directive and
    the values of its options (``:caption:`` and the like)."""

    lang: str
    text: str
    line: int
    options: dict[str, str] = field(default_factory=dict)


def _directive_body(lines: list[str], start: int, indent: int) -> tuple[dict[str, str], str, int]:
    """(options, dedented text, index after the body) of the directive whose
    line is lines[start]."""
    options: dict[str, str] = {}
    i = start + 1
    while i < len(lines) and lines[i].strip() and _OPTION_LINE.match(lines[i]):
        m = _OPTION_LINE.match(lines[i])
        assert m is not None
        options[m["key"]] = m["value"]
        i += 1
    body: list[str] = []
    while i < len(lines):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
            break
        body.append(line)
        i += 1
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    text = textwrap.dedent("\n".join(body))
    return options, (text + "\n") if text else "", i


def code_blocks(path: Path) -> list[Block]:
    """Every ``.. code-block::`` of the page, in order."""
    lines = path.read_text().split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if m and m["name"] == "code-block":
            options, text, after = _directive_body(lines, i, len(m["indent"]))
            blocks.append(Block(m["arg"] or "none", text, i + 1, options))
            i = after
            continue
        i += 1
    return blocks


def list_tables(path: Path) -> dict[str, list[list[str]]]:
    """The rows (header row included) of every ``.. list-table:: TITLE`` of the
    page, by title; each cell's lines joined with single spaces."""
    lines = path.read_text().split("\n")
    tables: dict[str, list[list[str]]] = {}
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if m and m["name"] == "list-table":
            _, text, after = _directive_body(lines, i, len(m["indent"]))
            rows: list[list[str]] = []
            for line in text.split("\n"):
                if line.startswith("* - "):
                    rows.append([line[4:].strip()])
                elif line.startswith("  - ") or line == "  -":
                    rows[-1].append(line[4:].strip())
                elif line.strip():
                    rows[-1][-1] = (rows[-1][-1] + " " + line.strip()).strip()
            tables[m["arg"]] = rows
            i = after
            continue
        i += 1
    return tables


def documented_options(path: Path) -> dict[str, list[str]]:
    """program -> the option names its ``.. option::`` entries document, from
    ``.. option:: -o FILE, --output FILE`` (``-o`` and ``--output``); the
    program is set by the ``.. program::`` directive above them."""
    result: dict[str, list[str]] = {}
    program = None
    for line in path.read_text().split("\n"):
        m = _DIRECTIVE.match(line)
        if not m:
            continue
        if m["name"] == "program":
            program = m["arg"]
            result.setdefault(program, [])
        elif m["name"] == "option":
            assert program is not None, f"{path}: an option before any program: {line}"
            result[program] += [spec.split()[0] for spec in m["arg"].split(", ")]
    return result


def markdown_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file (language "none" when unnamed)."""
    blocks = []
    text = path.read_text()
    for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.MULTILINE | re.DOTALL):
        line = text.count("\n", 0, m.start()) + 1
        blocks.append(Block(m.group(1) or "none", m.group(2), line))
    return blocks
