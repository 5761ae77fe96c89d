"""Student copies and workspaces: no answer survives, the stubs stop a run where they
should, every self-check explains a wrong answer, and nbgrader makes the same copies.

The labs are found by glob (notebooks/NN_*.ipynb); the masters themselves are run by
nbval (pytest's notebooks/ path), so they are not executed again here.
"""

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import load, regions, sources

import leakage_lab.checks
from leakage_lab import cli
from leakage_lab.student import student_notebook, student_source, write_workspace

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LABS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
STUB = "raise NotImplementedError()"
# Executing a student copy up to its first stub: generous, the CPU may be shared.
CELL_TIMEOUT = 600




def secret_lines(master, begin, end):
    """Non-trivial lines inside the marked regions that appear nowhere else in the master
    (a line such as `return total` that also sits outside a region proves nothing)."""
    outside, inside = [], []
    for text in sources(master):
        marked = regions(text, begin, end)
        inside += [line.strip() for block in marked for line in block]
        hidden = {line for block in marked for line in block}
        outside += [line.strip() for line in text.split("\n") if line not in hidden]
    outside = set(outside)
    return sorted({line for line in inside if len(line) > 3 and not line.startswith("#")
                   and line not in outside})


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """Student copies of every lab, written by the command instructors use."""
    out = tmp_path_factory.mktemp("student")
    assert cli.main(["student", str(out)]) == 0
    return out


