"""Build hook: the labs ship inside the package as student copies, never as the masters.

Everything else about the package is in pyproject.toml. At build time (``pip install .``,
``pip wheel .``, ``python -m build``), ``build_py`` writes a student copy of every
``notebooks/NN_*.ipynb`` (solutions replaced by stubs, hidden tests removed, outputs
cleared: ``leakage_lab/student.py``) into the build's ``leakage_lab/labs/``. The masters,
answers included, stay in the source tree; nothing generated is written into it.

An sdist gets the same student copies in ``leakage_lab/labs/`` instead of ``notebooks/``,
so a wheel built from it also has them. An editable install (``pip install -e .``) writes
nothing: there ``leakage-lab`` reads the masters in ``notebooks/`` itself.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
MASTERS = ROOT / "notebooks"
LABS = "labs"  # leakage_lab/labs/ in the built package
PATTERN = "[0-9][0-9]_*.ipynb"


def _student_module():
    """leakage_lab/student.py, loaded on its own: the build environment may lack JAX, and
    importing the package would import JAX. (student.py uses the standard library only.)"""
    spec = importlib.util.spec_from_file_location("_leakage_lab_student",
                                                  ROOT / "leakage_lab" / "student.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_student_labs(target: Path) -> list[Path]:
    """Student copies of the masters in ``target`` (replaced whole), plus any other file the
    labs use (figures and the like). Raises if there are no masters or a marker is open."""
    masters = sorted(MASTERS.glob(PATTERN))
    if not masters:
        raise SystemExit(f"leakage-lab build: no labs {PATTERN} in {MASTERS}; the package "
                         "would ship without its labs.")
    if target.exists():
        shutil.rmtree(target)
    written = _student_module().write_student_copies(MASTERS, target)
    for path in sorted(MASTERS.iterdir()):  # figures etc., never another notebook
        if path.suffix == ".ipynb" or path.name.startswith(".") or path.name == "__pycache__":
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name,
                            ignore=shutil.ignore_patterns(".*", "__pycache__", "*.ipynb"))
        else:
            shutil.copy2(path, target / path.name)
        written.append(target / path.name)
    for path in target.rglob("*"):  # the promise this hook exists for, checked
        if path.is_file() and path.suffix in (".ipynb", ".py", ".md", ".txt", ".json"):
            text = path.read_text(encoding="utf-8", errors="replace")
            for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
                if marker in text:
                    raise SystemExit(f"leakage-lab build: {path} still holds {marker!r}.")
    return written


class BuildPyWithStudentLabs(build_py):
    """``build_py`` plus the student copies of the labs in ``<build_lib>/leakage_lab/labs``."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads notebooks/ from the source tree
        target = Path(self.build_lib) / "leakage_lab" / LABS
        if MASTERS.is_dir():
            written = write_student_labs(target)
            self.announce(f"leakage-lab: {len(written)} student labs -> {target}", level=2)
        elif sorted((ROOT / "leakage_lab" / LABS).glob(PATTERN)):  # building from an sdist
            shutil.copytree(ROOT / "leakage_lab" / LABS, target, dirs_exist_ok=True)
        else:
            raise SystemExit("leakage-lab build: neither notebooks/ nor leakage_lab/labs/ "
                             "holds the labs; the package would ship without them.")


class SdistWithStudentLabs(sdist):
    """An sdist carries the student copies (leakage_lab/labs/), never the masters."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        masters = Path(base_dir) / "notebooks"
        if masters.exists():
            shutil.rmtree(masters)
        write_student_labs(Path(base_dir) / "leakage_lab" / LABS)


setup(cmdclass={"build_py": BuildPyWithStudentLabs, "sdist": SdistWithStudentLabs})
