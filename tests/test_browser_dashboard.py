"""Lab 09, the classroom dashboard, in JupyterLab in a real browser (helpers and
fixtures: tests/_browser.py and tests/conftest.py).

Runs every cell of lab 09 (when it exists) like lab 01's test, then does what a teacher
does at the projector: every control is visible (only the unused strength knobs hidden),
picking a defense shows its knob, and Run with another attack changes the
reconstruction. A control: the shared-Layout bug put back must be seen as hidden pickers.
Screenshots go to ``$LEAKAGE_LAB_SCREENSHOTS`` if set, else to pytest's temporary folder.
"""

import pytest
from _browser import (
    KERNEL_IDLE_JS,
    KNOBS,
    LAB_TIMEOUT,
    NEEDS_CHROMIUM,
    STATE_JS,
    check_run,
    hidden_controls,
    require_playwright,
    run_lab,
    write_notebook,
)

pytestmark = NEEDS_CHROMIUM
require_playwright()


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
