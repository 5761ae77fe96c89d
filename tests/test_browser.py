"""The live widgets work where learners see them: in JupyterLab, in a real browser.

Starts JupyterLab on 127.0.0.1 (a free port, a token, a temporary copy of the labs so
autosave never touches the masters, quick mode), drives Debian's Chromium through
Playwright's Python API, runs every cell of lab 01 (and of lab 09, the classroom
dashboard, when it exists) with JupyterLab's own Run All command, and checks from the
page that

* the reconstruction image of :class:`leakage_lab.widgets.Live` is rendered (a decoded
  <img> with a non-zero size) and its ``src`` changes while the attack runs,
* no "Error displaying widget" appears anywhere, and no cell ends in an error.

It also opens the executed static pages of labs 01, 05 and 08 (``leakage-lab site
--quick``) in a 1280 x 720 viewport, a projector's, and saves every figure, scrolled into
view, as ``figures_1280x720/labNN_figureKK.png``; each must decode, fit the width and not
be shrunk below half its pixel size.

Screenshots mid-run and at the end go to ``$LEAKAGE_LAB_SCREENSHOTS`` if set, else to
pytest's temporary folder. Skipped, with the reason, where Chromium is not installed
(``apt-get install chromium``; never ``playwright install``, which downloads a browser).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = os.environ.get("LEAKAGE_LAB_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Quick mode runs lab 01 in well under a minute on 2 idle cores; a shared CI machine
# can be several times slower.
LAB_TIMEOUT = 900

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"Chromium not found at {CHROMIUM}: the browser test needs Debian's Chromium "
           "(apt-get install chromium; .ci/run installs it where apt is available)")

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail("JupyterLab exited: " + (home / "jupyterlab.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("JupyterLab did not answer within 180 s: "
                            + (home / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.5)
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
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=False,
                                     args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = os.environ.get("LEAKAGE_LAB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


# Finds the Live widgets' reconstruction images: an <img> in a box captioned
# "reconstruction" (leakage_lab.widgets.Live); the truth sits in a box captioned "truth".
FIND_RECON_JS = """() => [...window.jupyterapp.shell.currentWidget.node
                              .querySelectorAll('img.widget-image')].filter(img => {
    const box = img.closest('.widget-vbox');
    return box && box.textContent.trim().startsWith('reconstruction');
  })"""

# Installed before Run All: records every change of a reconstruction image's src,
# with the Live view's caption ("step N / M ...") at that moment, so no frame is
# missed however fast the attack runs.
WATCH_JS = """() => {
  const find = __FIND__;
  window.__recon = [];
  new MutationObserver(records => {
    for (const r of records) {
      if (r.target.tagName === 'IMG' && find().includes(r.target)) {
        const live = r.target.closest('.widget-vbox').parentElement.parentElement;
        window.__recon.push({src: r.target.src, caption: live.textContent});
      }
    }
  }).observe(document.body, {attributes: true, attributeFilter: ['src'], subtree: true});
}""".replace("__FIND__", FIND_RECON_JS)

# What the page reports, read through JupyterLab's application object (exposed by
# --LabApp.expose_app_in_browser) and the DOM.
STATE_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel;
  const cells = panel && panel.content ? panel.content.widgets : [];
  const code = cells.filter(c => c.model.type === 'code');
  const recon = (__FIND__)();
  const img = recon[0];
  const live = img ? img.closest('.widget-vbox').parentElement.parentElement : null;
  return {
    ready: !!(kernel && panel.content),
    kernel: kernel ? kernel.status : 'none',
    executed: code.filter(c => c.model.executionCount !== null).length,
    code: code.length,
    running: code.filter(c => (c.promptNode && c.promptNode.textContent || '')
                               .includes('*')).length,
    errors: code.flatMap(c => c.model.outputs.toJSON()
                                .filter(o => o.output_type === 'error')
                                .map(o => o.ename + ': ' + o.evalue)),
    widgetErrors: (document.body.textContent.match(/Error displaying widget[^\\n]{0,80}/g)
                   || []),
    recon: recon.length,
    src: img ? img.src : null,
    width: img ? img.naturalWidth : 0,
    complete: img ? img.complete : false,
    caption: live ? live.textContent : '',
    changes: (window.__recon || []).length,
  };
}""".replace("__FIND__", FIND_RECON_JS)

