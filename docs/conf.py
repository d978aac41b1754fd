"""Sphinx configuration of memray's documentation (`make docs`).

Only extensions that ship with Sphinx, and the furo theme. The API pages are
read from the installed package's docstrings (autodoc), so the package must
be importable by the Python that runs Sphinx. The pictures come from
docs/tools/make_pictures.py, which `make docs` runs first, into
_build/pictures.
"""

from __future__ import annotations

from pygments.lexers import PythonLexer

import memray

project = "memray"
author = "the memray developers"
copyright = "the memray developers"
release = memray.__version__
version = release

extensions = ["sphinx.ext.autodoc"]

root_doc = "index"
exclude_patterns = ["_build", "examples", "tools"]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"memray {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
pygments_style = "friendly"

# Highlighted code that looks like another language's is a mistake: every
# block names its language (tests/test_docs.py runs them by it).
highlight_language = "none"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# Docstrings of the C types start with a call line for people
# ("stack_trace(max_stacks=None) -> [...]"), not a signature to parse.
autodoc_docstring_signature = False

# Nitpicky mode (-n) on: every cross-reference must resolve. Without
# intersphinx (the build has no network), standard library types in
# signatures have no page to link to.
nitpick_ignore_regex = [
    (
        r"py:class",
        r"(pathlib\.)?Path|datetime(\.datetime)?|os\.PathLike|"
        r"(collections\.abc\.|typing\.)?(Iterator|Iterable|Callable|Sequence)|types\.TracebackType|"
        r"TracebackType|enum\.IntEnum|IntEnum|int|str|bytes|bool|float|None|tuple|list|dict|"
        r"Self|typing\.Self|BaseException|NamedTuple|typing\.NamedTuple",
    ),
    # SocketReader's records: AllocationRecord's attributes and methods, by
    # another (private) class.
    (r"py:class", r"memray\._live\.LiveAllocationRecord"),
]


def setup(app):  # type: ignore[no-untyped-def]
    # IPython cells (%load_ext, %%memray_flamegraph) read like Python; the
    # IPython lexer is not a Sphinx dependency.
    app.add_lexer("ipython", PythonLexer)
