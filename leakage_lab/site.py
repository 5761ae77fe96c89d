"""A static course site of the executed labs: ``leakage-lab site OUT``.

Every lab is executed with nbclient (classroom settings unless ``quick``), its widget
state stored at execution, and exported with nbconvert to ``OUT/NN_name.html`` with all
its outputs and links to the previous lab, the next one and the index. ``OUT/index.html``
holds the README's lab table with one thumbnail per lab, cut from the lab's own output.

The pages need no kernel, no network and no Node.js. The HTML widget manager of
ipywidgets (``@jupyter-widgets/html-manager``) is not shipped by any Python package and
nbconvert loads it from a CDN, so the site carries its own small renderer instead
(``OUT/static/widgets.js``, written from :data:`WIDGETS_JS`): it draws the saved widget
state (boxes, HTML, images, sliders, Play, links and the other simple controls) and plays
:class:`leakage_lab.widgets.Live`'s frames. A saved ``Image`` holds only the last frame,
so after a lab's last cell the builder finds every open ``Live`` in the kernel and stores
up to :data:`MAX_FRAMES` of its frames (at one screen pixel per image pixel, enlarged in
the page) beside the widget state; Play and the slider then show them. A widget whose
state was not saved shows as its text (nbconvert's fallback), and the static strip that
each animation ends with shows in any case: it is an ordinary image output.
Math is left as its TeX source (MathJax is not vendored); require.js, MathJax and mermaid
are not loaded.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["build", "add_parser", "MAX_FRAMES"]

# Frames of one Live view kept in the page, evenly spaced, the first and last included.
MAX_FRAMES = 60
# Seconds a cell may run before the build gives up on it (classroom settings on a slow CPU).
CELL_TIMEOUT = 3600
THUMB_WIDTH = 320
FRAMES_MIME = "application/vnd.leakage-lab.frames+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
VIEW_MIME = "application/vnd.jupyter.widget-view+json"


class LabFailed(RuntimeError):
    """A lab's cell raised while the site was being built."""

    def __init__(self, lab: str, cell: int, code_cell: int, error: str):
        self.lab, self.cell, self.code_cell, self.error = lab, cell, code_cell, error
        super().__init__(f"{lab} failed at cell {cell} (code cell {code_cell}): {error}")


# -- in the kernel: find the Live views and dump their frames ---------------------------

def _live_views() -> list:
    """The kernel's :class:`leakage_lab.widgets.Live` views whose widgets are still open.

    Found by the garbage collector's list of objects, so the library runs unpatched: an
    open Live's slider observes it, which keeps it alive as long as its widgets are.
    """
    import gc

    from leakage_lab import widgets

    return [obj for obj in gc.get_objects() if isinstance(obj, widgets.Live)]


def _evenly(count: int, num: int) -> list[int]:
    if count <= num:
        return list(range(count))
    return sorted({round(i * (count - 1) / (num - 1)) for i in range(num)})


def _shrink_png(png: bytes, scale: int) -> tuple[str, int, int]:
    """A Live frame PNG (each image pixel a scale x scale block) at one pixel per image
    pixel, re-encoded small; returns (base64, width, height) of the original."""
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    width, height = image.size
    pixels = np.asarray(image)[::scale, ::scale]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), width, height


def _dump_lives(path: str, max_frames: int = MAX_FRAMES) -> None:
    """Run in the lab's kernel after its last cell: writes the open Live views' frames
    (model ids, captions, small PNGs) to ``path`` as JSON."""
    out = []
    for live in _live_views():
        count = len(live.frames)
        try:
            ids = {key: getattr(live, "_" + key).model_id
                   for key in ("image", "text", "slider", "play")}
        except AttributeError:  # a closed widget has no model any more
            continue
        if not count or None in ids.values():
            continue
        picks = _evenly(count, max_frames)
        current = live._current if 0 <= live._current < count else count - 1
        frames, size = [], (0, 0)
        for i in picks:
            png, text = live._view(i)
            data, width, height = _shrink_png(png, live.scale)
            size = (width, height)
            frames.append({"png": data, "text": text})
        out.append({
            **ids, "width": size[0], "height": size[1], "frames": frames,
            "value": min(range(len(picks)), key=lambda k: abs(picks[k] - current)),
        })
    Path(path).write_text(json.dumps(out), encoding="utf-8")


# -- executing a lab -------------------------------------------------------------------------


@dataclass
class Executed:
    path: Path
    nb: object
    lives: list = field(default_factory=list)
    seconds: float = 0.0


