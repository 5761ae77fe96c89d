"""What the browser tests (tests/test_browser_*.py) share: Chromium, the page scripts
and the checks of a lab run in JupyterLab. Their fixtures (``lab_server``, ``browser``,
``screenshots``, ``built_site``) are in tests/conftest.py.

JupyterLab runs on 127.0.0.1 (a free port, a token, a temporary copy of the labs so
autosave never touches the masters, quick mode); the tests drive Debian's Chromium
through Playwright's Python API. They are skipped, with the reason, where Chromium is not
installed (``apt-get install chromium``; never ``playwright install``, which downloads a
browser) or playwright is missing.

Split in several modules so that ``--dist loadscope`` gives the slow ones (minutes each)
to different workers.
"""

import json
import os
import re
import shutil
import socket
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

NEEDS_CHROMIUM = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"Chromium not found at {CHROMIUM}: the browser test needs Debian's Chromium "
           "(apt-get install chromium; .ci/run installs it where apt is available)")
"""Each browser test module's ``pytestmark``."""


def require_playwright():
    """Skips the calling test module (call it at import) where playwright is missing."""
    return pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(server, url, log_path, name, timeout=180):
    """Waits until ``url`` answers (any HTTP status counts); fails the test, with the
    end of the server's log, if the process ``server`` exits or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            pytest.fail(f"{name} exited: " + Path(log_path).read_text())
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not answer within {timeout} s: "
                        + Path(log_path).read_text()[-3000:])
        time.sleep(0.5)


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
