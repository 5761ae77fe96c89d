"""Lab 01 in JupyterLab, in a real browser (helpers and fixtures: tests/_browser.py and
tests/conftest.py).

Runs every cell of lab 01 with JupyterLab's own Run All command and checks from the page
that

* the reconstruction image of :class:`leakage_lab.widgets.Live` is rendered (a decoded
  <img> with a non-zero size) and its ``src`` changes while the attack runs,
* no "Error displaying widget" appears anywhere, and no cell ends in an error;

and, as a control, that a broken widget view is reported. Screenshots mid-run and at the
end go to ``$LEAKAGE_LAB_SCREENSHOTS`` if set, else to pytest's temporary folder.
"""

from _browser import (
    KERNEL_IDLE_JS,
    NEEDS_CHROMIUM,
    STATE_JS,
    check_run,
    require_playwright,
    run_lab,
    write_notebook,
)

pytestmark = NEEDS_CHROMIUM
require_playwright()


def test_lab_01_animates_in_jupyterlab(browser, lab_server, screenshots):
    name = "01_dlg.ipynb"
    assert (lab_server[2] / name).exists()
    run = run_lab(browser, lab_server, screenshots, name)
    check_run(name, run)


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
