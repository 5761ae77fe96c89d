"""Every lab has the course structure: a header with level, prerequisites, time and goals;
exercises between nbgrader's markers, each followed by a self-check; at least one quiz.

The labs are found by glob, so a new lab is checked as soon as it lands in notebooks/.
"""

import ast
import json
import pkgutil
import re
from pathlib import Path

import pytest

import leakage_lab
import leakage_lab.checks

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LABS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
LEVELS = ("basic", "intermediate", "advanced")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
CHECK_CALL = re.compile(r"\bchecks\.(\w+)\s*\(")


def cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c["cell_type"], "".join(c.get("source", []))) for c in nb["cells"]]


def header(path):
    kind, text = cells(path)[0]
    assert kind == "markdown", f"{path.name}: the first cell must be the markdown header"
    return text


def test_labs_are_found():
    assert len(LABS) >= 5, f"expected the labs in {NOTEBOOKS}, found {[p.name for p in LABS]}"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_header_has_title_level_prerequisites_time_goals(path):
    text = header(path)
    number = path.name[:2]
    assert re.match(rf"# Lab {number} — \S", text), \
        f"{path.name}: the header must start with '# Lab {number} — Title', got {text[:40]!r}"
    level = re.search(r"\*\*Level:\*\*(.*?)(?:·|\*\*|\n\n)", text, re.DOTALL)
    assert level, f"{path.name}: no **Level:** in the header"
    named = [word for word in LEVELS if word in level.group(1).lower()]
    assert named, f"{path.name}: **Level:** must say one of {LEVELS}, got {level.group(1)!r}"
    assert re.search(r"\*\*Prerequisites:\*\*\s*\S", text), f"{path.name}: no **Prerequisites:**"
    if int(number) > 0:
        assert re.search(r"\]\(\d\d_\w+\.ipynb\)", text), \
            f"{path.name}: the prerequisites should link to the earlier labs ([Lab NN](NN_x.ipynb))"
    time = re.search(r"\*\*Time:\*\*(.*?)(?:\n\n|$)", text, re.DOTALL)
    assert time, f"{path.name}: no **Time:** in the header"
    assert re.search(r"\d+\s*minutes", time.group(1)), \
        f"{path.name}: **Time:** must give minutes, got {time.group(1)!r}"
    goals = re.search(r"\*\*Learning goals", text)
    assert goals, f"{path.name}: no **Learning goals** in the header"
    numbered = re.findall(r"^\s*\d+\.\s+\S", text[goals.end():], re.MULTILINE)
    assert len(numbered) >= 2, f"{path.name}: the learning goals must be a numbered list"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_markers_are_balanced_and_on_their_own_lines(path):
    for index, (kind, text) in enumerate(cells(path)):
        open_ = {"SOLUTION": False, "HIDDEN TESTS": False}
        for number, line in enumerate(text.split("\n"), start=1):
            found = [m for m in MARKERS if m in line]
            if not found:
                continue
            where = f"{path.name} cell {index} line {number}"
            # nbgrader treats ANY line containing a marker as a marker.
            assert re.fullmatch(r"\s*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*", line), \
                f"{where}: {line.strip()!r} contains a marker but is not a marker line"
            assert kind == "code", f"{where}: markers belong in code cells"
            begin, what = line.split()[1], line.split(maxsplit=2)[2].strip()
            if begin == "BEGIN":
                assert not any(open_.values()), f"{where}: nested or unclosed marker before"
                open_[what] = True
            else:
                assert open_[what], f"{where}: END {what} without BEGIN {what}"
                open_[what] = False
        assert not any(open_.values()), f"{path.name} cell {index}: a marker is never closed"


