"""A wheel that works and holds no answers.

Builds the wheel from a copy of this source tree (as a fresh clone would: tracked and
untracked-but-not-ignored files), offline, with the installed setuptools
(`pip wheel --no-deps --no-build-isolation`), and checks that

- it holds the package, the bundled data and the labs as *student copies* (setup.py's
  build hook), and no master, no test, no solution block, no hidden test;
- the build wrote nothing into the source tree;
- an sdist carries the same student copies instead of notebooks/ and tests/, and a wheel
  built from it has them too;
- installed into a fresh venv (`--system-site-packages`, `pip install --no-deps`: nothing
  is downloaded), from a folder outside the checkout, the venv's own `leakage_lab` runs
  `leakage-lab list`, `workspace DIR --student` and `demo` (PSNR >= 30 dB), and refuses
  `workspace DIR` without `--student` with a pointer to a source clone.

The in-process tests at the end check the same wheel-mode paths of the CLI (`lab N`
included, which would start JupyterLab) against a stand-in folder of student copies.
"""

import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from _helpers import load, regions, sources

from leakage_lab import cli
from leakage_lab.student import student_notebook, write_student_copies

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LABS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
STUB = "raise NotImplementedError()"
BUILD_TIMEOUT = 600
DEMO_TIMEOUT = 900  # the demo takes 30-60 s; the CPU may be shared


def _installed(name: str) -> str | None:
    """The installed version of a distribution, or None. Read from the package metadata:
    ``importlib.util.find_spec("pip")`` would make setuptools' distutils shim stand down
    for the rest of this process, and nbgrader (imported by later tests) then fails."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _wheel_tooling() -> str | None:
    """Why a wheel cannot be built offline here, or None."""
    setuptools = _installed("setuptools")
    if setuptools is None:
        return "setuptools is not installed"
    if _installed("pip") is None:
        return "pip is not installed"
    major, minor = (int(part) for part in setuptools.split(".")[:2])
    if (major, minor) < (70, 1) and _installed("wheel") is None:
        return "neither setuptools >= 70.1 nor the wheel package provides bdist_wheel"
    return None


pytestmark = pytest.mark.skipif(_wheel_tooling() is not None,
                                reason=f"cannot build a wheel offline: {_wheel_tooling()}")




def _code(text):
    """Lines stripped, blank lines and comments dropped: how a block is compared."""
    return "\n".join(s for s in (line.strip() for line in text.split("\n"))
                     if s and not s.startswith("#"))


def secret_blocks(masters):
    """Every solution and hidden-test block of every master, as ``(lab, block)``."""
    found = []
    for path in sorted(masters.glob("[0-9][0-9]_*.ipynb")):
        for text in sources(load(path)):
            for begin, end in (MARKERS[:2], MARKERS[2:]):
                found += [(path.name, _code("\n".join(b))) for b in regions(text, begin, end)]
    return [(name, block) for name, block in found if block]


def secret_lines(master):
    """Non-trivial lines inside a master's marked regions that appear nowhere else in it."""
    outside, inside = set(), []
    for text in sources(master):
        marked = regions(text, *MARKERS[:2]) + regions(text, *MARKERS[2:])
        hidden = {line for block in marked for line in block}
        inside += [line.strip() for line in hidden]
        outside |= {line.strip() for line in text.split("\n") if line not in hidden}
    return sorted({s for s in inside if len(s) > 3 and not s.startswith("#") and s not in outside})