SCROLL_TO_RECON_JS = """() => {
  const img = (__FIND__)()[0];
  if (img) img.closest('.jp-Cell').scrollIntoView({block: 'start'});
  return !!img;
}""".replace("__FIND__", FIND_RECON_JS)


KERNEL_IDLE_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = panel && panel.sessionContext && panel.sessionContext.session;
  return !!(session && session.kernel && session.kernel.status === 'idle');
}"""


def write_notebook(path, code):
    """A notebook of one code cell, for the control tests."""
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                     "source": code, "outputs": []}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


def step_of(caption):
    """(step, total) from the Live caption "step N / M ...", or None."""
    match = re.search(r"step\s*(\d+)\s*/\s*(\d+)", caption or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def run_lab(browser, lab_server, screenshots, name, inspect=None):
    """Opens notebooks/``name`` in JupyterLab, runs all cells, and watches the page.

    Returns what was observed: every change of the reconstruction image's ``src``
    with the caption at that moment, the final state, and the screenshot paths.
    ``inspect(page)``, if given, is called once every cell has run, before the kernel
    shuts down; what it returns is kept under ``"inspected"``.
    """
    base, token, _ = lab_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console_errors = []
    page.on("pageerror", lambda err: console_errors.append(str(err)))
    # A workspace of its own, reset: only this lab is open.
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?token={token}&reset",
              timeout=120_000)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=180_000)
    state = page.evaluate(STATE_JS)
    assert state["ready"] and state["code"] > 0, f"{name}: the notebook did not open: {state}"

    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    page.evaluate(WATCH_JS)
    page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); }")
    stem = Path(name).stem
    mid, scrolled = None, False
    start, idle_since = time.monotonic(), None
    while True:
        state = page.evaluate(STATE_JS)
        if state["recon"] and not scrolled:
            scrolled = page.evaluate(SCROLL_TO_RECON_JS)
        # Mid-run: the attack has drawn a few frames and is not finished.
        step = step_of(state["caption"])
        if mid is None and step and 0 < step[0] < step[1] and state["changes"] >= 3:
            mid = screenshots / f"{stem}_mid_run.png"
            page.screenshot(path=str(mid))
            mid_step = step_of(page.evaluate(STATE_JS)["caption"])
        done = state["executed"] == state["code"] and state["running"] == 0 \
            and state["kernel"] == "idle"
        if done or state["errors"]:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 2:
                break
        else:
            idle_since = None
        if time.monotonic() - start > LAB_TIMEOUT:
            page.screenshot(path=str(screenshots / f"{stem}_timeout.png"))
            pytest.fail(f"{name}: not finished after {LAB_TIMEOUT} s: {state}")
        time.sleep(0.05)
    page.evaluate(SCROLL_TO_RECON_JS)
    end = screenshots / f"{stem}_end.png"
    page.screenshot(path=str(end))
    changes = page.evaluate("() => window.__recon")
    try:
        inspected = inspect(page) if inspect and not state["errors"] else None
    finally:
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        page.close()
    return {"changes": changes, "state": state, "mid": mid,
            "mid_step": mid_step if mid else None, "end": end,
            "seconds": time.monotonic() - start, "page_errors": console_errors,
            "inspected": inspected}


def check_run(name, run):
    state = run["state"]
    report = json.dumps({k: v for k, v in state.items() if k != "src"}, indent=1) + \
        "\npage errors: " + json.dumps(run["page_errors"][:5])
    assert not state["widgetErrors"], f"{name}: {state['widgetErrors']}"
    assert not state["errors"], f"{name}: a cell failed: {state['errors']}"
    assert state["executed"] == state["code"], f"{name}: not every cell ran: {report}"
    assert state["recon"] >= 1 and state["width"] > 0 and state["complete"], \
        f"{name}: the reconstruction image is not rendered: {report}"
    # The picture changed while the attack ran: distinct images at distinct steps
    # before the last one.
    during = [(c["src"], step_of(c["caption"])) for c in run["changes"]]
    running = {src for src, step in during if step and step[0] < step[1]}
    steps = sorted({step[0] for _, step in during if step})
    assert len(running) >= 3 and len(steps) >= 3, (
        f"{name}: while the attack ran, the reconstruction showed {len(running)} distinct "
        f"images at steps {steps}; expected it to change as the attack went on")
    assert run["mid"] is not None and run["mid"].stat().st_size > 10_000, \
        f"{name}: no mid-run screenshot was taken"
    assert run["end"].stat().st_size > 10_000


def test_lab_01_animates_in_jupyterlab(browser, lab_server, screenshots):
    name = "01_dlg.ipynb"
    assert (lab_server[2] / name).exists()
    run = run_lab(browser, lab_server, screenshots, name)
    check_run(name, run)


# Every dashboard control (leakage_lab.dashboard.Dashboard.controls carries the CSS class
# leakage-lab-control-<name>), scrolled into view one by one so that JupyterLab's
# off-screen cell rendering cannot fake a zero size, with its rendered size and display.
CONTROLS_JS = """root => {
  const out = {};
  for (const el of root.querySelectorAll('[class*="leakage-lab-control-"]')) {
    const name = [...el.classList].find(c => c.startsWith('leakage-lab-control-'))
                   .slice('leakage-lab-control-'.length);
    el.scrollIntoView({block: 'center'});
    const box = el.getBoundingClientRect();
    out[name] = {width: box.width, height: box.height,
                 display: getComputedStyle(el).display};
  }
  return out;
}"""


def hidden_controls(page, root):
    """Names of the dashboard controls under ``root`` (a CSS selector) that a user cannot
    see: not displayed, or rendered with no area."""
    controls = page.eval_on_selector(root, CONTROLS_JS)
    assert controls, f"no dashboard controls found under {root}"
    return {name for name, c in controls.items()
            if c["display"] == "none" or c["width"] <= 0 or c["height"] <= 0}, controls


# The strength knobs that no defense of the default setting ("none") uses.
KNOBS = {"strength", "noise"}


def dashboard_recon_src(page):
    return page.eval_on_selector(
        ".leakage-lab-dashboard",
        """root => { const img = [...root.querySelectorAll('img.widget-image')].find(i => {
               const box = i.closest('.widget-vbox');
               return box && box.textContent.trim().startsWith('reconstruction'); });
             return img ? img.src : null; }""")


def use_the_dashboard(page, screenshots):
    """What a teacher does at the projector: sees every control, picks a defense (its
    knob appears), picks another attack, presses Run and sees a new reconstruction."""
    from leakage_lab import dashboard

    root = ".jp-NotebookPanel:not(.lm-mod-hidden) .leakage-lab-dashboard"
    hidden, controls = hidden_controls(page, root)
    page.eval_on_selector(root, "el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(screenshots / "09_dashboard_controls.png"))
    defense = dashboard.DEFENSES["gaussian"]
    page.select_option(f"{root} .leakage-lab-control-defense select", label=defense.label)
    page.wait_for_function(
        "sel => { const el = document.querySelector(sel);"
        " return el && getComputedStyle(el).display !== 'none'; }",
        arg=f"{root} .leakage-lab-control-noise", timeout=30_000)
    hidden_after, _ = hidden_controls(page, root)
    page.eval_on_selector(root, "el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(screenshots / "09_dashboard_gaussian.png"))

    page.select_option(f"{root} .leakage-lab-control-attack select",
                       label=dashboard.ATTACKS["dlg"].label)
    before = dashboard_recon_src(page)
    status = f"{root} .leakage-lab-status"
    page.click(f"{root} button.leakage-lab-run")
    page.wait_for_function("sel => document.querySelector(sel).textContent"
                           ".includes('Attacking')", arg=status, timeout=120_000)
    page.wait_for_function("sel => /PSNR/.test(document.querySelector(sel).textContent)",
                           arg=status, timeout=LAB_TIMEOUT * 1000)
    after = dashboard_recon_src(page)
    page.eval_on_selector(root, "el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(screenshots / "09_dashboard_after_run.png"))
    return {"hidden": hidden, "controls": controls, "hidden_with_gaussian": hidden_after,
            "status": page.text_content(status), "before": before, "after": after}


def test_lab_09_dashboard_animates_in_jupyterlab(browser, lab_server, screenshots):
    found = sorted(lab_server[2].glob("09_*.ipynb"))
    if not found:
        pytest.skip("no notebooks/09_*.ipynb (the classroom dashboard) yet")
    run = run_lab(browser, lab_server, screenshots, found[0].name,
                  inspect=lambda page: use_the_dashboard(page, screenshots))
    check_run(found[0].name, run)
    seen = run["inspected"]
    assert seen["hidden"] == KNOBS, (
        f"with no defense, only the knobs {sorted(KNOBS)} may be hidden; hidden: "
        f"{sorted(seen['hidden'])} ({seen['controls']})")
    assert seen["hidden_with_gaussian"] == {"strength"}, (
        "after choosing Gaussian noise its σ slider must show (and the linear knob stay "
        f"hidden); hidden: {sorted(seen['hidden_with_gaussian'])}")
    assert "PSNR" in seen["status"] and "Could not run" not in seen["status"], seen["status"]
    assert seen["before"] and seen["after"] and seen["before"] != seen["after"], \
        "pressing Run with another attack did not change the reconstruction"


def test_the_control_check_sees_hidden_pickers(browser, lab_server):
    """A control for the visibility check: the shared-Layout bug put back (every picker
    on one Layout, then the unused knob hidden) must be reported as hidden controls."""
    base, token, root = lab_server
    code = ("import ipywidgets as w\n"
            "from leakage_lab import dashboard\n"
            "board = dashboard.Dashboard()\n"
            "shared = w.Layout(width='440px')\n"
            "for name, control in board.controls.items():\n"
            "    if name != 'noise':\n"
            "        control.layout = shared\n"
            "board._set_strength_knob('none', None)\n"
            "board")
    write_notebook(root / "shared_layout.ipynb", code)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/lab/workspaces/shared/tree/shared_layout.ipynb?token={token}&reset",
                  timeout=120_000)
        page.wait_for_function(KERNEL_IDLE_JS, timeout=180_000)
        page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); }")
        panel = ".jp-NotebookPanel:not(.lm-mod-hidden) .leakage-lab-dashboard"
        page.wait_for_function(
            f"sel => document.querySelector(sel) || ({STATE_JS})().errors.length",
            arg=f"{panel} button.leakage-lab-run", timeout=LAB_TIMEOUT * 1000)
        assert not page.evaluate(STATE_JS)["errors"], page.evaluate(STATE_JS)["errors"]
        hidden, controls = hidden_controls(page, panel)
        assert hidden - KNOBS, f"the check did not see the hidden pickers: {controls}"
        assert {"dataset", "model", "defense", "attack"} <= hidden
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        page.close()


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
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail("Voilà exited: " + (home / "voila.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/api/kernelspecs", timeout=5):
                    break
            except urllib.error.HTTPError:
                break  # it answers: that is all we wait for
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("Voilà did not answer within 180 s: "
                            + (home / "voila.log").read_text()[-3000:])
            time.sleep(0.5)
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


def test_the_page_check_sees_a_broken_widget(browser, lab_server):
    """A control for the checks above: a view of a widget the kernel does not have
    must show up as "Error displaying widget" in what STATE_JS reports."""
    base, token, root = lab_server
    code = ("from IPython.display import display\n"
            "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'no-such-model',"
            " 'version_major': 2, 'version_minor': 0}, 'text/plain': 'a widget'}, raw=True)")
    write_notebook(root / "broken_widget.ipynb", code)
    page = browser.new_page()
    try:
        page.goto(f"{base}/lab/workspaces/broken/tree/broken_widget.ipynb?token={token}&reset",
                  timeout=120_000)
        page.wait_for_function(KERNEL_IDLE_JS, timeout=180_000)
        page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); }")
        page.wait_for_function("() => document.body.textContent.includes("
                               "'Error displaying widget')", timeout=120_000)
        assert page.evaluate(STATE_JS)["widgetErrors"]
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        page.close()


# -- the static course site (leakage-lab site): lab 01's page, offline -------------------

# The site's reconstruction images: an <img> in a box captioned "reconstruction".
SITE_RECON_JS = """() => [...document.querySelectorAll('img.widget-image')].filter(img => {
    const box = img.closest('.widget-vbox');
    return box && box.textContent.trim().startsWith('reconstruction');
  }).map(img => {
    const box = img.getBoundingClientRect();
    const live = img.closest('.widget-vbox').parentElement.parentElement;
    return {src: img.src, complete: img.complete, natural: img.naturalWidth,
            width: box.width, height: box.height, caption: live.textContent};
  })"""


def test_site_lab_01_plays_offline(browser, built_site, screenshots):
    """The built page of lab 01, opened from the file system with the network blocked:
    the reconstruction shows, and Play and the slider change the frame shown."""
    out, _ = built_site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    blocked, errors = [], []
    page.on("pageerror", lambda err: errors.append(str(err)))

    def only_files(route):
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    try:
        page.goto((out / "01_dlg.html").resolve().as_uri(), wait_until="load")
        page.wait_for_selector("body[data-widgets-rendered]", timeout=30_000)
        assert not page.query_selector_all(".llw-missing"), "a widget did not render"
        recon = page.evaluate(SITE_RECON_JS)
        assert recon, "no reconstruction image in the page"
        page.locator("img.widget-image").first.scroll_into_view_if_needed()
        first = page.evaluate(SITE_RECON_JS)[0]
        assert first["complete"] and first["natural"] > 0 and first["width"] > 0 \
            and first["height"] > 0, first
        page.screenshot(path=str(screenshots / "site_01_loaded.png"))

        # Play: from the last frame it starts again at the first and steps through them.
        page.locator("button.llw-play-play").first.click()
        page.wait_for_function(
            "src => { const r = (" + SITE_RECON_JS + ")(); return r[0].src !== src; }",
            arg=first["src"], timeout=10_000)
        played = page.evaluate(SITE_RECON_JS)[0]
        page.wait_for_timeout(600)
        later = page.evaluate(SITE_RECON_JS)[0]
        page.locator("button.llw-play-pause").first.click()
        assert later["src"] != played["src"], "Play showed one frame and stopped"
        assert step_of(played["caption"]) != step_of(first["caption"]), played["caption"]

        # The slider, moved by the keyboard: End shows the last frame, Home the first.
        slider = page.locator(".widget-slider input[type=range]").first
        slider.focus()
        page.keyboard.press("End")
        end = page.evaluate(SITE_RECON_JS)[0]
        page.keyboard.press("Home")
        home = page.evaluate(SITE_RECON_JS)[0]
        assert end["src"] != home["src"], "moving the slider did not change the frame"
        assert step_of(home["caption"])[0] < step_of(end["caption"])[0]
        page.screenshot(path=str(screenshots / "site_01_scrubbed.png"))

        # The static strip under the widget shows too.
        figures = page.evaluate("""() => [...document.querySelectorAll(
            '.jp-OutputArea-output img')].filter(i => !i.classList.contains('widget-image'))
            .map(i => i.naturalWidth)""")
        assert figures and min(figures) > 0
    finally:
        page.close()
    assert not blocked, f"the page asked the network for {blocked[:5]}"
    assert not errors, errors


# -- every figure at a projector's 1280 x 720: labs 01, 05 and 08 ------------------------

PROJECTOR = {"width": 1280, "height": 720}
# Every figure of a page (embedded matplotlib images, not the Live views' frames): its
# pixel size, its size on the page, and whether it decoded.
FIGURES_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output img')]
  .filter(img => !img.classList.contains('widget-image'))
  .map(img => { const box = img.getBoundingClientRect();
                return {natural: img.naturalWidth, naturalHeight: img.naturalHeight,
                        width: box.width, height: box.height, right: box.right,
                        complete: img.complete}; })"""


