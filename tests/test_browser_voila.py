"""Lab 09's dashboard as a code-free page (``leakage-lab dashboard``, Voilà), in a real
browser: every control is visible but the unused strength knobs (helpers and fixtures:
tests/_browser.py and tests/conftest.py).
"""

import os
import signal
import subprocess
import sys

import pytest
from _browser import (
    KNOBS,
    LAB_TIMEOUT,
    NEEDS_CHROMIUM,
    free_port,
    hidden_controls,
    require_playwright,
    wait_for_server,
)

pytestmark = NEEDS_CHROMIUM
require_playwright()


@pytest.fixture(scope="module")
def voila_dashboard(tmp_path_factory):
    """``leakage-lab dashboard`` (Voilà) on a free port; yields its URL."""
    pytest.importorskip("voila", reason="Voilà is not installed (pip install -e '.[demo]')")
    port = free_port()
    home = tmp_path_factory.mktemp("voila")
    log = (home / "voila.log").open("w")
    env = dict(os.environ, LEAKAGE_LAB_QUICK="1", JUPYTER_CONFIG_DIR=str(home / "config"),
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    # A session of its own, so that stopping it also stops the kernels Voilà started.
    server = subprocess.Popen([sys.executable, "-m", "leakage_lab.cli", "dashboard",
                               f"--port={port}", "--no-browser"],
                              cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://localhost:{port}"
    try:
        wait_for_server(server, f"{base}/api/kernelspecs", home / "voila.log", "Voilà")
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_dashboard_controls_visible_under_voila(browser, voila_dashboard, screenshots):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(voila_dashboard, timeout=LAB_TIMEOUT * 1000)
        page.wait_for_selector(".leakage-lab-dashboard button.leakage-lab-run",
                               timeout=LAB_TIMEOUT * 1000)
        hidden, controls = hidden_controls(page, ".leakage-lab-dashboard")
        page.eval_on_selector(".leakage-lab-dashboard",
                              "el => el.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(screenshots / "09_voila_dashboard.png"))
        assert hidden == KNOBS, (
            f"under Voilà only the knobs {sorted(KNOBS)} may be hidden; hidden: "
            f"{sorted(hidden)} ({controls})")
    finally:
        page.close()
