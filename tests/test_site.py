"""`leakage-lab site`: the executed labs as a static site that works offline.

Builds the site for lab 01 in quick mode (the ``built_site`` fixture of conftest.py,
shared with the browser tests) and checks its pages: every output is there (figures as
embedded images, the Live view as saved widget state with its frames), the links
between pages lead to files that exist, and nothing loads from the network.
"""

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image

from leakage_lab import cli, site

LAB = "01_dlg"
REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


class Page(HTMLParser):
    """The tags of one page that matter here."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.images, self.scripts, self.stylesheets = [], [], [], []
        self.blocks, self._script = [], None  # (type, text) of each <script>
        self.nav = []
        self._in_nav = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if self._in_nav:
                self.nav.append(a["href"])
        elif tag == "nav":
            self._in_nav = True
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "script":
            self.scripts.append(a.get("src"))
            self._script = a.get("type") or ""
            self.blocks.append([self._script, ""])
        elif tag == "link":
            self.stylesheets.append(a.get("href") or "")
        elif tag in ("iframe", "embed", "source", "video", "audio", "object"):
            self.scripts.append(a.get("src") or a.get("data"))

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav = False
        elif tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self.blocks[-1][1] += data

    def json(self, mime):
        return [json.loads(text) for kind, text in self.blocks if kind == mime]


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site_dir(built_site):
    return built_site[0]


def test_progress_names_the_lab_with_its_time(built_site):
    _, stdout = built_site
    line = next(line for line in stdout.splitlines() if LAB in line and " s " in line)
    assert re.search(r"\d+\.\d s", line), line


def test_every_output_is_in_the_page(site_dir):
    manifest = json.loads((site_dir / "site.json").read_text())["labs"][LAB + ".ipynb"]
    assert manifest["errors"] == 0
    page = parse(site_dir / f"{LAB}.html")
    # Figures are embedded PNGs that decode, one per image output of the executed lab.
    embedded = [src for src in page.images if src.startswith("data:image/")]
    assert manifest["images"] >= 3, manifest
    assert len(embedded) == manifest["images"], (len(embedded), manifest)
    for src in embedded:
        kind, data = src.split(",", 1)
        assert kind.endswith(";base64")
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.width > 0 and image.height > 0
    # The Live view: its widget view is in the page and its model in the saved state,
    # with the frames that Play and the slider show.
    views = page.json(site.VIEW_MIME)
    assert len(views) == manifest["widget_views"] >= 1
    [saved] = page.json(site.STATE_MIME)
    state = saved["state"]
    for view in views:
        assert view["model_id"] in state
    [lives] = page.json(site.FRAMES_MIME)
    assert lives and manifest["live_views"] == len(lives)
    for live in lives:
        assert 2 <= len(live["frames"]) <= site.MAX_FRAMES
        assert {live["image"], live["slider"], live["play"], live["text"]} <= set(state)
        assert len({f["png"] for f in live["frames"]}) > 1, "the frames are all the same"
        assert state[live["slider"]]["state"]["max"] == len(live["frames"]) - 1
    # Every code cell's input is shown, and no output is an error.
    assert "Traceback" not in (site_dir / f"{LAB}.html").read_text(encoding="utf-8")
    assert (site_dir / f"{LAB}.html").stat().st_size < 3_000_000


def test_links_between_pages_lead_to_files(site_dir):
    built = {p.name for p in site_dir.glob("*.html")}
    assert {"index.html", f"{LAB}.html"} <= built
    # Pages of labs that this partial build did not make are the only links allowed to
    # miss: the full site has them.
    others = {p.stem + ".html" for _, p, _ in cli.labs()} - built
    for name in built:
        page = parse(site_dir / name)
        for href in page.links + page.images + page.stylesheets + \
                [s for s in page.scripts if s]:
            url = urlparse(href)
            if url.scheme in ("http", "https", "mailto", "data") or href.startswith("#"):
                continue
            target = unquote(url.path)
            if not target:
                continue
            assert (site_dir / target).is_file() or target in others, \
                f"{name}: {href} leads nowhere"
    index = parse(site_dir / "index.html")
    assert f"{LAB}.html" in index.links
    thumbs = [src for src in index.images if src.startswith("static/thumbs/")]
    assert thumbs and all((site_dir / t).stat().st_size > 1000 for t in thumbs)
    lab = parse(site_dir / f"{LAB}.html")
    assert "index.html" in lab.nav
    # Markdown links to another lab's notebook point at its page.
    assert not [h for h in lab.links if h.endswith(".ipynb")]


def test_navigation_between_three_labs():
    nav = site._nav(("00_a.html", "00 A"), ("02_c.html", "02 C"))
    page = Page()
    page.feed(nav)
    assert page.nav == ["00_a.html", "index.html", "02_c.html"]


def test_nothing_loads_from_the_network(site_dir):
    files = [p for p in site_dir.rglob("*") if p.suffix in (".html", ".css", ".js")]
    assert any(p.suffix == ".js" for p in files)
    for path in files:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".html":
            page = parse(path)
            remote = [s for s in page.scripts if s and REMOTE.match(s)] + \
                [h for h in page.stylesheets if REMOTE.match(h)] + \
                [s for s in page.images if REMOTE.match(s)]
            assert not remote, f"{path.name} loads {remote}"
            assert page.scripts.count("static/widgets.js") <= 1
        for pattern in (r"@import\s+(url\()?\s*['\"]?\s*(https?:)?//",
                        r"url\(\s*['\"]?\s*(https?:)?//",
                        r"<script[^>]+src\s*=\s*['\"]?\s*(https?:)?//",
                        r"<link[^>]+href\s*=\s*['\"]?\s*(https?:)?//",
                        r"import\(\s*['\"]\s*(https?:)?//",
                        r"fonts\.googleapis|cdn\.jsdelivr|unpkg\.com|cdnjs"):
            found = re.search(pattern, text, re.I)
            assert not found, f"{path.name} refers to the network: {found.group(0)}"


def _lab(path, *sources):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")] + \
        [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


LIVE_CELL = """\
import numpy as np
from IPython.display import display
import leakage_lab as ll
from leakage_lab.engine import Frame
truth = np.random.default_rng(0).random((1, 8, 8, 3)).astype("float32")
live = ll.widgets.Live(truth)
display(live)
for k in range(90):
    noise = np.random.default_rng(k).normal(0, 1 / (k + 1), truth.shape)
    live.callback(Frame(step=k, loss=1 / (k + 1), best_loss=1 / (k + 1),
                        images=np.clip(truth + noise, 0, 1), total_steps=89))
