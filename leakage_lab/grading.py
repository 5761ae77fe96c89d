"""Grading submitted labs in a fresh process: ``leakage-lab grade SUBMISSIONS_DIR``.

Layout: one folder per learner, holding that learner's submitted labs under their usual
names, at any depth (so nbgrader's ``submitted/`` folder works as it is)::

    SUBMISSIONS_DIR/<learner>/01_dlg.ipynb
    SUBMISSIONS_DIR/<learner>/<assignment>/01_dlg.ipynb      (nbgrader's layout)

For every submitted notebook, the lab with the same number (the masters in a clone, the
packaged student copies in a wheel) is the *template*: its answer cells (nbgrader
``solution`` cells, or cells with ``### BEGIN SOLUTION``) say which cells of the
submission are answers, and its self-check cells (``ll.checks.NAME(function)``) say which
check grades which function. Then, in a fresh Jupyter kernel (nbclient):

1. the template's own import statements run (``import leakage_lab as ll``...), and the
   state of the library is recorded (every attribute of every ``leakage_lab`` module and
   the code of every function in them, and the top-level namespaces of numpy and jax);
2. **only the source of the submission's answer cells** runs (matched by nbgrader
   ``grade_id``, else by the function they define); the learner's self-check cells and
   everything else in the notebook are never run;
3. for each exercise, the recorded library state is put back (so an answer that
   rebinds ``ll.checks.gradient_distance`` or ``ll.distances.l2`` changes nothing), JAX's
   compilation caches are cleared, and the grader's own check runs under the guard
   (:mod:`leakage_lab.checks._guard`: the library's own answer to the exercise fails).

One CSV row per learner and exercise: ``learner, lab, exercise, function, status, hint``
with status ``pass`` (the check's ✓ line as hint), ``fail`` (the check's hint), or
``error`` (the function is missing, an answer cell or the kernel failed).

:func:`hidden_check` is what the masters' nbgrader hidden tests call: the same check after
verifying that the loaded library matches its source files.

A notebook kernel is not a sandbox: the learner's code runs in the grading process. The
grader defends against delegating to the library and against redefining the library or
the checks; it does not defend against code written to attack the grader itself.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import secrets
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Exercise", "answer_cells", "exercises", "grade", "grade_notebook", "hidden_check",
           "library_unchanged", "preamble", "write_csv"]

COLUMNS = ("learner", "lab", "exercise", "function", "status", "hint")
_CHECK_CALL = re.compile(r"^\s*ll\.checks\.(\w+)\((\w+)\)\s*$", re.M)
_LAB = re.compile(r"^(\d\d)_.*\.ipynb$")


@dataclass(frozen=True)
class Exercise:
    """One graded exercise of a lab: the check, the learner's function, the answer cell."""

    check: str
    function: str
    answer_id: str | None  # nbgrader grade_id of the answer cell, if the template has one
    points: float = 1.0


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_answer(cell) -> bool:
    return cell.get("cell_type") == "code" and (
        bool(_nbgrader(cell).get("solution")) or "BEGIN SOLUTION" in _source(cell))


