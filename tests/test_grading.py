"""Grading that a learner cannot fake: ``leakage-lab grade`` and nbgrader's autograder.

* ``leakage-lab grade`` runs only the answer cells of each submission in a fresh kernel,
  then the grader's own checks: the master passes, a stub fails, a library-delegating
  answer fails with the guard's hint, and an answer that rebinds the check (and the
  library) in its own kernel still fails — for every exercise through the grader's
  session (in-process), and end to end for lab 01 (kernels).
* nbgrader: the masters' metadata is what :func:`grading.with_nbgrader_metadata` writes;
  ``nbgrader generate_assignment`` + ``autograde`` in a temporary course give full marks to
  the master, zero to the stubs and zero to delegating answers (labs 00 and 01, cut to
  their imports, answers and checks, so the test takes a minute or two; set
  ``LEAKAGE_LAB_FULL_NBGRADER=1`` to autograde the whole labs, several minutes each).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import leakage_lab as ll
from leakage_lab import cli, grading
from leakage_lab.checks import _guard
from leakage_lab.student import student_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LABS = sorted(NOTEBOOKS.glob("0[0-8]_*.ipynb"))

# An answer per lab that delegates to the library (in the function's answer cell).
DELEGATING = {
    "00": {"fedavg_average": "def fedavg_average(client_params, sizes):\n"
                             "    return ll.fl.average(client_params, sizes)\n"},
    "01": {"l2_distance": "from leakage_lab.distances import l2 as mine\n\n\n"
                          "def l2_distance(observed, candidate):\n"
                          "    return mine(observed, candidate)\n"},
}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def save(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")


def with_answers(nb: dict, answers: dict[str, str]) -> dict:
    """``nb`` with the answer cells of the given grade_ids replaced."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return nb


# -- the masters' metadata ------------------------------------------------------------------

@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_masters_carry_nbgrader_metadata(path):
    nb = load(path)
    assert grading.with_nbgrader_metadata(nb) == nb, \
        f"{path.name}: run python -m leakage_lab.grading notebooks/*.ipynb"
    answers = [c for c in nb["cells"] if "BEGIN SOLUTION" in "".join(c["source"])]
    assert answers and all(c["metadata"]["nbgrader"]["solution"] for c in answers)
    tests = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert len(tests) == len(grading.exercises(nb))
    for cell in tests:
        meta = cell["metadata"]["nbgrader"]
        assert meta["locked"] and meta["points"] > 0
        assert "BEGIN HIDDEN TESTS" in "".join(cell["source"])
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"]
           if "nbgrader" in c["metadata"]]
    assert len(ids) == len(set(ids)), f"{path.name}: grade_ids must be unique"


# -- the grader's session, in-process, for every exercise ------------------------------------

def _exercises():
    for path in LABS:
        for exercise in grading.exercises(load(path)):
            yield pytest.param(exercise, id=f"{path.name[:2]}-{exercise.check}")


@pytest.mark.parametrize("exercise", list(_exercises()))
def test_rebinding_the_check_or_the_library_changes_no_grade(exercise):
    """A wrong answer plus ``ll.checks.X = lambda fn: print("✓")`` and the library's own
    function rebound: the learner's kernel would say ✓, the grader says fail."""
    namespace: dict = {"ll": ll}
    session = grading.Session(namespace)
    spec = _guard.EXERCISES[exercise.check]
    module, _, name = spec.forbidden[0].rpartition(".")
    exec(textwrap.dedent(f"""
        import importlib, sys
        def {exercise.function}(*args, **kwargs):
            return None
        ll.checks.{exercise.check} = lambda fn: print("✓ fine")
        sys.modules["leakage_lab.checks"].{exercise.check} = ll.checks.{exercise.check}
        importlib.import_module("{module}").{name} = lambda *a, **k: None
    """), namespace)  # noqa: S102
    try:
        import io
        from contextlib import redirect_stdout

        out = io.StringIO()
        with redirect_stdout(out):
            ll.checks.__dict__[exercise.check](namespace[exercise.function])
        assert out.getvalue().startswith("✓")  # the learner's kernel is fooled
        result = json.loads(session.run(exercise.check, exercise.function))
        assert result["status"] == "fail", result
        assert grading.library_unchanged() == []  # and the grader put everything back
    finally:
        session.snapshot.restore()


def test_library_unchanged_sees_a_rebound_check():
    original = ll.checks.gradient_distance
    try:
        ll.checks.gradient_distance = lambda fn: None
        assert grading.library_unchanged() == ["leakage_lab.checks.gradient_distance"]
        with pytest.raises(AssertionError, match="changed the library"):
            grading.hidden_check("gradient_distance", lambda a, b: 0.0)
    finally:
        ll.checks.gradient_distance = original
    assert grading.library_unchanged() == []


# -- leakage-lab grade, end to end ------------------------------------------------------------