def _copy_source_tree(target: Path) -> Path:
    """The files a fresh clone would have (plus uncommitted, non-ignored work)."""
    files = None
    if (ROOT / ".git").exists() and shutil.which("git"):
        run = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True)
        if run.returncode == 0:
            files = [f for f in run.stdout.decode().split("\0") if f]
    if files is None:
        ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                        ".ipynb_checkpoints", ".venv", "venv", "*.pyc")
        shutil.copytree(ROOT, target, ignore=ignore)
        return target
    for name in files:
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _build_wheel(source: Path, out: Path) -> Path:
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                          "--no-build-isolation", "--no-index", "-w", str(out)],
                         cwd=source, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert run.returncode == 0, f"pip wheel failed:\n{run.stdout}\n{run.stderr}"
    wheels = sorted(out.glob("leakage_lab-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}: {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _copy_source_tree(tmp_path_factory.mktemp("clone") / "leakage-lab")


@pytest.fixture(scope="module")
def masters(source):
    """The masters the wheel was built from (others may edit the checkout's meanwhile)."""
    return source / "notebooks"


def _snapshot(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def pristine(source):
    """Every file of the copied tree before the build."""
    return _snapshot(source)


@pytest.fixture(scope="module")
def wheel(source, pristine, tmp_path_factory):
    return _build_wheel(source, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def contents(wheel):
    """{name in the wheel: bytes}."""
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# -- what the wheel holds --------------------------------------------------------------------


def test_wheel_holds_the_package_data_and_student_labs_only(contents, wheel, source):
    names = sorted(contents)
    strays = [n for n in names
              if not (n.startswith("leakage_lab/") or n.startswith("leakage_lab-"))]
    assert not strays, f"files outside the package in the wheel: {strays}"
    for banned in ("tests/", "notebooks/", "benchmarks/", "binder/"):
        assert not [n for n in names if banned in n], f"{banned} is in the wheel"
    assert not [n for n in names if n.endswith(("conftest.py", "setup.py"))]
    labs = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("leakage_lab/labs/"))
    assert labs == [p.name for p in LABS], "the wheel should carry one copy of every lab"
    data = {n.rsplit("/", 1)[1] for n in names if n.startswith("leakage_lab/data/files/")}
    assert {"tiny-images.npz", "digits.npz", "README.md"} <= data
    # every module of the source tree's packages is in it (data/files/ is data, not one)
    modules = sorted(str(p.relative_to(source)) for p in (source / "leakage_lab").rglob("*.py")
                     if (p.parent / "__init__.py").exists())
    assert [m for m in modules if m.replace(os.sep, "/") not in contents] == []
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1e6:.2f} MB, {len(names)} files")


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_packaged_lab_is_the_student_copy(path, contents, masters):
    copy = json.loads(contents[f"leakage_lab/labs/{path.name}"])
    master = load(masters / path.name)
    text = "\n".join(sources(copy))
    for marker in MARKERS:
        assert marker not in text, f"{path.name}: {marker!r} is in the wheel's copy"
    copied = {line.strip() for line in text.split("\n")}
    for line in secret_lines(master):
        assert line not in copied, f"{path.name}: the answer line {line!r} is in the wheel"
    assert sources(copy) == sources(student_notebook(master, name=path.name))
    assert text.count(STUB) == sum(len(regions(t, *MARKERS[:2])) for t in sources(master))
    for cell in copy["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_no_file_in_the_wheel_holds_an_answer(contents, masters, source):
    """No solution or hidden-test block of any master, in any file of the wheel; no marker
    and no answer line in any file but the library's own modules (student.py names the
    markers it replaces) and METADATA (the README, which names them too). The library's
    source is visible by design (INSTRUCTORS.md), which is why the self-checks are guarded;
    it is this tree's source, byte for byte."""
    blocks = secret_blocks(masters)
    assert blocks, "the masters should hold solution blocks"
    answer_lines = {line for path in masters.glob("*.ipynb") for line in secret_lines(load(path))}
    for name, data in contents.items():
        if name.endswith(".npz"):
            continue
        text = data.decode("utf-8", errors="replace")
        code = _code(text)
        for lab, block in blocks:
            assert block not in code, f"{name} holds a solution block of {lab}:\n{block}"
        if name.endswith(".py"):
            assert data == (source / name).read_bytes(), f"{name} differs from the source tree"
            continue
        if name.endswith(".dist-info/METADATA"):
            continue
        for marker in MARKERS:
            assert marker not in text, f"{name} holds {marker!r}"
        lines = {line.strip() for line in text.split("\n")}
        leaked = sorted(answer_lines & lines)
        assert not leaked, f"{name} holds answer lines: {leaked}"


def test_the_build_writes_nothing_into_the_source_tree(source, pristine, wheel):
    """Only setuptools' own scratch folders (build/, *.egg-info/, both git-ignored) appear;
    the masters and everything else are untouched, and no leakage_lab/labs/ is made."""
    after = _snapshot(source)
    assert {k: v for k, v in after.items() if k in pristine} == pristine
    new = sorted(k for k in after if k not in pristine)
    assert [k for k in new if not k.startswith(("build" + os.sep, "leakage_lab.egg-info"))] == []
    assert not (source / "leakage_lab" / "labs").exists()


def test_sdist_carries_student_copies_and_builds_a_wheel_with_them(source, tmp_path):
    sdist_dir = tmp_path / "sdist"
    run = subprocess.run([sys.executable, "-c",
                          "import sys; from setuptools import build_meta as b; "
                          "print(b.build_sdist(sys.argv[1]))", str(sdist_dir)],
                         cwd=source, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    archive = sdist_dir / run.stdout.strip().splitlines()[-1]  # leakage_lab- or leakage-lab-
    assert archive.name.endswith(".tar.gz") and archive.exists(), run.stdout
    with tarfile.open(archive) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert not [n for n in names if n.startswith(("notebooks", "tests"))], names
    labs = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("leakage_lab/labs/"))
    assert labs == [p.name for p in LABS]
    (tree,) = (tmp_path / "unpacked").iterdir()
    for path in tree.rglob("*"):
        if path.is_file() and path.suffix == ".ipynb":
            text = path.read_text(encoding="utf-8")
            assert not [m for m in MARKERS if m in text], f"{path.name} holds a marker"
    with zipfile.ZipFile(_build_wheel(tree, tmp_path / "dist")) as wheel:
        from_sdist = sorted(n for n in wheel.namelist() if n.startswith("leakage_lab/labs/"))
    assert [n.rsplit("/", 1)[1] for n in from_sdist] == [p.name for p in LABS]


# -- the wheel installed in a fresh venv -----------------------------------------------------


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A venv that holds the wheel itself and sees the test runner's packages (JAX etc.).

    The runner's site-packages are listed in a ``.pth`` file of the new venv: their own
    ``.pth`` hooks (an editable install of the checkout) do not run there, so nothing
    but the wheel provides ``leakage_lab``. (``--system-site-packages`` would give the
    base interpreter's packages instead, which a CI venv does not use.)"""
    home = tmp_path_factory.mktemp("venv")
    env_dir = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True,
                   timeout=300)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "test-runner-packages.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    run = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                          "--force-reinstall", "--disable-pip-version-check", str(wheel)],
                         cwd=home, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    script = python.parent / ("leakage-lab.exe" if os.name == "nt" else "leakage-lab")
    assert script.exists(), "the wheel installed no leakage-lab command"
    work = home / "work"  # outside the checkout: nothing there shadows the installed package
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {"dir": env_dir, "python": python, "script": script, "cwd": work, "env": env}


def _run(venv, *args, timeout=300):
    return subprocess.run([str(venv["script"]), *args], cwd=venv["cwd"], env=venv["env"],
                          capture_output=True, text=True, timeout=timeout)


def test_the_venv_imports_the_wheel_not_the_checkout(venv):
    run = subprocess.run([str(venv["python"]), "-c",
                          "import leakage_lab, leakage_lab.cli as c; print(leakage_lab.__file__);"
                          " print(c.NOTEBOOKS); print(c.student_copies_only())"],
                         cwd=venv["cwd"], env=venv["env"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    module, labs, packaged = run.stdout.split("\n")[:3]
    venv_dir = venv["dir"].resolve()
    assert venv_dir in Path(module).resolve().parents, f"imported {module}, not the wheel's"
    assert venv_dir in Path(labs).resolve().parents and Path(labs).name == "labs"
    assert packaged == "True"


def test_installed_list_shows_every_lab(venv):
    run = _run(venv, "list")
    assert run.returncode == 0, run.stderr
    for path in LABS:
        assert re.search(rf"^{path.name[:2]}  .*\({re.escape(path.name)}\)$", run.stdout, re.M), \
            f"{path.name} is not listed:\n{run.stdout}"
    assert "student copies" in run.stdout
    assert _run(venv, "lab", "97").returncode == 2


def test_installed_workspace_student_writes_the_labs_and_full_is_refused(venv, masters):
    target = venv["cwd"] / "fl-labs"
    run = _run(venv, "workspace", str(target), "--student")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in target.glob("*.ipynb")) == [p.name for p in LABS]
    for path in LABS:
        copy = load(target / path.name)
        assert sources(copy) == sources(student_notebook(load(masters / path.name)))
    assert (target / "README.md").exists()

    full = venv["cwd"] / "full"
    run = _run(venv, "workspace", str(full))
    assert run.returncode == 2
    assert "only in a source clone" in run.stderr and "--student" in run.stderr
    assert not full.exists() or not any(full.iterdir())


def test_installed_demo_recovers_the_photo(venv):
    out = venv["cwd"] / "demo.png"
    run = _run(venv, "demo", "--out", str(out), timeout=DEMO_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    match = re.search(r"PSNR (-?[\d.]+) dB", run.stdout)
    assert match, run.stdout
    print(f"\ndemo from the wheel: PSNR {match.group(1)} dB")
    assert float(match.group(1)) >= 30, run.stdout
    assert out.stat().st_size > 10_000


# -- the CLI's wheel mode, in process (a stand-in folder of packaged student copies) ---------


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    labs = tmp_path / "site-packages" / "leakage_lab" / "labs"
    write_student_copies(NOTEBOOKS, labs)
    monkeypatch.setattr(cli, "NOTEBOOKS", labs)
    monkeypatch.setattr(cli, "PACKAGED", labs)
    return labs


def test_a_checkout_reads_the_masters():
    assert cli.NOTEBOOKS == cli.MASTERS == NOTEBOOKS
    assert not cli.student_copies_only()


def test_lab_from_a_wheel_opens_a_learners_copy(packaged, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, cwd: calls.append((cmd, cwd)) or 0)
    work = tmp_path / "mine"
    assert cli.main(["lab", "1", "--dir", str(work)]) == 0
    (command, cwd), lab = calls[-1], work / LABS[1].name
    assert command[-1] == str(lab) and Path(cwd) == work
    assert sorted(p.name for p in work.glob("*.ipynb")) == [p.name for p in LABS]
    assert "Wrote student copies" in capsys.readouterr().out
    lab.write_text("my work", encoding="utf-8")
    (work / LABS[2].name).unlink()
    assert cli.main(["lab", "1", "--dir", str(work)]) == 0
    assert lab.read_text(encoding="utf-8") == "my work", "a learner's copy was overwritten"
    assert cli.main(["lab", "2", "--dir", str(work)]) == 0  # a missing lab is copied again
    assert "BEGIN SOLUTION" not in (work / LABS[2].name).read_text(encoding="utf-8")
    assert sorted(p.name for p in packaged.iterdir()) == [p.name for p in LABS]


def test_workspace_from_a_wheel_needs_student(packaged, tmp_path, capsys):
    assert cli.main(["workspace", str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err
    assert "only in a source clone" in err and "--student" in err
    assert not (tmp_path / "full").exists()
    assert cli.main(["workspace", str(tmp_path / "ws"), "--student"]) == 0
    assert cli.main(["list"]) == 0
    assert "student copies" in capsys.readouterr().out