def _defines(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def answer_cells(nb: dict) -> list[dict]:
    """The code cells of ``nb`` that hold answers (nbgrader ``solution`` or markers)."""
    return [c for c in nb["cells"] if _is_answer(c)]


def exercises(template: dict) -> list[Exercise]:
    """The exercises of a lab: each self-check call ``ll.checks.NAME(fn)`` and the answer
    cell (before it) that defines ``fn``."""
    found, answers = [], []
    for cell in template["cells"]:
        if cell.get("cell_type") != "code":
            continue
        if _is_answer(cell):
            answers.append(cell)
            continue
        for check, function in _CHECK_CALL.findall(_source(cell)):
            answer = next((a for a in reversed(answers) if function in _defines(_source(a))),
                          None)
            grade_id = _nbgrader(answer).get("grade_id") if answer else None
            points = float(_nbgrader(cell).get("points", 1) or 1)
            found.append(Exercise(check, function, grade_id, points))
    return found


def preamble(template: dict) -> str:
    """The template's top-level import statements, outside its answer cells."""
    lines: list[str] = []
    for cell in template["cells"]:
        if cell.get("cell_type") != "code" or _is_answer(cell):
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError:  # a magic: not an import
            continue
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                text = ast.unparse(node)
                if text not in lines:
                    lines.append(text)
    return "\n".join(lines)


def _submitted_answers(submission: dict, template: dict) -> list[str]:
    """The sources of the submission's answer cells, in order.

    A cell counts when its nbgrader ``grade_id`` is one of the template's answer cells;
    without metadata, when it is the last code cell defining an exercise's function.
    """
    ids = {_nbgrader(c).get("grade_id") for c in answer_cells(template)} - {None}
    chosen = [c for c in submission["cells"]
              if c.get("cell_type") == "code" and _nbgrader(c).get("grade_id") in ids]
    if chosen:
        return [_source(c) for c in chosen]
    wanted = {e.function for e in exercises(template)}
    last: dict[str, int] = {}
    code = [c for c in submission["cells"] if c.get("cell_type") == "code"]
    for i, cell in enumerate(code):
        for name in _defines(_source(cell)) & wanted:
            last[name] = i
    return [_source(code[i]) for i in sorted(set(last.values()))]


# -- inside the grading kernel -----------------------------------------------------------

_WATCHED = ("builtins", "numpy", "jax", "jax.numpy", "jax.random", "jax.tree", "scipy.optimize")


class _Snapshot:
    """The library's state: module attributes and function code, to put back later."""

    def __init__(self):
        import types

        self.modules = {name: mod for name, mod in sys.modules.items()
                        if name == "leakage_lab" or name.startswith("leakage_lab.")}
        self.modules.update({n: sys.modules[n] for n in _WATCHED if n in sys.modules})
        self.attrs = {name: dict(vars(mod)) for name, mod in self.modules.items()}
        self.code = {}
        for name, attrs in self.attrs.items():
            if name.startswith("leakage_lab"):
                for value in attrs.values():
                    if isinstance(value, types.FunctionType):
                        self.code[value] = (value.__code__, value.__defaults__,
                                            value.__kwdefaults__)

    def restore(self) -> None:
        for name, mod in self.modules.items():
            sys.modules[name] = mod
            current = vars(mod)
            for key, value in self.attrs[name].items():
                if current.get(key, _MISSING) is not value:
                    setattr(mod, key, value)
        for fn, (code, defaults, kwdefaults) in self.code.items():
            if fn.__code__ is not code:
                fn.__code__ = code
            fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults


_MISSING = object()


class Session:
    """The grader's side of one kernel: created before the answers run."""

    def __init__(self, namespace: dict):
        import leakage_lab.checks

        self.namespace = namespace
        self.snapshot = _Snapshot()
        self.checks = {name: getattr(leakage_lab.checks, name)
                       for name in leakage_lab.checks.__all__}

    def run(self, check: str, function: str) -> str:
        """Runs one check on the learner's function; a JSON ``{"status", "hint"}``."""
        self.snapshot.restore()
        import jax

        jax.clear_caches()
        fn = self.namespace.get(function)
        if not callable(fn):
            return json.dumps({"status": "error", "hint": f"no function `{function}` after "
                               "the answer cells ran: define it in the answer cell."})
        out = io.StringIO()
        try:
            with redirect_stdout(out):
                self.checks[check](fn)
        except AssertionError as err:
            status, hint = "fail", str(err)
        except Exception as err:  # noqa: BLE001 - reported in the grade
            status, hint = "error", f"{type(err).__name__}: {err}"
        else:
            lines = [line for line in out.getvalue().splitlines() if line.startswith("✓")]
            status, hint = ("pass", lines[-1]) if lines else (
                "error", "the check printed no ✓ line")
        finally:
            self.snapshot.restore()
        return json.dumps({"status": status, "hint": hint})


# -- the parent process ------------------------------------------------------------------

def grade_notebook(submission: dict, template: dict, *, timeout: float = 300.0,
                   kernel_name: str = "python3") -> list[dict]:
    """Grades one submitted notebook against its lab's template; one dict per exercise."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    todo = exercises(template)
    session = f"_leakage_lab_grader_{secrets.token_hex(8)}"
    setup = (f"{preamble(template)}\nimport leakage_lab.grading\n"
             f"{session} = leakage_lab.grading.Session(globals())")
    answers = _submitted_answers(submission, template)
    cells = [nbformat.v4.new_code_cell(setup)]
    cells += [nbformat.v4.new_code_cell(src) for src in answers]
    cells += [nbformat.v4.new_code_cell(f"{session}.run({e.check!r}, {e.function!r})")
              for e in todo]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name,
                                 "language": "python"}
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                            record_timing=False)
    failure = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as err:
        failure = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}"

    def error_of(cell) -> str | None:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
        return None

    setup_error = error_of(nb.cells[0])
    answer_errors = [e for e in map(error_of, nb.cells[1:1 + len(answers)]) if e]
    rows = []
    for exercise, cell in zip(todo, nb.cells[1 + len(answers):], strict=True):
        result = None
        for output in cell.get("outputs", []):
            if output.get("output_type") == "execute_result":
                try:
                    result = json.loads(ast.literal_eval(output["data"]["text/plain"]))
                except (ValueError, SyntaxError, KeyError):
                    result = None
        if result is None:
            why = (setup_error and f"the grader's setup failed: {setup_error}") or \
                error_of(cell) or failure or "the check did not run"
            result = {"status": "error", "hint": why}
        if result["status"] != "pass" and answer_errors:
            result["hint"] += f" (an answer cell raised {answer_errors[0]})"
        rows.append({"exercise": exercise.check, "function": exercise.function, **result})
    return rows


def _learner_notebooks(submissions: Path):
    for learner in sorted(p for p in submissions.iterdir() if p.is_dir()):
        for path in sorted(learner.rglob("[0-9][0-9]_*.ipynb")):
            if ".ipynb_checkpoints" not in path.parts:
                yield learner.name, path


def grade(submissions: Path, *, labs: Path, timeout: float = 300.0,
          progress=None) -> list[dict]:
    """Grades every ``SUBMISSIONS/<learner>/**/NN_*.ipynb`` against ``labs/NN_*.ipynb``."""
    templates = {m.group(1): p for p in sorted(labs.glob("[0-9][0-9]_*.ipynb"))
                 if (m := _LAB.match(p.name))}
    rows = []
    for learner, path in _learner_notebooks(Path(submissions)):
        lab = path.name[:2]
        template_path = templates.get(lab)
        if template_path is None:
            rows.append({"learner": learner, "lab": path.stem, "exercise": "", "function": "",
                         "status": "error", "hint": f"no lab {lab} to grade {path.name} against"})
            continue
        template = json.loads(template_path.read_text(encoding="utf-8"))
        if progress:
            progress(f"grading {learner}: {path.name}")
        try:
            submission = json.loads(path.read_text(encoding="utf-8"))
            results = grade_notebook(submission, template, timeout=timeout)
        except (OSError, ValueError, KeyError) as err:
            results = [{"exercise": e.check, "function": e.function, "status": "error",
                        "hint": f"could not read {path.name}: {err}"}
                       for e in exercises(template)]
        rows += [{"learner": learner, "lab": template_path.stem, **r} for r in results]
    return rows


def write_csv(rows: list[dict], out: Path) -> None:
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in COLUMNS} for row in rows)


# -- nbgrader's hidden tests -------------------------------------------------------------

def _unwrap(obj):
    import functools

    for _ in range(10):
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif hasattr(obj, "_fun") and hasattr(obj, "clear_cache"):  # jax.jit
            obj = obj._fun
        elif hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
        else:
            break
    return obj


def library_unchanged() -> list[str]:
    """The names in loaded ``leakage_lab`` modules that no longer match the source files:
    a ``def`` whose function now runs other code, or a name imported from another
    ``leakage_lab`` module that now points elsewhere (``ll.checks.X = lambda fn: ...``)."""
    import types

    changed = []
    for name, mod in sorted(sys.modules.items()):
        if not (name == "leakage_lab" or name.startswith("leakage_lab.")) or mod is None:
            continue
        path = getattr(mod, "__file__", None) or ""
        if not path.endswith(".py"):
            continue
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
        except (OSError, SyntaxError):
            continue
        consts = {c.co_name: c for c in compile(tree, path, "exec").co_consts
                  if isinstance(c, types.CodeType)}
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        current = vars(mod)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in consts:
                fn, want = _unwrap(current.get(node.name)), consts[node.name]
                if not (isinstance(fn, types.FunctionType) and fn.__code__.co_code ==
                        want.co_code and fn.__code__.co_names == want.co_names):
                    changed.append(f"{name}.{node.name}")
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    source = f"{base}.{source}" if source else base
                origin = sys.modules.get(source)
                if origin is None or not source.startswith("leakage_lab"):
                    continue
                for alias in node.names:
                    sub = sys.modules.get(f"{source}.{alias.name}")
                    want = sub if sub is not None else getattr(origin, alias.name, _MISSING)
                    if want is not _MISSING and current.get(alias.asname or alias.name,
                                                            _MISSING) is not want:
                        changed.append(f"{name}.{alias.asname or alias.name}")
    return changed


def hidden_check(check: str, fn) -> None:
    """nbgrader's hidden test: the library is unchanged, then the check runs again."""
    changed = library_unchanged()
    if changed:
        raise AssertionError(f"the notebook changed the library ({', '.join(changed[:5])}): "
                             "grades need the library as installed.")
    import jax

    import leakage_lab.checks

    jax.clear_caches()
    getattr(leakage_lab.checks, check)(fn)


# -- the command ---------------------------------------------------------------------------

GRADE_HELP = """\
Grades submitted labs in fresh kernels: only each submission's answer cells run (matched
to the lab's answer cells by nbgrader grade_id, else by the function they define), then
the grader's own checks run under the guard. The learner's self-check cells are never
used. Layout: SUBMISSIONS_DIR/<learner>/NN_name.ipynb, or any folders below <learner>
(nbgrader's submitted/<learner>/<assignment>/NN_name.ipynb works as it is). Writes one
CSV row per learner and exercise: learner, lab, exercise, function, status
(pass/fail/error), hint."""


def add_parser(sub) -> None:
    """Registers ``leakage-lab grade`` on the CLI's subparsers."""
    import argparse

    p = sub.add_parser("grade", help="grade submitted labs in fresh kernels (CSV)",
                       description=GRADE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", help="SUBMISSIONS_DIR: one folder per learner")
    p.add_argument("--out", default="grades.csv", help="the CSV to write (default: %(default)s)")
    p.add_argument("--labs", default=None,
                   help="the labs to grade against (default: the masters in a clone, the "
                        "packaged student copies in a wheel)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds per cell before it counts as an error (default: %(default)s)")
    p.set_defaults(run=command)


def command(args) -> int:
    from leakage_lab import cli

    submissions = Path(args.submissions)
    if not submissions.is_dir():
        print(f"{submissions} is not a folder of learners' folders.", file=sys.stderr)
        return 2
    labs = Path(args.labs) if args.labs else cli.NOTEBOOKS
    rows = grade(submissions, labs=labs, timeout=args.timeout,
                 progress=lambda m: print(m, file=sys.stderr))
    write_csv(rows, Path(args.out))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "error")}
    print(f"{len(rows)} grades written to {args.out}: " +
          ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


# -- nbgrader metadata on the masters ----------------------------------------------------

HIDDEN_TEST = ("### BEGIN HIDDEN TESTS\n"
               "import leakage_lab.grading  # the library unchanged, then the check again\n"
               "leakage_lab.grading.hidden_check({check!r}, {function})\n"
               "### END HIDDEN TESTS")


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def with_nbgrader_metadata(nb: dict, *, points: float = 1) -> dict:
    """``nb`` (a master) with nbgrader's cell metadata, idempotently.

    Each answer cell (``### BEGIN SOLUTION``) becomes an nbgrader solution cell with
    ``grade_id`` the function it defines; each self-check cell ``ll.checks.NAME(fn)``
    becomes a locked autograded test cell worth ``points`` (``grade_id`` ``check_NAME``)
    and gets a hidden test (:func:`hidden_check`) after the visible call.
    """
    nb = json.loads(json.dumps(nb))
    answers: list[dict] = []
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        if "BEGIN SOLUTION" in source:
            names = sorted(_defines(source)) or [f"answer_{len(answers) + 1}"]
            cell.setdefault("metadata", {})["nbgrader"] = {
                "grade": False, "grade_id": names[0], "locked": False, "schema_version": 3,
                "solution": True, "task": False}
            answers.append(cell)
            continue
        calls = _CHECK_CALL.findall(source)
        if not calls:
            continue
        visible = source.split("### BEGIN HIDDEN TESTS")[0].rstrip("\n")
        hidden = "\n".join(HIDDEN_TEST.format(check=c, function=f) for c, f in calls)
        cell["source"] = _lines(f"{visible}\n{hidden}")
        cell.setdefault("metadata", {})["nbgrader"] = {
            "grade": True, "grade_id": "check_" + "_".join(c for c, _ in calls),
            "locked": True, "points": points * len(calls), "schema_version": 3,
            "solution": False, "task": False}
    return nb


def write_nbgrader_metadata(paths) -> list[Path]:
    """Writes :func:`with_nbgrader_metadata` into the notebooks at ``paths`` (the
    masters); returns those that changed."""
    changed = []
    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        new = json.dumps(with_nbgrader_metadata(json.loads(text)), indent=1,
                         ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":  # python -m leakage_lab.grading notebooks/*.ipynb
    for changed_path in write_nbgrader_metadata(sys.argv[1:]):
        print(f"nbgrader metadata written: {changed_path}")
