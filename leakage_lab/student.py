"""Student copies of the labs: solutions replaced by stubs, hidden tests removed.

Exercise answers sit between nbgrader's markers in the master notebooks::

    ### BEGIN SOLUTION
    ...the answer...
    ### END SOLUTION

A student copy keeps the line before the markers, replaces the answer with
``# YOUR CODE HERE`` and ``raise NotImplementedError()`` (indented like the answer),
drops anything between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, and
clears every output. The same masters also work with ``nbgrader generate_assignment``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["student_notebook", "write_student_copies"]

def _block(begin: str, end: str) -> re.Pattern:
    """Matches a marked block, from its indented BEGIN line through its END line."""
    return re.compile(rf"^([ \t]*)### {begin}[^\n]*\n.*?^[ \t]*### {end}[^\n]*(\n|$)",
                      re.MULTILINE | re.DOTALL)


_SOLUTION = _block("BEGIN SOLUTION", "END SOLUTION")
_HIDDEN = _block("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def _stub(match: re.Match) -> str:
    indent = match.group(1)
    return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError(){match.group(2)}"


def student_source(source: str) -> str:
    """One cell's source with its solutions stubbed out and hidden tests removed."""
    return _HIDDEN.sub("", _SOLUTION.sub(_stub, source))


def student_notebook(nb: dict) -> dict:
    """A student copy of a notebook (as parsed JSON): stubs, no hidden tests, no outputs."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        source = "".join(cell.get("source", []))
        if cell["cell_type"] == "code":
            source = student_source(source)
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["source"] = source.splitlines(keepends=True)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def write_student_copies(source_dir: Path, out_dir: Path) -> list[Path]:
    """Writes a student copy of every ``NN_*.ipynb`` in ``source_dir`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source_dir.glob("[0-9][0-9]_*.ipynb")):
        nb = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        target = out_dir / path.name
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written
