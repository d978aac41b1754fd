"""The documentation's examples, run: every code block of every page of
docs/ and of README.md, in order, in a fresh directory per page holding a
copy of examples/ and docs/examples/, each program in a subprocess with a
timeout. What is done with a block depends on its language (docs/
development.rst has the table):

- python: run as a script, or written to the file its first line names
  (``# base/app.py``) for the blocks after it;
- ipython: run as cells of one IPython shell per page;
- console: each ``$ command`` run with bash, its output (stdout and stderr)
  compared with the lines under it: ``...`` is any text within a line, a
  line ``...`` any number of lines, ``<pid>`` a number;
- shell: run with ``bash -e``, which must succeed;
- sh: commands a test cannot run (installing, make targets): each make
  target must exist and each memray option must be one its command takes;
- json must parse; yaml's memray commands are checked as sh's; text is not
  code (the example capture of docs/format.rst is decoded by its own test).

Also: every option of every command is documented with ``.. option::`` and
every documented option exists; the options table of docs/jupyter.rst is
the cell magic's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest
from conftest import TIMEOUT
from rst_blocks import Block, code_blocks, documented_options, list_tables, markdown_blocks

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)
LANGUAGES = {"python", "ipython", "console", "shell", "sh", "text", "json", "yaml"}
FILE_BLOCK = re.compile(r"# (?P<path>[\w./-]+\.py)\n")
# Options every command has; `memray` itself documents them once.
COMMON_OPTIONS = {"-h", "--help", "-v", "--verbose"}


# --- the memray command line, from its own help -------------------------------------


@cache
def help_text(*command: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "memray", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ, COLUMNS="200"),
        check=True,
    )
    return proc.stdout


@cache
def subcommands() -> tuple[str, ...]:
    """The commands `memray --help` lists."""
    text = help_text()
    section = text[text.index("commands:") :]
    return tuple(re.findall(r"^    (\w+)  ", section, re.MULTILINE))


@cache
def parse_help(*command: str) -> tuple[dict[str, bool], set[str]]:
    """({option: takes a value}, positional names) from the command's help."""
    options: dict[str, bool] = {}
    positionals: set[str] = set()
    section = None
    for line in help_text(*command).splitlines():
        if line.endswith(":") and not line.startswith(" "):
            section = line
            continue
        if not line.startswith("  ") or line.startswith("   "):
            continue
        invocation = re.split(r"\s{2,}", line.strip())[0]
        if section == "positional arguments:":
            positionals.add(invocation)
        elif section == "options:":
            for item in invocation.split(", "):
                name, _, metavar = item.partition(" ")
                options[name] = bool(metavar)
    return options, positionals


def check_memray_command(words: list[str], where: str) -> None:
    """The command exists and takes every option given (value-taking options
    skip their value; `run` stops at the program)."""
    sub = words[0] if words else ""
    if sub.startswith("-") or not sub:
        options, _ = parse_help()
        assert all(w in options for w in words if w.startswith("-")), where
        return
    assert sub in subcommands(), f"{where}: no command memray {sub}"
    options, _ = parse_help(sub)
    rest = iter(words[1:])
    for word in rest:
        if word.startswith("-"):
            name = word.split("=")[0]
            assert name in options, f"{where}: memray {sub} has no option {name}"
            if options[name] and "=" not in word:
                next(rest, None)
            if sub == "run" and name in ("-m", "-c"):
                break
        elif sub == "run":
            break  # the program and its own arguments


