"""Fixtures shared by test modules."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS, NOTEBOOKS, free_port, wait_for_server


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The course site for lab 01 in quick mode, built once per session through the
    command (``leakage-lab site OUT --quick --labs 01``): yields (folder, its output).
    tests/test_site.py checks its structure, tests/test_browser_site.py and
    tests/test_browser_figures.py open it.

    Under pytest-xdist those modules may run on different workers; the first to ask
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


# -- the browser tests (tests/test_browser_*.py; what they share is in tests/_browser.py) --

@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """JupyterLab serving a temporary copy of the labs; yields (base URL, token, root)."""
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "labs"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port, token = free_port(), os.urandom(16).hex()
    # A clean JupyterLab: no news toast over the screenshots, no nbgrader panels (its
    # lab extension is installed with the dev extra).
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyter/nbgrader": True}}), encoding="utf-8")
    env = dict(os.environ, LEAKAGE_LAB_QUICK="1",
               JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (home / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(server, f"{base}/api/status?token={token}",
                        home / "jupyterlab.log", "JupyterLab")
        yield base, token, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (one per browser test module)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=False,
                                     args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    """Where the browser tests save their screenshots: ``$LEAKAGE_LAB_SCREENSHOTS`` if set,
    else pytest's temporary folder (under pytest-xdist, one folder of the run's shared
    temporary folder, so that the modules' screenshots stay together whichever worker
    took them)."""
    folder = os.environ.get("LEAKAGE_LAB_SCREENSHOTS")
    if folder:
        path = Path(folder)
    elif not os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.mktemp("screenshots")
    else:
        path = tmp_path_factory.getbasetemp().parent / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