def execute_lab(path: Path, *, quick: bool, workdir: Path, library: Path | None = None,
                cell_timeout: int = CELL_TIMEOUT) -> Executed:
    """Runs every cell of the lab at ``path`` (a copy in ``workdir``), storing widget state.

    ``library``: a folder holding a copy of the ``leakage_lab`` package for the kernel to
    import (put first on its ``PYTHONPATH``).

    Raises :class:`LabFailed` naming the cell that failed.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, LEAKAGE_LAB_QUICK="1" if quick else "0",
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    if library is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(library)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            store_widget_state=True, record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    dump = workdir / f".{path.stem}.frames.json"
    start = time.perf_counter()
    with client.setup_kernel(env=env, cwd=str(workdir)):
        info = client.wait_for_reply(client.kc.kernel_info())
        if info is not None and "language_info" in info["content"]:
            nb.metadata["language_info"] = info["content"]["language_info"]
        code_cell = 0
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                code_cell += 1
            try:
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellExecutionError as err:
                raise LabFailed(path.name, index, code_cell,
                                f"{err.ename}: {err.evalue}".strip(": ")) from err
            except (CellTimeoutError, DeadKernelError) as err:
                raise LabFailed(path.name, index, code_cell,
                                f"{type(err).__name__}: {err}") from err
        client.set_widgets_metadata()
        try:
            _hidden(client, "import leakage_lab.site as _leakage_site\n"
                            f"_leakage_site._dump_lives({str(dump)!r})\ndel _leakage_site")
        except CellExecutionError as err:  # the page then shows each Live's last frame
            print(f"  (the Live views' frames of {path.name} were not saved: "
                  f"{err.ename}: {err.evalue})", file=sys.stderr)
    lives = json.loads(dump.read_text(encoding="utf-8")) if dump.exists() else []
    return Executed(path, nb, lives, time.perf_counter() - start)


def _hidden(client, source: str) -> None:
    """Runs ``source`` in the client's kernel outside the notebook (no history, no output)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    client.execute_cell(cell, -1, store_history=False)
    client.code_cells_executed -= 1


# -- shrinking the page ------------------------------------------------------------------------


def _recompress(b64: str) -> str:
    """A PNG (base64) re-encoded with PIL's optimiser; the smaller of the two."""
    from PIL import Image

    try:
        raw = base64.b64decode(b64)
        image = Image.open(io.BytesIO(raw))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError):
        return b64
    smaller = buffer.getvalue()
    return base64.b64encode(smaller).decode("ascii") if len(smaller) < len(raw) else b64


def _model_refs(value):
    """The model ids that a saved widget state value refers to ("IPY_MODEL_<id>")."""
    if isinstance(value, str):
        return [value[10:]] if value.startswith("IPY_MODEL_") else []
    if isinstance(value, dict):  # an Output widget's outputs may show other widgets
        view = value.get(VIEW_MIME)
        shown = [view["model_id"]] if isinstance(view, dict) and "model_id" in view else []
        return shown + [ref for v in value.values() for ref in _model_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _model_refs(v)]
    return []


def _reachable(state: dict, nb) -> dict:
    """The saved models that a view in the notebook shows, with what they refer to and the
    links between them; the kernel's other widgets (closed, or never shown) are dropped."""
    todo = [output["data"][VIEW_MIME]["model_id"] for cell in nb.cells
            for output in cell.get("outputs", []) if VIEW_MIME in output.get("data", {})]
    seen = set()
    while todo:
        model_id = todo.pop()
        if model_id in seen or model_id not in state:
            continue
        seen.add(model_id)
        todo.extend(_model_refs(state[model_id]["state"]))
    links = {k for k, m in state.items() if m.get("model_name") in
             ("LinkModel", "DirectionalLinkModel")
             and set(_model_refs([m["state"].get("source"), m["state"].get("target")])) <= seen}
    return {k: m for k, m in state.items() if k in seen or k in links}


def _prepare(executed: Executed) -> dict:
    """Shrinks the images and trims the Live views' saved state to the stored frames, in
    place; returns the widget state that goes into the page (or ``{}``)."""
    nb = executed.nb
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if isinstance(data.get("image/png"), str):
                data["image/png"] = _recompress(data["image/png"].replace("\n", ""))
    widgets = nb.metadata.get("widgets", {}).get(STATE_MIME)
    if not widgets:
        return {}
    state = widgets["state"] = _reachable(widgets["state"], nb)
    for live in executed.lives:
        last = len(live["frames"]) - 1
        for key in ("slider", "play"):
            model = state.get(live[key])
            if model:
                model["state"].update(min=0, max=last, value=live["value"])
        image = state.get(live["image"])
        if image:  # the frames carry the picture
            image.pop("buffers", None)
            image["state"]["value"] = None
    for model in state.values():
        for buffer in model.get("buffers", []):
            if buffer.get("encoding") == "base64" and model["state"].get("format") == "png":
                buffer["data"] = _recompress(buffer["data"])
    return widgets