def test_grade_command(tmp_path, capsys):
    """Four learners on lab 01, one notebook each, each in a fresh kernel."""
    master = load(NOTEBOOKS / "01_dlg.ipynb")
    subs = tmp_path / "submitted"
    save(master, subs / "ada" / "01_dlg.ipynb")
    save(student_notebook(master), subs / "bob" / "01_dlg.ipynb")
    save(with_answers(master, DELEGATING["01"]), subs / "cy" / "01_dlg.ipynb")
    rebinding = with_answers(master, {"l2_distance": (
        "def l2_distance(observed, candidate):\n"
        "    return 0.0\n"
        "ll.checks.gradient_distance = lambda fn: print('✓ looks fine')\n"
        "ll.distances.l2 = lambda a, b: 0.0\n")})
    rebinding["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {},
                               "outputs": [], "source": "import sys; sys.exit('never run')"})
    save(rebinding, subs / "dee" / "labs" / "01_dlg.ipynb")  # nbgrader's layout
    out = tmp_path / "grades.csv"
    assert cli.main(["grade", str(subs), "--out", str(out), "--timeout", "600"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == list(grading.COLUMNS)
    exercises = ("gradient_distance", "dlg_loss", "dlg_step")   # lab 01's, in order
    assert len(rows) == 4 * len(exercises)
    assert all(r["lab"] == "01_dlg" and r["exercise"] in exercises for r in rows)
    for learner in ("ada", "bob"):   # the master passes everything, the stubs fail everything
        mine = [r for r in rows if r["learner"] == learner]
        assert [r["exercise"] for r in mine] == list(exercises)
        assert all(r["status"] == ("pass" if learner == "ada" else "fail") for r in mine), mine
    got = {r["learner"]: r for r in rows if r["exercise"] == "gradient_distance"}
    assert set(got) == {"ada", "bob", "cy", "dee"}
    assert got["ada"]["status"] == "pass" and got["ada"]["hint"].startswith("✓")
    assert got["bob"]["status"] == "fail" and "NotImplementedError" in got["bob"]["hint"]
    assert got["cy"]["status"] == "fail"
    assert "you called `ll.distances.l2`" in got["cy"]["hint"]
    assert got["dee"]["status"] == "fail" and "returned 0" in got["dee"]["hint"]
    assert f"{4 * len(exercises)} grades written" in capsys.readouterr().out


# -- nbgrader ---------------------------------------------------------------------------------

def _cut(master: dict) -> dict:
    """The master's graded cells only: its imports, answer cells and check cells."""
    nb = json.loads(json.dumps(master))
    imports = {"cell_type": "code", "execution_count": None, "id": "imports", "metadata": {},
               "outputs": [], "source": grading.preamble(master)}
    kept = [c for c in nb["cells"] if "nbgrader" in c.get("metadata", {})]
    nb["cells"] = [nb["cells"][0], imports, *kept]
    return nb


def _nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "LEAKAGE_LAB_QUICK": "1"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("full", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(
        not os.environ.get("LEAKAGE_LAB_FULL_NBGRADER"),
        reason="set LEAKAGE_LAB_FULL_NBGRADER=1 to autograde the whole labs (slow)")),
], ids=["graded-cells", "whole-labs"])
def test_nbgrader_autograde(tmp_path, full):
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install -e '.[dev]')")
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    labs = {"00_fl_primer": load(NOTEBOOKS / "00_fl_primer.ipynb"),
            "01_dlg": load(NOTEBOOKS / "01_dlg.ipynb")}
    if not full:
        labs = {name: _cut(nb) for name, nb in labs.items()}
    for name, nb in labs.items():
        save(nb, course / "source" / "labs" / f"{name}.ipynb")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.ExecutePreprocessor.timeout = 1200\n", encoding="utf-8")
    _nbgrader(course, "generate_assignment", "labs")

    for name in labs:
        release = load(course / "release" / "labs" / f"{name}.ipynb")
        released = "".join("".join(c["source"]) for c in release["cells"])
        assert "BEGIN SOLUTION" not in released and "HIDDEN" not in released
        answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"]
                   for c in labs[name]["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
        for student, nb in (("master", with_answers(release, answers)),
                            ("stubs", release),
                            ("delegating", with_answers(release, DELEGATING[name[:2]]))):
            save(nb, course / "submitted" / student / "labs" / f"{name}.ipynb")
    _nbgrader(course, "autograde", "labs", "--create")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {(s, nb.name): (nb.score, nb.max_score)
                  for s in ("master", "stubs", "delegating")
                  for nb in gb.find_submission("labs", s).notebooks}
    for name in labs:
        score, top = scores["master", name]
        assert top > 0 and score == top, (name, scores)
        assert scores["stubs", name][0] == 0, (name, scores)
        assert scores["delegating", name][0] == 0, (name, scores)
