"""Fixtures shared by test modules."""

import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The course site for lab 01 in quick mode, built once per session through the
    command (``leakage-lab site OUT --quick --labs 01``): yields (folder, its output).
    tests/test_site.py checks its structure and tests/test_browser.py opens it."""
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "leakage_lab.cli", "site", str(out), "--quick",
               "--labs", "01"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"the site build failed:\n{done.stdout}\n{done.stderr}"
    return out, done.stdout