"""


def test_a_small_lab_keeps_its_frames_and_a_failing_lab_is_named(tmp_path, capsys):
    """Two made-up labs: the first's Live view keeps at most MAX_FRAMES frames, evenly
    spaced, in its page; the second fails, and the build says which lab and cell."""
    labs = tmp_path / "labs"
    labs.mkdir()
    _lab(labs / "00_small.ipynb", LIVE_CELL, "live.strip(num=3)")
    _lab(labs / "01_broken.ipynb", "x = 1", "print('before')", "1 / 0", "print('never')")
    out = tmp_path / "site"
    with pytest.raises(site.LabFailed) as failed:
        site.build(out, quick=True, notebooks=labs, readme=tmp_path / "none.md",
                   log=lambda line: None)
    assert failed.value.lab == "01_broken.ipynb"
    assert (failed.value.cell, failed.value.code_cell) == (3, 3)
    assert "ZeroDivisionError" in str(failed.value)
    page = parse(out / "00_small.html")
    [lives] = page.json(site.FRAMES_MIME)
    assert len(lives) == 1 and len(lives[0]["frames"]) == site.MAX_FRAMES
    steps = [int(re.search(r"step <b>(\d+)</b>", f["text"]).group(1))
             for f in lives[0]["frames"]]
    assert steps[0] == 0 and steps[-1] == 89 and steps == sorted(set(steps))
    assert page.nav == ["index.html", "01_broken.html"] * 2  # above and below the lab


def test_the_command_exits_non_zero_naming_lab_and_cell(monkeypatch, tmp_path, capsys):
    def fails(*args, **kwargs):
        raise site.LabFailed("03_inverting_gradients.ipynb", 12, 7, "ValueError: bad")

    monkeypatch.setattr(site, "build", fails)
    assert cli.main(["site", str(tmp_path), "--quick", "--labs", "03"]) == 1
    err = capsys.readouterr().err
    assert "03_inverting_gradients.ipynb" in err and "cell 12" in err and "ValueError" in err