def defined_names(source):
    """Names a cell defines at top level (functions, classes, assignments)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_every_exercise_has_a_self_check(path):
    all_cells = cells(path)
    exercises = [i for i, (kind, text) in enumerate(all_cells)
                 if kind == "code" and "### BEGIN SOLUTION" in text]
    for index in exercises:
        names = defined_names(all_cells[index][1])
        later = [text for kind, text in all_cells[index + 1:]
                 if kind == "code" and CHECK_CALL.search(text)]
        assert later, f"{path.name} cell {index}: the exercise is not followed by a " \
                      "self-check calling ll.checks"
        if names:
            assert any(re.search(rf"\b{re.escape(n)}\b", t) for t in later for n in names), (
                f"{path.name} cell {index}: no later self-check is given what the exercise "
                f"defines ({sorted(names)})")


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_self_checks_exist_in_the_library(path):
    for index, (kind, text) in enumerate(cells(path)):
        if kind != "code":
            continue
        for name in CHECK_CALL.findall(text):
            assert callable(getattr(leakage_lab.checks, name, None)), \
                f"{path.name} cell {index}: ll.checks has no check {name!r}"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_each_lab_has_a_quiz(path):
    quizzes = [text for kind, text in cells(path) if kind == "code" and re.search(
        r"\bQuiz\s*\(", text)]
    assert quizzes, f"{path.name}: no quiz (from leakage_lab.quiz import Quiz; Quiz(...))"


# -- trust: a threat model, the code, baselines beside scores, references ------------------

THREAT_ROWS = ("Who attacks", "What it knows", "What it observes", "Success")
ROOT = NOTEBOOKS.parent
# A quality score computed or shown in a code cell, and the update-free guesses beside it.
SCORE = re.compile(r"\b(psnr|ssim|rec_pct|score_batch|Rec%)\b", re.IGNORECASE)
BASELINE = re.compile(r"\b(baseline_scores|guesses|blank_guess|pixel_mean_guess|"
                      r"label_mean_guess)\s*\(")


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_threat_model_box_near_the_top(path):
    top = [text for kind, text in cells(path)[:3] if kind == "markdown"]
    box = next((text for text in top if re.search(r"^#+\s*Threat model", text, re.M)), None)
    assert box, f"{path.name}: no '### Threat model' box among the first three cells"
    missing = [row for row in THREAT_ROWS if f"**{row}**" not in box]
    assert not missing, f"{path.name}: the threat model does not say {missing}"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_says_which_module_implements_it(path):
    text = "\n".join(t for kind, t in cells(path) if kind == "markdown")
    line = re.search(r"\*\*The code:\*\*(.*?)(?:\n\n|$)", text, re.DOTALL)
    assert line, f"{path.name}: no '**The code:**' line naming the modules the lab uses"
    named = re.findall(r"`(leakage_lab/[\w/]+\.py)`", line.group(1))
    assert named, f"{path.name}: the code line names no leakage_lab/... .py file"
    for module in named:
        assert (ROOT / module).exists(), f"{path.name}: names {module}, which does not exist"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_scores_stand_beside_the_update_free_guesses(path):
    code = "\n".join(t for kind, t in cells(path) if kind == "code")
    if not SCORE.search(code):
        pytest.skip(f"{path.name} scores no reconstruction")
    assert BASELINE.search(code), (
        f"{path.name} computes PSNR/SSIM/Rec% but never the update-free guesses "
        "(ll.metrics.baseline_scores / guesses) to show beside them")


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_ends_with_references(path):
    refs = [t for kind, t in cells(path) if kind == "markdown"
            and re.search(r"^#+\s*References", t, re.M)]
    assert refs, f"{path.name}: no '## References' section"
    entries = re.split(r"^\s*[*-]\s+", refs[-1], flags=re.M)[1:]
    assert entries, f"{path.name}: the references section lists nothing"
    undated = [e[:60] for e in entries if not re.search(r"\b(19|20)\d\d\b", e)]
    assert not undated, f"{path.name}: references without a year: {undated}"


# -- "Predict, then run" (issue 15, item 2) --------------------------------------------------

PREDICT = "**Predict, then run.**"
COMPARE = "compare_prediction"


def _prediction_names(source):
    """The ``predicted_*`` names a cell assigns, or a reason the cell is not just that."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return None, f"does not parse ({error.msg})"
    names = []
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            return None, f"does more than record a prediction (line {node.lineno})"
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if not (isinstance(target, ast.Name) and target.id.startswith("predicted_")):
                return None, f"assigns {ast.unparse(target)!r}, not a predicted_... name"
            names.append(target.id)
        try:
            ast.literal_eval(node.value)
        except ValueError:
            return None, (f"gives {names[-1]} the default {ast.unparse(node.value)!r}, "
                          "which is not a plain value (a number, a word, True/False)")
    if not names:
        return None, "records nothing (write e.g. predicted_psnr_db = 20.0)"
    return names, None