# -- pages ----------------------------------------------------------------------------------

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<link rel="stylesheet" href="static/site.css">
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.site_nav }}
{%- endblock body_header -%}
{%- block body_footer -%}
{{ resources.site_nav }}
{{ super() }}
{%- endblock body_footer -%}
{%- block footer_js -%}
{{ resources.site_data }}
<script src="static/widgets.js"></script>
{%- endblock footer_js -%}
"""


def _script_json(mime: str, value) -> str:
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="{mime}">{text}</script>'


def _nav(prev: tuple[str, str] | None, nxt: tuple[str, str] | None) -> str:
    parts = []
    if prev:
        parts.append(f'<a class="ll-prev" href="{prev[0]}">&larr; {html.escape(prev[1])}</a>')
    parts.append('<a class="ll-index" href="index.html">All labs</a>')
    if nxt:
        parts.append(f'<a class="ll-next" href="{nxt[0]}">{html.escape(nxt[1])} &rarr;</a>')
    return f'<nav class="ll-nav">{" ".join(parts)}</nav>'


def render_lab(executed: Executed, prev, nxt, pages: dict[str, str]) -> str:
    """The lab's page: nbconvert's lab template, no remote script, the site's navigation
    and widget renderer. ``pages`` maps a notebook file name to its page."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    state = _prepare(executed)
    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader(
        {"leakage_site.html.j2": TEMPLATE})], template_file="leakage_site.html.j2")
    exporter.exclude_input_prompt = False
    # nbconvert writes the widget state (and a view only where its model was saved, else
    # the view's text); the Live views' frames go beside it.
    data = _script_json(FRAMES_MIME, executed.lives) if state else ""
    body, _ = exporter.from_notebook_node(executed.nb, resources={
        "site_nav": _nav(prev, nxt), "site_data": data})

    def link(match):
        target = pages.get(match.group(1))
        return f'href="{target}{match.group(2) or ""}"' if target else match.group(0)

    # Links between labs point at their pages.
    return re.sub(r'href="([0-9]{2}_[A-Za-z0-9_]+\.ipynb)(#[^"]*)?"', link, body)


def _count_outputs(nb) -> dict:
    """How many image outputs, widget views and errors the executed notebook holds."""
    images = widgets = errors = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            images += any(k.startswith("image/") for k in data)
            widgets += VIEW_MIME in data
            errors += output.get("output_type") == "error"
    return {"images": images, "widget_views": widgets, "errors": errors}