@pytest.fixture(scope="module")
def figure_pages(built_site, tmp_path_factory):
    """The executed pages of labs 01 (the session's site), 05 and 08 (built here, quick
    mode, through the same command)."""
    out = tmp_path_factory.mktemp("site_05_08")
    command = [sys.executable, "-m", "leakage_lab.cli", "site", str(out), "--quick",
               "--labs", "05,08"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"the site build failed:\n{done.stdout}\n{done.stderr}"
    pages = {"01": built_site[0] / "01_dlg.html"}
    for number in ("05", "08"):
        found = sorted(out.glob(f"{number}_*.html"))
        assert found, f"no page for lab {number} in {out}: {sorted(p.name for p in out.iterdir())}"
        pages[number] = found[0]
    return pages


@pytest.mark.parametrize("number", ["01", "05", "08"])
def test_lab_figures_at_projector_size(browser, figure_pages, screenshots, number):
    """Each figure of the lab's executed page, scrolled into a 1280 x 720 viewport and
    saved as ``figures_1280x720/labNN_figureKK.png`` in the screenshots folder (look at
    them). Every figure must decode and fit the width: none cut off at the right edge,
    none shrunk to less than half its pixel size (text drawn at 10 pt would be
    unreadable)."""
    folder = screenshots / "figures_1280x720"
    folder.mkdir(exist_ok=True)
    for old in folder.glob(f"lab{number}_*.png"):
        old.unlink()
    page = browser.new_page(viewport=PROJECTOR)
    try:
        page.goto(figure_pages[number].resolve().as_uri(), wait_until="load")
        page.wait_for_selector("body[data-widgets-rendered]", timeout=30_000)
        figures = page.evaluate(FIGURES_JS)
        assert figures, f"lab {number}: no figure in {figure_pages[number].name}"
        seen = []
        for k in range(len(figures)):
            page.evaluate("""k => [...document.querySelectorAll('.jp-OutputArea-output img')]
                .filter(img => !img.classList.contains('widget-image'))[k]
                .scrollIntoView({block: 'center'})""", k)
            figure = page.evaluate(FIGURES_JS)[k]
            shot = folder / f"lab{number}_figure{k + 1:02d}.png"
            page.screenshot(path=str(shot))
            seen.append((shot.name, figure))
    finally:
        page.close()
    print(f"lab {number}: {len(seen)} figures saved in {folder}")
    for name, figure in seen:
        assert figure["complete"] and figure["natural"] > 0, f"{name}: the figure did not decode"
        assert figure["right"] <= PROJECTOR["width"] + 1, \
            f"{name}: the figure runs past the right edge at 1280 px ({figure})"
        scale = figure["width"] / figure["natural"]
        assert scale >= 0.5, (
            f"{name}: a {figure['natural']} px wide figure is shown at {figure['width']:.0f} "
            f"px ({scale:.0%}); its labels are unreadable at 1280 x 720")


def test_the_figure_check_sees_a_shrunk_strip(browser, screenshots, tmp_path):
    """A control for the figure check: a one-row strip 2790 px wide (lab 08's old live
    strip of four images), shrunk to the page's width, must be reported as unreadable."""
    from PIL import Image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (2790, 153), "white").save(strip)
    page = tmp_path / "99_strip.html"
    page.write_text(
        "<html><head><style>img { max-width: 100%; }</style></head>"
        "<body data-widgets-rendered='1'><div style='width: 1100px'>"
        f"<div class='jp-OutputArea-output'><img src='{strip.name}'></div>"
        "</div></body></html>", encoding="utf-8")
    with pytest.raises(AssertionError, match="unreadable at 1280 x 720"):
        test_lab_figures_at_projector_size(browser, {"99": page}, screenshots, "99")
