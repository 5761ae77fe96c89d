"""Fixtures shared by test modules."""

import fcntl
import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The course site for lab 01 in quick mode, built once per session through the
    command (``leakage-lab site OUT --quick --labs 01``): yields (folder, its output).
    tests/test_site.py checks its structure and tests/test_browser.py opens it.

    Under pytest-xdist those two modules may run on different workers; the first to ask
    builds the site in the run's shared temporary folder (under a file lock) and the others
    reuse it, so it is built once per run, not once per worker."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # no xdist: the session's own folder
        root = tmp_path_factory.mktemp("site")
    else:
        root = tmp_path_factory.getbasetemp().parent / "shared-site-01"
        root.mkdir(exist_ok=True)
    out, record = root / "site", root / "build.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not record.exists():
            command = [sys.executable, "-m", "leakage_lab.cli", "site", str(out), "--quick",
                       "--labs", "01"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
            assert done.returncode == 0, \
                f"the site build failed:\n{done.stdout}\n{done.stderr}"
            record.write_text(json.dumps({"stdout": done.stdout}), encoding="utf-8")
        stdout = json.loads(record.read_text(encoding="utf-8"))["stdout"]
    return out, stdout