def memray_words(line: str) -> list[str] | None:
    """The words after `memray` / `python -m memray` in a command line, or None."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word == "memray":
            return words[i + 1 :]
        if word == "-m" and i + 1 < len(words) and words[i + 1] == "memray":
            return words[i + 2 :]
    return None


@cache
def make_targets() -> set[str]:
    targets = set()
    for path in (REPO / "Makefile", DOCS / "docs.mk"):
        text = path.read_text()
        targets |= set(re.findall(r"^([\w.-]+):", text, re.MULTILINE))
        for phony in re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", text, re.MULTILINE):
            targets |= set(phony.replace("\\\n", " ").split())
    return targets


def check_sh_line(line: str, where: str) -> None:
    """A command the tests do not run: checked as far as it can be."""
    words = shlex.split(line, comments=True)
    if not words:
        return
    if words[0] == "make":
        wanted = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        assert wanted and set(wanted) <= make_targets(), f"{where}: no make target {wanted}"
    elif "pip" in words and "install" in words:
        pyproject = (REPO / "pyproject.toml").read_text()
        for extra in re.findall(r"\[(\w+)\]", line):
            assert re.search(rf"^{extra} = ", pyproject, re.MULTILINE), f"{where}: no extra {extra}"
    elif memray_words(line) is not None:
        check_memray_command(memray_words(line) or [], where)
    else:
        raise AssertionError(f"{where}: the tests cannot check this command: {line}")


# --- running a page's blocks --------------------------------------------------------------


def line_pattern(line: str) -> re.Pattern[str]:
    """A shown output line as a pattern: runs of blanks match runs of blanks,
    `...` any text, `<pid>` a number, a rule of dashes any rule of dashes."""
    if line.strip() and set(line) <= {"-", " "}:
        return re.compile(r"[- ]+")
    parts = [re.escape(part) for part in line.split()]
    pattern = r"\s+".join(parts).replace(re.escape("..."), ".*")
    pattern = pattern.replace(re.escape("<pid>"), r"\d+")
    return re.compile(r"\s*" + pattern + r"\s*")


def lines_match(want: list[str], got: list[str]) -> bool:
    if not want:
        return not got
    if want[0].strip() == "...":
        return any(lines_match(want[1:], got[i:]) for i in range(len(got) + 1))
    return (
        bool(got)
        and line_pattern(want[0]).fullmatch(got[0]) is not None
        and lines_match(want[1:], got[1:])
    )


class Page:
    """A page's examples, run in order in one directory."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.work = work
        (work / "docs").mkdir(parents=True)
        shutil.copytree(REPO / "examples", work / "examples")
        shutil.copytree(DOCS / "examples", work / "docs" / "examples")
        bin_dir = work.parent / "bin"
        bin_dir.mkdir(exist_ok=True)
        memray = bin_dir / "memray"  # as the installed console script is
        memray.write_text(
            f"#!{sys.executable}\nimport sys\nfrom memray.commands import main\nsys.exit(main())\n"
        )
        python = bin_dir / "python"
        python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        for script in (memray, python):
            script.chmod(0o755)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTHONMALLOC", "PYTHONDEVMODE", "MEMRAY_FOLLOW"))
        }
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", COLUMNS="200")
        self.cells: list[Block] = []
        self.n_scripts = 0

    def where(self, block: Block) -> str:
        return f"{self.name}:{block.line}"

    def run(self, args: list[str], block: Block, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Runs args in the page's directory in a session of its own (killed
        afterwards with whatever it left running); (status, output)."""
        out_path = self.work.parent / "output.txt"
        with open(out_path, "w+") as out:
            proc = subprocess.Popen(
                args,
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                status = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{self.where(block)}: {args} ran over {timeout} s") from None
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            out.seek(0)
            return status, out.read()

    def python(self, block: Block) -> None:
        m = FILE_BLOCK.match(block.text)
        if m:
            path = self.work / m["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
            return
        self.n_scripts += 1
        script = self.work.parent / f"snippet{self.n_scripts}.py"
        script.write_text(block.text)
        status, output = self.run([sys.executable, str(script)], block)
        assert status == 0, f"{self.where(block)}: exit {status}\n{output}"

    def ipython(self) -> None:
        """The cells collected so far, in one IPython shell."""
        if not self.cells:
            return
        pytest.importorskip("IPython")
        cells, self.cells = self.cells, []
        driver = self.work.parent / "cells.py"
        driver.write_text(
            textwrap.dedent(
                f"""\
                from IPython.core.interactiveshell import InteractiveShell

                shell = InteractiveShell.instance()
                for cell in {[c.text for c in cells]!r}:
                    shell.run_cell(cell).raise_error()
                """
            )
        )
        status, output = self.run([sys.executable, str(driver)], cells[0])
        assert status == 0, f"{self.where(cells[0])}: exit {status}\n{output}"

    def console(self, block: Block) -> None:
        commands: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                assert commands, f"{self.where(block)}: output before any command"
                commands[-1][1].append(line)
        last = 0
        for command, shown in commands:
            if command == "echo $?":
                assert shown == [str(last)], f"{self.where(block)}: exit status {last}"
                continue
            if command.startswith("memray ") or " memray " in command:
                words = memray_words(command.split("|")[0].split(">")[0])
                check_memray_command(words or [], self.where(block))
            last, output = self.run(["bash", "-c", command], block)
            got = output.splitlines()
            assert lines_match(shown, got), (
                f"{self.where(block)}: $ {command}\nshown:\n"
                + "\n".join(shown)
                + "\nprinted:\n"
                + output
            )

    def shell(self, block: Block) -> None:
        if "memray attach" in block.text:
            why = attach_impossible()
            if why:
                pytest.skip(f"{self.where(block)} attaches, and no debugger can here: {why}")
        for line in block.text.splitlines():
            if memray_words(line) is not None and line.lstrip().startswith("memray"):
                check_memray_command(memray_words(line) or [], self.where(block))
        status, output = self.run(["bash", "-e", "-c", block.text], block)
        assert status == 0, f"{self.where(block)}: exit {status}\n{output}"

    def block(self, block: Block) -> None:
        assert block.lang in LANGUAGES, f"{self.where(block)}: language {block.lang!r}"
        if block.lang != "ipython":
            self.ipython()
        if block.lang == "python":
            self.python(block)
        elif block.lang == "ipython":
            self.cells.append(block)
        elif block.lang == "console":
            self.console(block)
        elif block.lang == "shell":
            self.shell(block)
        elif block.lang == "sh":
            for line in block.text.splitlines():
                check_sh_line(line, self.where(block))
        elif block.lang == "json":
            json.loads(block.text)
        elif block.lang == "yaml":
            for command in re.findall(r"run: (.*memray .*)$", block.text, re.MULTILINE):
                check_sh_line(command, self.where(block))


@cache
def attach_impossible() -> str | None:
    """Why no debugger can run code in a Python process here, or None."""
    from memray.commands.attach import inject
    from memray.commands.common import CommandError

    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline().strip() == "ready"
        probe = 'with open(__STATUS__, "w") as status:\n    status.write("ok")\n'
        outcome = inject(sleeper.pid, probe)
        return None if outcome == "ok" else outcome
    except CommandError as error:
        return str(error)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=TIMEOUT)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    runner = Page(str(page.relative_to(REPO)), tmp_path / "work")
    for block in code_blocks(page):
        runner.block(block)
    runner.ipython()


def test_readme_examples_run(tmp_path: Path) -> None:
    runner = Page("README.md", tmp_path / "work")
    blocks = markdown_blocks(REPO / "README.md")
    assert {b.lang for b in blocks} >= {"python", "sh"}
    for block in blocks:
        runner.block(block)


# --- the pages themselves ------------------------------------------------------------------


def test_docs_are_restructuredtext_only() -> None:
    """Each page lives once, as .rst (Sphinx reads no Markdown here)."""
    assert not list(DOCS.glob("*.md"))
    assert PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_code_is_in_code_blocks(page: Path) -> None:
    """No bare `::` literal blocks: every example says its language, so the
    tests know what to do with it."""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".. "):
            raise AssertionError(f"{page.name}:{number}: a literal block without a language")


def all_documented_options() -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for page in PAGES:
        for program, names in documented_options(page).items():
            result.setdefault(program, set()).update(names)
    return result


def test_every_command_and_option_is_documented() -> None:
    documented = all_documented_options()
    options, _ = parse_help()
    assert documented["memray"] <= set(options), documented["memray"] - set(options)
    assert COMMON_OPTIONS <= documented["memray"]
    missing, unknown = [], []
    for sub in subcommands():
        assert f"memray {sub}" in documented, f"memray {sub} has no `.. program::` section"
        options, positionals = parse_help(sub)
        names = documented[f"memray {sub}"]
        missing += [f"memray {sub} {o}" for o in sorted(set(options) - COMMON_OPTIONS - names)]
        unknown += [f"memray {sub} {n}" for n in sorted(names - set(options) - positionals)]
    assert not missing, f"options without an `.. option::` entry: {missing}"
    assert not unknown, f"documented options that do not exist: {unknown}"
    assert set(documented) - {"memray"} <= {f"memray {s}" for s in subcommands()}


def test_jupyter_options_table_is_the_magics() -> None:
    pytest.importorskip("IPython")
    from memray._ipython import argument_parser

    rows = list_tables(DOCS / "jupyter.rst")["Options of %%memray_flamegraph"][1:]
    documented = {word.split()[0] for row in rows for word in re.findall(r"``([^`]+)``", row[0])}
    actual = {
        option
        for action in argument_parser()._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
    }
    assert documented == actual


def format_example_bytes() -> bytes:
    """The bytes of the example capture of docs/format.rst, from its dump."""
    (block,) = [b for b in code_blocks(DOCS / "format.rst") if b.lang == "text"]
    data = bytearray()
    for line in block.text.splitlines():
        m = re.match(r"^(?:[A-Z_a-z]+)?\s+((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s{2,}|$)", line)
        assert m, line
        data += bytes.fromhex(m.group(1))
    return bytes(data)


def test_format_example_is_a_capture_readers_read(tmp_path: Path) -> None:
    from memray import AllocatorType, FileReader

    path = tmp_path / "example.bin"
    path.write_bytes(format_example_bytes())
    with FileReader(path) as reader:
        metadata = reader.metadata
        assert (metadata.pid, metadata.main_thread_id) == (0x1234, 0x1235)
        assert metadata.command_line == "py x"
        events = [(r.tid, r.allocator, r.address, r.size) for r in reader.get_allocation_records()]
    assert events == [
        (5, AllocatorType.MALLOC, 0x1000, 300),
        (5, AllocatorType.CALLOC, 0xFF0, 16),
        (6, AllocatorType.FREE, 0x1000, 0),
        (6, AllocatorType.MUNMAP, 0x2000, 4096),
    ]
    parsed = subprocess.run(
        [sys.executable, "-m", "memray", "parse", str(path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout.splitlines()
    kinds = [line.split()[0] for line in parsed]
    assert kinds[0] == "HEADER" and kinds[-1] == "TRAILER"
    assert kinds.count("ALLOC") == 2 and kinds.count("FREE") == 2


def test_every_picture_is_made_by_the_build() -> None:
    script = (DOCS / "tools" / "make_pictures.py").read_text()
    for page in PAGES:
        for picture in re.findall(r"/_build/pictures/([\w.-]+)", page.read_text()):
            assert f'"{picture}"' in script, f"{page.name}: nothing makes {picture}"
