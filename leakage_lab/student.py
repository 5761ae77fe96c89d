"""Student copies of the labs: solutions replaced by stubs, hidden tests removed.

Exercise answers sit between nbgrader's markers in the master notebooks::

    ### BEGIN SOLUTION
    ...the answer...
    ### END SOLUTION

A student copy replaces each such region, markers included, with ``# YOUR CODE HERE``
and ``raise NotImplementedError()`` indented like the BEGIN line (in a markdown cell,
with ``YOUR ANSWER HERE``), drops every line from ``### BEGIN HIDDEN TESTS`` through
``### END HIDDEN TESTS``, and clears every output, execution count and saved widget
state. The rules are nbgrader's (any line that contains ``BEGIN SOLUTION`` opens a
region), so ``nbgrader generate_assignment --no-db --no-metadata`` turns the same
masters into the same stubs; unlike nbgrader without metadata, a marker left open or
nested is an error here rather than a silently leaked answer.

:func:`write_workspace` copies the labs, as masters or as student copies, into a
learner's folder.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

__all__ = ["CODE_STUB", "TEXT_STUB", "student_notebook", "student_source", "write_student_copies",
           "write_workspace"]

CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
TEXT_STUB = ("YOUR ANSWER HERE",)

_SOLUTION = ("BEGIN SOLUTION", "END SOLUTION")
_HIDDEN = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
_LAB = "[0-9][0-9]_*.ipynb"
# Never copied into a workspace: editor and interpreter droppings.
_SKIP = {".ipynb_checkpoints", "__pycache__", ".DS_Store"}


def _regions(source: str, markers: tuple[str, str], stub: tuple[str, ...] | None,
             where: str) -> str:
    """Replaces each marked region of ``source`` (marker lines included) by ``stub``.

    ``stub`` lines are indented like the BEGIN line; ``None`` removes the region.
    """
    begin, end = markers
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.split("\n"), start=1):
        if begin in line:
            if inside:
                raise ValueError(f"{where}: line {number} opens '{begin}' inside an open one; "
                                 f"expected '{end}' first.")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out.extend(indent + s for s in (stub or ()))
        elif end in line:
            if not inside:
                raise ValueError(f"{where}: line {number} has '{end}' without a '{begin}' "
                                 "before it.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{begin}' is never closed; expected a line '### {end}'.")
    return "\n".join(out)


def student_source(source: str, cell_type: str = "code", *, where: str = "cell") -> str:
    """One cell's source with its solutions stubbed out and its hidden tests removed.

    Args:
        source: the cell's source text.
        cell_type: ``"code"`` (stub: ``# YOUR CODE HERE`` + ``raise NotImplementedError()``)
            or ``"markdown"`` (stub: ``YOUR ANSWER HERE``).
        where: names the cell in error messages.

    Raises:
        ValueError: a marker is unbalanced or nested.
    """
    stub = CODE_STUB if cell_type == "code" else TEXT_STUB
    return _regions(_regions(source, _SOLUTION, stub, where), _HIDDEN, None, where)


def student_notebook(nb: dict, *, name: str = "notebook") -> dict:
    """A student copy of a notebook (as parsed JSON): stubs, no hidden tests, no outputs."""
    nb = json.loads(json.dumps(nb))
    for index, cell in enumerate(nb["cells"]):
        source = cell.get("source", [])
        source = "".join(source) if isinstance(source, list) else source
        if cell["cell_type"] in ("code", "markdown"):
            source = student_source(source, cell["cell_type"], where=f"{name} cell {index}")
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["source"] = source.splitlines(keepends=True)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def _clean_notebook(nb: dict) -> dict:
    """A master with its outputs, execution counts and widget state cleared."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def _write_notebook(nb: dict, target: Path) -> None:
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_student_copies(source_dir: Path, out_dir: Path) -> list[Path]:
    """Writes a student copy of every ``NN_*.ipynb`` in ``source_dir`` into ``out_dir``."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    # Every copy is made before any is written: an unbalanced marker writes nothing.
    copies = {path.name: student_notebook(json.loads(path.read_text(encoding="utf-8")),
                                          name=path.name)
              for path in sorted(source_dir.glob(_LAB))}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, nb in copies.items():
        _write_notebook(nb, out_dir / name)
        written.append(out_dir / name)
    return written


_WORKSPACE_README = """\
# leakage-lab workspace

{kind}, copied from leakage-lab's `notebooks/` by `leakage-lab workspace`.
Your edits stay here; the package's own copies are not touched.

Start JupyterLab in this folder and open the first lab:

    jupyter lab {first}

Each lab opens with its level, prerequisites, learning goals and expected time.
{exercises}
Set `LEAKAGE_LAB_QUICK=1` before starting JupyterLab for smaller, faster runs (the
numbers on screen then differ from the ones in the text).
"""

_STUDENT_NOTE = """\
The exercises are yours to write: replace `# YOUR CODE HERE` and
`raise NotImplementedError()` with your answer, run the cell, then run the self-check
below it. A failing self-check prints a hint.
"""

_MASTER_NOTE = """\
These are the full labs, answers included (between `### BEGIN SOLUTION` and
`### END SOLUTION`); `leakage-lab workspace DIR --student` gives copies without them.
"""


def write_workspace(source_dir: Path, out_dir: Path, *, student: bool = False,
                    force: bool = False) -> list[Path]:
    """Copies the labs into a learner's folder, as masters or as student copies.

    Copies every ``NN_*.ipynb`` of ``source_dir`` (outputs cleared; with ``student``,
    solutions stubbed and hidden tests removed), every other file or folder the labs
    may use (figures and the like), and writes a short ``README.md``. The labs load
    their data through the installed ``leakage_lab`` package, so nothing else is needed.

    Args:
        source_dir: the master labs (``notebooks/``).
        out_dir: the learner's folder; created if missing.
        student: write student copies instead of the full labs.
        force: write into a folder that is not empty, replacing files of the same names.

    Returns:
        The paths written, notebooks first.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``force`` is false.
        ValueError: ``out_dir`` is ``source_dir`` or inside it, or there are no labs.
    """
    source_dir, out_dir = Path(source_dir).resolve(), Path(out_dir).resolve()
    if out_dir == source_dir or source_dir in out_dir.parents:
        raise ValueError(f"Refusing to write into the master labs' folder {source_dir}: "
                         "choose a folder outside it.")
    labs = sorted(source_dir.glob(_LAB))
    if not labs:
        raise ValueError(f"Expected lab notebooks NN_name.ipynb in {source_dir}, found none.")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        count = sum(1 for _ in out_dir.iterdir())
        raise FileExistsError(
            f"{out_dir} is not empty ({count} entries). Choose a new or empty folder, or pass "
            "--force to write the labs into it anyway (files with the labs' names are "
            "replaced, so a learner's work in them is lost).")
    copies = {}  # all made before any is written: an unbalanced marker writes nothing
    for path in labs:
        nb = json.loads(path.read_text(encoding="utf-8"))
        copies[path.name] = student_notebook(nb, name=path.name) if student else \
            _clean_notebook(nb)
    out_dir.mkdir(parents=True, exist_ok=True)

    written = []
    for name, nb in copies.items():
        _write_notebook(nb, out_dir / name)
        written.append(out_dir / name)
    for path in sorted(source_dir.iterdir()):
        if path in labs or path.name in _SKIP or path.suffix == ".ipynb":
            continue
        target = out_dir / path.name
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*_SKIP))
        else:
            shutil.copy2(path, target)
        written.append(target)
    readme = out_dir / "README.md"
    readme.write_text(_WORKSPACE_README.format(
        kind="Student copies of the leakage-lab labs" if student else "The leakage-lab labs",
        first=labs[0].name,
        exercises=_STUDENT_NOTE if student else _MASTER_NOTE), encoding="utf-8")
    written.append(readme)
    return written