def test_every_lab_gets_a_copy(copies):
    assert LABS, f"no labs in {NOTEBOOKS}"
    assert sorted(p.name for p in copies.glob("*.ipynb")) == [p.name for p in LABS]


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_student_copy_has_no_answers_and_no_outputs(path, copies):
    master, copy = load(path), load(copies / path.name)
    text = "\n".join(sources(copy))
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"{path.name}: the marker {marker!r} survived"
    answers = secret_lines(master, "BEGIN SOLUTION", "END SOLUTION")
    hidden = secret_lines(master, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
    copied = {line.strip() for line in text.split("\n")}
    for line in answers + hidden:
        assert line not in copied, f"{path.name}: the answer line {line!r} survived"
    solutions = sum(len(regions(t, "BEGIN SOLUTION", "END SOLUTION")) for t in sources(master))
    assert text.count(STUB) == solutions, f"{path.name}: one stub per solution expected"
    # Everything else is the master's, cell for cell.
    assert len(copy["cells"]) == len(master["cells"])
    for i, (a, b) in enumerate(zip(sources(master), sources(copy), strict=True)):
        if "BEGIN SOLUTION" not in a and "BEGIN HIDDEN TESTS" not in a:
            assert a == b, f"{path.name} cell {i} differs from the master"
    for i, cell in enumerate(copy["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, \
                f"{path.name} cell {i} keeps an output"
    assert "widgets" not in copy.get("metadata", {})


def test_student_source_handles_hidden_tests_markdown_and_bad_markers():
    src = ("x = 1\n### BEGIN HIDDEN TESTS\nassert secret() == 3\n### END HIDDEN TESTS\n"
           "def f():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION\n")
    assert student_source(src) == "x = 1\ndef f():\n    # YOUR CODE HERE\n    " + STUB + "\n"
    md = "Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\n"
    assert student_source(md, "markdown") == "Why?\n\nYOUR ANSWER HERE\n"
    for bad, msg in [("### BEGIN SOLUTION\nsecret = 1\n", "never closed"),
                     ("secret = 1\n### END SOLUTION\n", "without"),
                     ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside"),
                     ("### BEGIN HIDDEN TESTS\nassert 1\n", "never closed")]:
        with pytest.raises(ValueError, match=msg):
            student_source(bad)


def test_student_notebook_clears_outputs_and_widget_state():
    nb = {"cells": [{"cell_type": "code", "source": ["print(1)"], "execution_count": 3,
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": "1"}],
                     "metadata": {}}],
          "metadata": {"widgets": {"state": {}}}, "nbformat": 4, "nbformat_minor": 5}
    copy = student_notebook(nb)
    assert copy["cells"][0]["outputs"] == [] and copy["cells"][0]["execution_count"] is None
    assert "widgets" not in copy["metadata"] and nb["cells"][0]["outputs"]  # input untouched


# -- running a student copy: it stops at the first stub, and nothing before it breaks ---


def first_stub(nb):
    """(index of the first stub cell, index of the first self-check after it)."""
    texts = sources(nb)
    stub = next(i for i, t in enumerate(texts) if STUB in t)
    check = next((i for i in range(stub + 1, len(texts))
                  if re.search(r"\bchecks\.\w+\s*\(", texts[i])), stub)
    return stub, check


EXERCISED = [p for p in LABS if "### BEGIN SOLUTION" in p.read_text(encoding="utf-8")]
# Running a copy up to its first stub costs 15-60 s per lab. Every other cell of a copy is
# the master's (tested above for every lab), the masters run under nbval, and every
# self-check is fed the stub below; so by default two of the cheapest labs are run end to
# end, and LEAKAGE_LAB_STUDENT_RUNS=all runs every lab (before a course, say).
CHEAP = ("00_fl_primer.ipynb", "06_fedavg_simulation.ipynb")
RUN = (EXERCISED if os.environ.get("LEAKAGE_LAB_STUDENT_RUNS", "").lower() == "all"
       else [p for p in EXERCISED if p.name in CHEAP] or EXERCISED[:1])


@pytest.mark.parametrize("path", RUN, ids=lambda p: p.name)
def test_running_a_student_copy_stops_at_the_first_stub(path, copies, tmp_path):
    """Runs the copy cell by cell in quick mode until it fails. The failure must be the
    first stub: NotImplementedError in the stub's cell, or, when the stub sits in a
    function body, in the self-check that calls it (which reports the
    NotImplementedError in its hint). Cells after that are not run."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(copies / path.name, as_version=4)
    stub, check = first_stub(nb)
    os.environ["LEAKAGE_LAB_QUICK"] = "1"  # conftest sets it too; the kernel inherits it
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    failed = None
    with client.setup_kernel():
        for index in range(check + 1):
            try:
                client.execute_cell(nb.cells[index], index)
            except CellExecutionError as err:
                failed = (index, err)
                break
    assert failed is not None, (
        f"{path.name}: cells 0-{check} ran without error, but cell {stub} holds a stub: "
        "the self-check after it accepted a NotImplementedError?")
    index, err = failed
    assert index >= stub, (
        f"{path.name}: cell {index} failed before the first stub (cell {stub}): "
        f"{err.ename}: {err.evalue}")
    assert index in (stub, check), f"{path.name}: cell {index} failed, not the stub or its check"
    if index == stub:
        assert err.ename == "NotImplementedError", f"{path.name}: {err.ename}: {err.evalue}"
    else:
        assert err.ename in ("CheckFailed", "NotImplementedError"), \
            f"{path.name}: the self-check failed with {err.ename}: {err.evalue}"
        assert "NotImplementedError" in f"{err.ename}: {err.evalue}", \
            f"{path.name}: the self-check's message should name the stub: {err.evalue}"


# -- the self-checks: every one explains a wrong answer ----------------------------------


def check_functions():
    return [name for name in leakage_lab.checks.__all__
            if inspect.isfunction(getattr(leakage_lab.checks, name))]


def test_every_check_has_a_wrong_answer_test():
    """Each ll.checks function is fed a wrong answer somewhere in tests/test_checks*.py,
    under pytest.raises(CheckFailed, match=<its hint>)."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in ROOT.glob("tests/test_checks*.py")}
    missing = []
    for name in check_functions():
        if not any(re.search(rf"\bchecks\.{name}\s*\(", t) and "CheckFailed" in t
                   and re.search(r"pytest\.raises\([^)]*CheckFailed[^)]*match=", t)
                   for t in texts.values()):
            missing.append(name)
    assert not missing, \
        f"no wrong-answer test (pytest.raises(CheckFailed, match=...)) for {missing}"


def _stub(*args, **kwargs):
    raise NotImplementedError()


def takes_a_function(name):
    params = list(inspect.signature(getattr(leakage_lab.checks, name)).parameters.values())
    return bool(params) and (params[0].name == "fn" or "Callable" in str(params[0].annotation))


@pytest.mark.parametrize("name", [n for n in check_functions() if takes_a_function(n)])
def test_a_check_given_the_student_stub_fails_with_a_hint(name):
    """What a learner who runs the self-check before writing the answer sees."""
    with pytest.raises(leakage_lab.checks.CheckFailed, match="NotImplementedError"):
        getattr(leakage_lab.checks, name)(_stub)


# -- workspace ----------------------------------------------------------------------------


def test_workspace_full_and_student(tmp_path, capsys):
    full, student = tmp_path / "full", tmp_path / "student"
    assert cli.main(["workspace", str(full)]) == 0
    assert cli.main(["workspace", str(student), "--student"]) == 0
    assert "start with" in capsys.readouterr().out
    for path in LABS:
        master = load(path)
        assert sources(load(full / path.name)) == sources(master)
        assert sources(load(student / path.name)) == sources(student_notebook(master))
    assert (student / "README.md").read_text(encoding="utf-8").count("YOUR CODE HERE")
    assert "BEGIN SOLUTION" not in "".join(
        p.read_text(encoding="utf-8") for p in student.glob("*.ipynb"))


def test_workspace_refuses_a_non_empty_folder_without_force(tmp_path, capsys):
    (tmp_path / "my_notes.txt").write_text("mine", encoding="utf-8")
    assert cli.main(["workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err
    assert not list(tmp_path.glob("*.ipynb"))
    assert cli.main(["workspace", str(tmp_path), "--force", "--student"]) == 0
    assert len(list(tmp_path.glob("*.ipynb"))) == len(LABS)
    assert (tmp_path / "my_notes.txt").read_text(encoding="utf-8") == "mine"


def test_workspace_refuses_the_masters_folder(tmp_path, monkeypatch, capsys):
    masters = tmp_path / "notebooks"  # a stand-in, so a regression cannot touch the real ones
    masters.mkdir()
    shutil.copy(LABS[0], masters / LABS[0].name)
    monkeypatch.setattr(cli, "NOTEBOOKS", masters)
    for target in (masters, masters / "copies"):
        assert cli.main(["workspace", str(target), "--force"]) == 2
        assert "master labs" in capsys.readouterr().err
        assert cli.main(["student", str(target)]) == 2
    assert sorted(p.name for p in masters.iterdir()) == [LABS[0].name]


def test_workspace_copies_other_lab_files(tmp_path):
    source = tmp_path / "labs"
    (source / "figures").mkdir(parents=True)
    shutil.copy(LABS[0], source / LABS[0].name)
    (source / "figures" / "a.png").write_bytes(b"png")
    (source / ".ipynb_checkpoints").mkdir()
    written = write_workspace(source, tmp_path / "out", student=True)
    assert (tmp_path / "out" / "figures" / "a.png").read_bytes() == b"png"
    assert not (tmp_path / "out" / ".ipynb_checkpoints").exists()
    assert written[0].name == LABS[0].name


# -- nbgrader: the same masters give the same student copies --------------------------


def _synthetic_lab():
    """A lab with what the real ones may not have yet: hidden tests, a markdown answer."""
    def cell(kind, text):
        extra = {"outputs": [], "execution_count": None} if kind == "code" else {}
        return {"cell_type": kind, "metadata": {}, "source": text, **extra}

    return {"cells": [cell("markdown", "# Lab 99 — synthetic"),
                      cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return x + x\n"
                                   "    ### END SOLUTION"),
                      cell("code", "assert double(2) == 4\n### BEGIN HIDDEN TESTS\n"
                                   "assert double(21) == 42\n### END HIDDEN TESTS"),
                      cell("markdown", "Why?\n\n### BEGIN SOLUTION\nBecause doubling.\n"
                                       "### END SOLUTION")],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def test_nbgrader_generate_assignment_matches_our_student_copies(tmp_path):
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install -e '.[dev]')")
    source = tmp_path / "course" / "source" / "labs"
    source.mkdir(parents=True)
    for path in LABS:
        shutil.copy(path, source / path.name)
    (source / "99_synthetic.ipynb").write_text(json.dumps(_synthetic_lab()), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "labs", "--no-db",
         "--no-metadata", f"--course-dir={tmp_path / 'course'}"],
        cwd=tmp_path / "course", capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    release = tmp_path / "course" / "release" / "labs"
    names = sorted(p.name for p in source.glob("*.ipynb"))
    assert sorted(p.name for p in release.glob("*.ipynb")) == names
    for name in names:
        master = load(source / name)
        theirs, ours = load(release / name), student_notebook(master)
        assert sources(theirs) == sources(ours), f"{name}: nbgrader's copy differs from ours"
        text = "\n".join(sources(theirs))
        for line in secret_lines(master, "BEGIN SOLUTION", "END SOLUTION") + \
                secret_lines(master, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert line not in text, f"{name}: {line!r} survived nbgrader"
    synthetic = "\n".join(sources(load(release / "99_synthetic.ipynb")))
    assert "x + x" not in synthetic and "double(21)" not in synthetic
    assert "YOUR ANSWER HERE" in synthetic and STUB in synthetic