def _comparisons(source):
    """(name of the predicted_ variable, measured argument node) for each compare call."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name != COMPARE or len(node.args) < 2:
            continue
        first = node.args[0]
        if isinstance(first, ast.Name):
            found.append((first.id, node.args[1]))
    return found


# A call into the library's modules (``ll.fl.train(``, or ``toy.risk(`` after ``from leakage_lab
# import toy``), not counting the quiz itself or the settings helper.
_MODULES = sorted({m.name for m in pkgutil.iter_modules(leakage_lab.__path__)}
                  - {"quiz", "config"})
LIBRARY_CALL = re.compile(rf"\b(?:ll\.)?(?:{'|'.join(_MODULES)})\.\w+\s*\(")


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_predict_then_run(path):
    """At least one 'Predict, then run': the question in markdown, the next code cell only
    records ``predicted_... = <default>`` (outside solution markers), and a later cell runs
    the experiment through the library and calls ``ll.quiz.compare_prediction`` on it."""
    all_cells = cells(path)
    asks = [i for i, (kind, text) in enumerate(all_cells)
            if kind == "markdown" and PREDICT in text]
    assert asks, (f"{path.name}: no 'Predict, then run' cell — a markdown cell with "
                  f"'{PREDICT}' and a question is missing")
    for index in asks:
        where = f"{path.name} cell {index}"
        question = all_cells[index][1].split(PREDICT, 1)[1].strip()
        assert len(question) >= 15, f"{where}: '{PREDICT}' is not followed by the question"
        following = [j for j in range(index + 1, len(all_cells)) if all_cells[j][0] == "code"]
        assert following, f"{where}: no code cell after the question to record the prediction"
        record = following[0]
        source = all_cells[record][1]
        assert "### BEGIN SOLUTION" not in source, \
            f"{path.name} cell {record}: the prediction must not sit inside solution markers"
        names, problem = _prediction_names(source)
        assert names, f"{path.name} cell {record} (the prediction cell) {problem}"
        later = all_cells[record + 1:]
        for name in names:
            uses = [(record + 1 + k, measured) for k, (kind, text) in enumerate(later)
                    if kind == "code" for first, measured in _comparisons(text) if first == name]
            assert uses, (f"{path.name}: {name} (cell {record}) is never compared with a "
                          f"measurement: a later cell must call ll.quiz.{COMPARE}({name}, ...)")
            at, measured = uses[0]
            assert not isinstance(measured, ast.Constant), (
                f"{path.name} cell {at}: {COMPARE}({name}, ...) compares with the constant "
                f"{measured.value!r}; compare with what the lab measures")
            experiment = [text for kind, text in all_cells[record + 1:at + 1] if kind == "code"]
            assert any(LIBRARY_CALL.search(text) for text in experiment), (
                f"{path.name}: between the prediction (cell {record}) and its comparison "
                f"(cell {at}) no cell runs the experiment through the library "
                "(ll.<module>.…, not ll.config)")


def _notebook(tmp_path, *cells_):
    nb = {"cells": [{"cell_type": kind, "metadata": {}, "source": text,
                     **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                    for kind, text in cells_],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


ASK = ("markdown", f"{PREDICT} Will TV on or off give the higher PSNR? Write it below.")
RECORD = ("code", 'predicted_winner = "on"  # "on" or "off"')
RUN = ("code", "psnr = ll.metrics.psnr(a, b)\nll.quiz.compare_prediction(predicted_winner, w)")


@pytest.mark.parametrize("broken, words", [
    ((("markdown", "No question here."), RECORD, RUN), "no 'Predict, then run' cell"),
    ((ASK, ("code", 'predicted_winner = "on"\nrun()'), RUN), "does more than record"),
    ((ASK, ("code", "winner = 'on'"), RUN), "not a predicted_... name"),
    ((ASK, ("code", "predicted_winner = guess()"), RUN), "not a plain value"),
    ((ASK, ("code", '### BEGIN SOLUTION\npredicted_winner = "on"\n### END SOLUTION'), RUN),
     "solution markers"),
    ((ASK, RECORD, ("code", "psnr = ll.metrics.psnr(a, b)")), "never compared"),
    ((ASK, RECORD, ("code", "ll.metrics.psnr(a, b)\n"
                            "ll.quiz.compare_prediction(predicted_winner, 'on')")), "constant"),
    ((ASK, RECORD, ("code", "ll.quiz.compare_prediction(predicted_winner, w)")),
     "through the library"),
])
def test_predict_then_run_check_catches_each_slip(tmp_path, broken, words):
    with pytest.raises(AssertionError, match=re.escape(words)):
        test_predict_then_run(_notebook(tmp_path, *broken))


def test_predict_then_run_check_passes_the_convention(tmp_path):
    test_predict_then_run(_notebook(tmp_path, ASK, RECORD, ("markdown", "Now run it."), RUN))
