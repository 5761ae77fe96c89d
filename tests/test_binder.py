"""binder/ and pyproject.toml agree: Binder runs pinned versions of every runtime
dependency, each allowed by pyproject, and installs the package itself."""

import os
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs Python 3.11+")

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pins() -> dict[str, Requirement]:
    found = {}
    for number, line in enumerate((BINDER / "requirements.txt").read_text(
            encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, \
            f"binder/requirements.txt line {number}: expected a pin name==X.Y.Z, got {line!r}"
        name = canonicalize_name(req.name)
        assert name not in found, f"binder/requirements.txt pins {req.name} twice"
        found[name] = req
    return found


def pinned_version(req: Requirement) -> Version:
    return Version(next(iter(req.specifier)).version)


def test_requirements_pin_exact_versions():
    assert pins(), "binder/requirements.txt pins nothing"


@pytest.mark.parametrize("dependency", PROJECT["dependencies"])
def test_every_runtime_dependency_is_pinned_within_pyproject(dependency):
    req = Requirement(dependency)
    pinned = pins().get(canonicalize_name(req.name))
    assert pinned is not None, f"binder/requirements.txt does not pin {req.name} ({dependency})"
    version = pinned_version(pinned)
    assert req.specifier.contains(version, prereleases=True), \
        f"binder pins {req.name}=={version}, which pyproject's {dependency!r} does not allow"


def test_widget_frontend_is_pinned():
    """ipywidgets 8 renders in JupyterLab through jupyterlab_widgets: without it the
    live reconstructions show as plain text."""
    assert "jupyterlab-widgets" in pins()
    assert pinned_version(pins()["ipywidgets"]).major >= 8


def test_runtime_python_is_allowed_by_pyproject():
    runtime = BINDER / "runtime.txt"
    if not runtime.exists():
        pytest.skip("no binder/runtime.txt: Binder picks its default Python")
    text = runtime.read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", text)
    assert match, f"binder/runtime.txt should read python-X.Y, got {text!r}"
    assert SpecifierSet(PROJECT["requires-python"]).contains(match.group(1) + ".0"), \
        f"Binder's Python {match.group(1)} is outside requires-python {PROJECT['requires-python']}"


def test_post_build_installs_the_package_without_touching_the_pins():
    post = BINDER / "postBuild"
    assert post.exists(), "binder/postBuild is missing"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable"
    text = post.read_text(encoding="utf-8")
    assert text.startswith("#!"), "binder/postBuild needs a shebang line"
    install = re.search(r"pip install (.*)", text)
    assert install and "--no-deps" in install.group(1) and re.search(r"(^|\s)\.(\s|$)",
                                                                     install.group(1)), \
        "postBuild should install this package (pip install --no-deps -e .)"


def test_readme_badge_opens_lab_00():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    badge = re.search(r"\[!\[[^\]]*\]\(https://mybinder\.org/badge_logo\.svg\)\]"
                      r"\((https://mybinder\.org/v2/gh/[^)\s]+)\)", readme)
    assert badge, "README.md has no Binder badge"
    first = sorted((ROOT / "notebooks").glob("00_*.ipynb"))[0].name
    assert badge.group(1).endswith(f"?labpath=notebooks%2F{first}"), \
        f"the Binder badge should open notebooks/{first}: {badge.group(1)}"
