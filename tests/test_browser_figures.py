"""Every figure at a projector's 1280 x 720, in a real browser (helpers and fixtures:
tests/_browser.py and tests/conftest.py).

Opens the executed static pages of labs 01, 05 and 08 (``leakage-lab site --quick``) in a
1280 x 720 viewport, a projector's, and saves every figure, scrolled into view, as
``figures_1280x720/labNN_figureKK.png`` in the screenshots folder; each must decode, fit
the width and not be shrunk below half its pixel size.
"""

import subprocess
import sys

import pytest
from _browser import NEEDS_CHROMIUM, require_playwright

pytestmark = NEEDS_CHROMIUM
require_playwright()


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
def figure_pages(request, tmp_path_factory):
    """The executed pages of labs 01 (the session's site), 05 and 08 (built here, quick
    mode, through the same command). Labs 05 and 08 are built first: under xdist another
    worker may be building the session's site, and this worker would only wait for it."""
    out = tmp_path_factory.mktemp("site_05_08")
    command = [sys.executable, "-m", "leakage_lab.cli", "site", str(out), "--quick",
               "--labs", "05,08"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"the site build failed:\n{done.stdout}\n{done.stderr}"
    pages = {"01": request.getfixturevalue("built_site")[0] / "01_dlg.html"}
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