def _thumbnail(nb) -> bytes | None:
    """A small PNG of the lab's first wide image output (else its first image)."""
    from PIL import Image

    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if isinstance(png, str):
                try:
                    image = Image.open(io.BytesIO(base64.b64decode(png)))
                    image.load()
                except (OSError, ValueError):
                    continue
                found.append(image)
    if not found:
        return None
    image = next((im for im in found if im.width >= 300), found[0]).convert("RGB")
    if image.width > THUMB_WIDTH:
        image = image.resize((THUMB_WIDTH, max(1, round(image.height * THUMB_WIDTH
                                                         / image.width))), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def readme_table(readme: Path) -> dict[int, dict[str, str]]:
    """The README's lab table: number -> {lab, level, time, what}."""
    rows = {}
    if not readme.is_file():
        return rows
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d{2}", cells[0]):
            keys = ("lab", "level", "time", "what")
            rows[int(cells[0])] = dict(zip(keys, cells[1:], strict=True))
    return rows


def _inline_md(text: str) -> str:
    """README table text as HTML: escaped, with `code` and *emphasis*."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def render_index(entries: list[dict], quick: bool) -> str:
    rows = []
    for e in entries:
        thumb = (f'<a href="{e["page"]}"><img src="{e["thumb"]}" alt="lab {e["number"]:02d}"'
                 ' loading="lazy"></a>') if e.get("thumb") else ""
        rows.append(
            f'<tr><td>{e["number"]:02d}</td><td><a href="{e["page"]}">'
            f'{_inline_md(e["lab"])}</a></td><td>{_inline_md(e["level"])}</td>'
            f'<td>{_inline_md(e["time"])}</td><td>{_inline_md(e["what"])}</td>'
            f'<td class="ll-thumb">{thumb}</td></tr>')
    mode = ("in quick mode, with smaller runs than in class" if quick
            else "at classroom settings")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>leakage-lab: the labs</title>
<link rel="stylesheet" href="static/site.css">
</head>
<body class="ll-index-page">
<main>
<h1>leakage-lab</h1>
<p><strong>Federated learning is not private by default. These labs show it by doing
it.</strong> Each page is a lab executed top to bottom {mode}, with every output; the
live reconstructions play from saved frames (press Play or move the slider), with no
kernel and no network. To run the labs yourself, clone the repository and
<code>pip install -e .</code>, or open them on Binder.</p>
<table class="ll-labs">
<thead><tr><th>#</th><th>lab</th><th>level</th><th>run time</th><th>what you do</th>
<th>a glimpse</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<p class="ll-note">Built {time.strftime("%Y-%m-%d")} with <code>leakage-lab site</code>.
Math is shown as its TeX source.</p>
</main>
</body>
</html>
"""


def build(out: Path, *, quick: bool = False, only: list[int] | None = None,
          notebooks: Path | None = None, readme: Path | None = None,
          log=print) -> dict:
    """Executes the labs and writes the site to ``out``.

    Args:
        out: the site's folder (made if missing; the pages in it are replaced).
        quick: quick mode (``LEAKAGE_LAB_QUICK=1``) instead of classroom settings.
        only: lab numbers to build (default: all).
        notebooks, readme: where the labs and the README are (default: this checkout's).
        log: called with one progress line per lab.

    Returns:
        ``{"labs": {name: seconds}, "seconds": total}``.

    Raises:
        LabFailed: a lab's cell raised; the message names the lab and the cell.
    """
    from leakage_lab import cli

    notebooks = Path(notebooks) if notebooks else cli.NOTEBOOKS
    readme = Path(readme) if readme else cli._CHECKOUT / "README.md"
    every = cli.labs() if notebooks == cli.NOTEBOOKS else [
        (int(p.name[:2]), p, p.stem[3:].replace("_", " "))
        for p in sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))]
    found = [lab for lab in every if only is None or lab[0] in only]
    if not found:
        raise ValueError(f"No labs to build in {notebooks} (asked for {only}).")
    table = readme_table(readme)
    out = Path(out)
    static = out / "static"
    (static / "thumbs").mkdir(parents=True, exist_ok=True)
    (static / "widgets.js").write_text(WIDGETS_JS, encoding="utf-8")
    (static / "site.css").write_text(SITE_CSS, encoding="utf-8")
    # Every lab's page name, so that links between labs hold once the whole site is built.
    pages = {p.name: p.stem + ".html" for _, p, _ in every}
    titles = {p.name: f"{n:02d} {table.get(n, {}).get('lab', t)}" for n, p, t in found}
    times, entries, manifest, start = {}, [], {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="leakage-lab-site-") as tmp:
        work = Path(tmp) / "labs"
        shutil.copytree(notebooks, work, ignore=shutil.ignore_patterns(
            ".ipynb_checkpoints", "__pycache__"))
        # The kernels import a copy of the library made now: edits to the checkout while
        # the build runs (it takes a while) cannot then trip the labs' check that the
        # library is unchanged, nor mix two versions within one lab.
        library = Path(tmp) / "lib"
        shutil.copytree(Path(__file__).resolve().parent, library / "leakage_lab",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for k, (number, path, title) in enumerate(found):
            log(f"lab {number:02d}  {path.name} ...")
            executed = execute_lab(work / path.name, quick=quick, workdir=work,
                                   library=library)
            thumb = _thumbnail(executed.nb)
            counts = _count_outputs(executed.nb)
            prev = found[k - 1][1].name if k else None
            nxt = found[k + 1][1].name if k + 1 < len(found) else None
            page = render_lab(executed, prev and (pages[prev], titles[prev]),
                              nxt and (pages[nxt], titles[nxt]), pages)
            (out / pages[path.name]).write_text(page, encoding="utf-8")
            row = dict(table.get(number, {"lab": title, "level": "", "time": "", "what": ""}))
            row.update(number=number, page=pages[path.name])
            if thumb:
                (static / "thumbs" / f"{number:02d}.png").write_bytes(thumb)
                row["thumb"] = f"static/thumbs/{number:02d}.png"
            entries.append(row)
            times[path.name] = executed.seconds
            size = (out / pages[path.name]).stat().st_size
            manifest[path.name] = dict(counts, page=pages[path.name], bytes=size,
                                       seconds=round(executed.seconds, 1),
                                       live_views=len(executed.lives))
            log(f"lab {number:02d}  {path.name}  {executed.seconds:6.1f} s  "
                f"{size / 1e6:.2f} MB  ({len(executed.lives)} live view(s))")
    (out / "index.html").write_text(render_index(entries, quick), encoding="utf-8")
    # What each page should hold, for checks (tests/test_site.py) and the build's record.
    (out / "site.json").write_text(json.dumps(
        {"quick": quick, "labs": manifest}, indent=1), encoding="utf-8")
    return {"labs": times, "seconds": time.perf_counter() - start}


# -- the command -----------------------------------------------------------------------------


def _site_size(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> int:
    only = None
    if args.labs:
        try:
            only = [int(x) for x in re.split(r"[,\s]+", args.labs.strip()) if x]
        except ValueError:
            print(f"--labs takes lab numbers such as 01,03; got {args.labs!r}", file=sys.stderr)
            return 2
    mode = "quick mode" if args.quick else "classroom settings"
    print(f"Building the site in {args.out} ({mode}); one line per lab.", flush=True)
    try:
        result = build(Path(args.out), quick=args.quick, only=only,
                       log=lambda line: print(line, flush=True))
    except LabFailed as err:
        print(f"FAILED: lab {err.lab}, cell {err.cell} (code cell {err.code_cell}): "
              f"{err.error}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"Wrote {len(result['labs'])} lab pages and index.html to {args.out} in "
          f"{result['seconds']:.0f} s ({_site_size(Path(args.out)) / 1e6:.1f} MB); open "
          f"{Path(args.out) / 'index.html'}")
    return 0


def add_parser(sub) -> None:
    """Registers ``leakage-lab site`` on the CLI's subparsers."""
    p = sub.add_parser("site", help="execute the labs and write a static site of them")
    p.add_argument("out", help="the site's folder")
    p.add_argument("--quick", action="store_true",
                   help="quick mode (LEAKAGE_LAB_QUICK=1): smaller runs, for a check")
    p.add_argument("--labs", default="", help="only these labs, e.g. 01,03")
    p.set_defaults(run=run)


# -- the page's own files ---------------------------------------------------------------------

SITE_CSS = """
.ll-nav { display: flex; gap: 1.5em; justify-content: space-between; align-items: center;
  padding: 0.6em 1em; margin: 0.5em 0 1em; background: #f3f5f8; border-radius: 6px;
  font-family: system-ui, sans-serif; font-size: 15px; }
.ll-nav a { text-decoration: none; color: #1a5fb4; }
.ll-nav .ll-index { font-weight: bold; }
.ll-index-page main { max-width: 1100px; margin: 2em auto; padding: 0 1em;
  font-family: system-ui, sans-serif; line-height: 1.45; }
table.ll-labs { border-collapse: collapse; width: 100%; }
table.ll-labs th, table.ll-labs td { border-bottom: 1px solid #ddd; padding: 0.5em;
  text-align: left; vertical-align: top; }
table.ll-labs td.ll-thumb img { width: 220px; height: auto; border: 1px solid #ddd; }
.ll-note { color: #555; font-size: 0.9em; }
.llw { box-sizing: border-box; font-family: system-ui, sans-serif; font-size: 13px; }
.llw-box { display: flex; }
.llw-vbox { flex-direction: column; }
.llw-hbox { flex-direction: row; }
.llw-grid { display: grid; }
.llw-row { display: flex; flex-direction: row; align-items: center; gap: 6px;
  margin: 2px 0; }
.llw-desc { min-width: 60px; text-align: right; padding-right: 6px; }
.llw input[type=range] { width: 260px; }
.llw button { font-size: 13px; padding: 2px 10px; margin-right: 2px; cursor: pointer; }
.llw-missing { color: #a00; font-style: italic; }
img.llw-pixelated { image-rendering: pixelated; image-rendering: crisp-edges; }
.llw-tab-title { font-weight: bold; margin-top: 6px; }
"""

WIDGETS_JS = r"""/* leakage-lab site: draws saved ipywidgets state without a kernel or a network.
   A small stand-in for @jupyter-widgets/html-manager: boxes, HTML, images, sliders,
   Play, links and simple controls, plus the frames that leakage_lab.site stores for
   each leakage_lab.widgets.Live view (Play and the slider show them). */
(function () {
  'use strict';
  // The saved state follows this script in the page: read it once the page is parsed.
  function start() {
  function readJSON(type) {
    var el = document.querySelector('script[type="' + type + '"]');
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }
  var saved = readJSON('application/vnd.jupyter.widget-state+json');
  var lives = readJSON('application/vnd.leakage-lab.frames+json') || [];
  var states = (saved && saved.state) || {};
  var models = {};

  function Model(id, entry) {
    this.id = id;
    this.name = entry.model_name || (entry.state && entry.state._model_name) || '';
    this.state = Object.assign({}, entry.state || {});
    this.listeners = {};
    var self = this;
    (entry.buffers || []).forEach(function (b) {
      var target = self.state, path = b.path || [];
      for (var i = 0; i < path.length - 1; i++) target = target[path[i]];
      if (path.length) target[path[path.length - 1]] = {base64: b.data};
    });
  }
  Model.prototype.get = function (k) { return this.state[k]; };
  Model.prototype.set = function (k, v) {
    if (this.state[k] === v) return;
    this.state[k] = v;
    (this.listeners[k] || []).slice().forEach(function (f) { f(v); });
  };
  Model.prototype.on = function (k, f) { (this.listeners[k] = this.listeners[k] || []).push(f); };
  Object.keys(states).forEach(function (id) { models[id] = new Model(id, states[id]); });
  function ref(v) {
    return (typeof v === 'string' && v.indexOf('IPY_MODEL_') === 0) ? models[v.slice(10)] : null;
  }

  // Controls that do something without a kernel: linked ones and the Live views' sliders.
  var active = {};
  // Links (widgets.jslink / jsdlink) between saved models.
  Object.keys(models).forEach(function (id) {
    var m = models[id];
    if (m.name !== 'LinkModel' && m.name !== 'DirectionalLinkModel') return;
    var s = m.get('source') || [], t = m.get('target') || [];
    var src = ref(s[0]), dst = ref(t[0]);
    if (!src || !dst) return;
    active[src.id] = active[dst.id] = true;
    src.on(s[1], function (v) { dst.set(t[1], v); });
    if (m.name === 'LinkModel') dst.on(t[1], function (v) { src.set(s[1], v); });
  });

  // Live views: the slider picks the stored frame shown in the image and caption.
  var liveImages = {};
  lives.forEach(function (live) {
    var slider = models[live.slider], image = models[live.image], text = models[live.text];
    if (!slider || !image || !live.frames.length) return;
    liveImages[live.image] = live;
    active[live.slider] = true;
    function show(v) {
      var f = live.frames[Math.max(0, Math.min(live.frames.length - 1, v | 0))];
      image.set('_src', 'data:image/png;base64,' + f.png);
      if (text) text.set('value', f.text);
    }
    slider.on('value', show);
    show(slider.get('value'));
  });

  var LAYOUT = ['width', 'height', 'min_width', 'max_width', 'min_height', 'max_height',
    'margin', 'padding', 'border', 'display', 'flex', 'flex_flow', 'align_items',
    'align_content', 'align_self', 'justify_content', 'justify_items', 'overflow',
    'visibility', 'order', 'top', 'left', 'right', 'bottom', 'object_fit',
    'object_position', 'grid_template_columns', 'grid_template_rows', 'grid_gap',
    'grid_area', 'grid_template_areas', 'grid_row', 'grid_column', 'border_top',
    'border_right', 'border_bottom', 'border_left'];
  function applyLayout(el, m) {
    var layout = ref(m.get('layout'));
    if (!layout) return;
    LAYOUT.forEach(function (k) {
      var v = layout.get(k);
      if (v !== null && v !== undefined && v !== '') {
        el.style.setProperty(k === 'grid_gap' ? 'gap' : k.replace(/_/g, '-'), v);
      }
    });
  }
  function classes(el, m, extra) {
    el.className = 'llw ' + (extra || '');
    (m.get('_dom_classes') || []).forEach(function (c) { el.classList.add(c); });
  }
  function described(m, control) {
    var row = document.createElement('div');
    row.className = 'llw-row';
    var d = m.get('description');
    if (d) {
      var label = document.createElement('label');
      label.className = 'llw-desc';
      if (m.get('description_allow_html')) label.innerHTML = d; else label.textContent = d;
      row.appendChild(label);
    }
    row.appendChild(control);
    return row;
  }

  function imageSrc(m) {
    if (m.get('_src')) return m.get('_src');
    var v = m.get('value');
    if (v && v.base64) return 'data:image/' + (m.get('format') || 'png') + ';base64,' + v.base64;
    return '';
  }

  var views = {
    BoxModel: box, VBoxModel: box, HBoxModel: box, GridBoxModel: box,
    HTMLModel: htmlView, HTMLMathModel: htmlView, LabelModel: htmlView,
    ImageModel: imageView,
    IntSliderModel: slider, FloatSliderModel: slider, FloatLogSliderModel: slider,
    PlayModel: play,
    OutputModel: outputView,
    ButtonModel: button,
    DropdownModel: selection, SelectModel: selection, RadioButtonsModel: selection,
    ToggleButtonsModel: selection, SelectionSliderModel: selection,
    CheckboxModel: checkbox, ToggleButtonModel: checkbox,
    TextModel: textInput, IntTextModel: textInput, FloatTextModel: textInput,
    BoundedIntTextModel: textInput, BoundedFloatTextModel: textInput,
    TextareaModel: textInput,
    IntProgressModel: progress, FloatProgressModel: progress,
    TabModel: tabs, AccordionModel: tabs, StackModel: tabs
  };

  function render(m) {
    var make = views[m.name];
    var el;
    if (!make) {
      el = document.createElement('span');
      el.className = 'llw llw-missing';
      el.textContent = '[' + m.name.replace(/Model$/, '') + ': needs a running kernel]';
      return el;
    }
    el = make(m);
    applyLayout(el, m);
    return el;
  }

  function box(m) {
    var el = document.createElement('div');
    var kind = m.name === 'HBoxModel' ? 'llw-box llw-hbox' : m.name === 'GridBoxModel' ?
      'llw-grid' : m.name === 'VBoxModel' ? 'llw-box llw-vbox' : 'llw-box';
    classes(el, m, kind + ' widget-' + m.name.replace(/Model$/, '').toLowerCase());
    (m.get('children') || []).forEach(function (c) {
      var child = ref(c);
      if (child) el.appendChild(render(child));
    });
    return el;
  }
  function htmlView(m) {
    var el = document.createElement('div');
    classes(el, m, 'widget-html');
    var content = document.createElement('div');
    function update() {
      if (m.name === 'LabelModel') content.textContent = m.get('value') || '';
      else content.innerHTML = m.get('value') || '';
    }
    update();
    m.on('value', update);
    el.appendChild(m.get('description') ? described(m, content) : content);
    return el;
  }
  function imageView(m) {
    var img = document.createElement('img');
    classes(img, m, 'widget-image');
    var live = liveImages[m.id];
    if (live) {
      img.classList.add('llw-pixelated');
      img.style.width = live.width + 'px';
      img.style.height = live.height + 'px';
    } else {
      if (m.get('width')) img.setAttribute('width', m.get('width'));
      if (m.get('height')) img.setAttribute('height', m.get('height'));
    }
    img.src = imageSrc(m);
    m.on('_src', function () { img.src = imageSrc(m); });
    return img;
  }
  function slider(m) {
    var input = document.createElement('input');
    input.type = 'range';
    var log = m.name === 'FloatLogSliderModel';
    input.min = m.get('min'); input.max = m.get('max');
    input.step = m.get('step') || (m.name === 'IntSliderModel' ? 1 : 'any');
    input.disabled = !!m.get('disabled') || !active[m.id];
    if (!active[m.id]) input.title = 'Needs a running kernel: open the lab in Jupyter to use it';
    input.value = m.get('value');
    var readout = document.createElement('span');
    readout.className = 'llw-readout';
    function shown(v) { return log ? Math.pow(m.get('base') || 10, v) : v; }
    function update() {
      input.max = m.get('max');
      input.value = m.get('value');
      readout.textContent = m.get('readout') === false ? '' : String(shown(m.get('value')));
    }
    input.addEventListener('input', function () {
      m.set('value', m.name === 'IntSliderModel' ? parseInt(input.value, 10)
        : parseFloat(input.value));
    });
    m.on('value', update); m.on('max', update);
    update();
    var row = described(m, input);
    row.appendChild(readout);
    classes(row, m, 'llw-row widget-slider');
    return row;
  }
  function play(m) {
    var el = document.createElement('div');
    classes(el, m, 'llw-row widget-play');
    var timer = null;
    function stop() { if (timer) { clearTimeout(timer); timer = null; } m.set('playing', false); }
    function next() {
      if (!m.get('playing')) return;
      var v = m.get('value') + (m.get('step') || 1);
      if (v <= m.get('max')) { m.set('value', v); schedule(); }
      else if (m.get('repeat')) { m.set('value', m.get('min')); schedule(); }
      else stop();
    }
    function schedule() { timer = setTimeout(next, m.get('interval') || 100); }
    var buttons = {
      play: ['\u25B6', 'Play', function () {
        if (m.get('playing')) return;
        m.set('playing', true);
        if (m.get('value') >= m.get('max')) { m.set('value', m.get('min')); schedule(); }
        else next();
      }],
      pause: ['\u275A\u275A', 'Pause', function () {
        if (timer) { clearTimeout(timer); timer = null; } m.set('playing', false);
      }],
      stop: ['\u25A0', 'Stop', function () { stop(); m.set('value', m.get('min')); }],
      repeat: ['\u21BB', 'Repeat', function (b) {
        m.set('repeat', !m.get('repeat'));
        b.style.fontWeight = m.get('repeat') ? 'bold' : 'normal';
      }]
    };
    Object.keys(buttons).forEach(function (k) {
      if (k === 'repeat' && m.get('show_repeat') === false) return;
      var b = document.createElement('button');
      b.className = 'llw-play-' + k;
      b.textContent = buttons[k][0];
      b.title = buttons[k][1];
      b.setAttribute('aria-label', buttons[k][1]);
      b.disabled = !!m.get('disabled');
      b.addEventListener('click', function () { buttons[k][2](b); });
      el.appendChild(b);
    });
    return el;
  }
  function button(m) {
    var b = document.createElement('button');
    classes(b, m, 'widget-button');
    b.textContent = m.get('description') || '';
    b.title = 'Needs a running kernel: open the lab in Jupyter to use it';
    b.disabled = true;
    return b;
  }
  function selection(m) {
    var select = document.createElement('select');
    (m.get('_options_labels') || []).forEach(function (label, i) {
      var o = document.createElement('option');
      o.value = i; o.textContent = label;
      if (i === m.get('index')) o.selected = true;
      select.appendChild(o);
    });
    select.disabled = true;
    select.title = 'Needs a running kernel: open the lab in Jupyter to use it';
    var row = described(m, select);
    classes(row, m, 'llw-row widget-dropdown');
    return row;
  }
  function checkbox(m) {
    var input = document.createElement('input');
    input.type = 'checkbox';
    input.checked = !!m.get('value');
    input.disabled = true;
    var row = described(m, input);
    classes(row, m, 'llw-row widget-checkbox');
    return row;
  }
  function textInput(m) {
    var input = document.createElement(m.name === 'TextareaModel' ? 'textarea' : 'input');
    input.value = m.get('value') === null || m.get('value') === undefined ? '' : m.get('value');
    input.disabled = true;
    var row = described(m, input);
    classes(row, m, 'llw-row widget-text');
    return row;
  }
  function progress(m) {
    var bar = document.createElement('progress');
    bar.max = m.get('max') - m.get('min');
    bar.value = m.get('value') - m.get('min');
    var row = described(m, bar);
    classes(row, m, 'llw-row widget-progress');
    return row;
  }
  function tabs(m) {
    var el = document.createElement('div');
    classes(el, m, 'llw-box llw-vbox widget-tab');
    var titles = m.get('titles') || [];
    (m.get('children') || []).forEach(function (c, i) {
      var child = ref(c);
      if (!child) return;
      if (titles[i]) {
        var t = document.createElement('div');
        t.className = 'llw-tab-title';
        t.textContent = titles[i];
        el.appendChild(t);
      }
      el.appendChild(render(child));
    });
    return el;
  }
  function outputView(m) {
    var el = document.createElement('div');
    classes(el, m, 'widget-output');
    (m.get('outputs') || []).forEach(function (o) {
      var d = o.data || {};
      if (o.output_type === 'stream') {
        var pre = document.createElement('pre');
        pre.textContent = o.text;
        el.appendChild(pre);
      } else if (d['application/vnd.jupyter.widget-view+json']) {
        var inner = models[d['application/vnd.jupyter.widget-view+json'].model_id];
        if (inner) el.appendChild(render(inner));
      } else if (d['image/png']) {
        var img = document.createElement('img');
        img.src = 'data:image/png;base64,' + d['image/png'];
        el.appendChild(img);
      } else if (d['text/html']) {
        var div = document.createElement('div');
        div.innerHTML = [].concat(d['text/html']).join('');
        el.appendChild(div);
      } else if (d['text/plain']) {
        var p = document.createElement('pre');
        p.textContent = [].concat(d['text/plain']).join('');
        el.appendChild(p);
      } else if (o.output_type === 'error') {
        var e = document.createElement('pre');
        e.textContent = o.ename + ': ' + o.evalue;
        el.appendChild(e);
      }
    });
    return el;
  }

  function renderViews() {
    var scripts = document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]');
    Array.prototype.forEach.call(scripts, function (script) {
      var view;
      try { view = JSON.parse(script.textContent); } catch (e) { return; }
      var m = view && models[view.model_id];
      var el;
      if (m) {
        el = render(m);
      } else {
        el = document.createElement('div');
        el.className = 'llw llw-missing';
        el.textContent = 'This widget was not saved with the page; the figure below ' +
          'shows its result.';
      }
      script.parentNode.insertBefore(el, script.nextSibling);
    });
    document.body.setAttribute('data-widgets-rendered', String(scripts.length));
  }
  renderViews();
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
"""
