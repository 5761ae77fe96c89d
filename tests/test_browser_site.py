"""The static course site (``leakage-lab site --quick``): lab 01's page, opened from the
file system with the network blocked, in a real browser (helpers and fixtures:
tests/_browser.py and tests/conftest.py; the site is conftest's ``built_site``).
"""

from _browser import NEEDS_CHROMIUM, require_playwright, step_of

pytestmark = NEEDS_CHROMIUM
require_playwright()


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
