"""A live view of an attack's reconstruction, for the labs and for demos on a projector.

:class:`Live` shows the current reconstruction beside the ground truth, with the step,
the loss and the PSNR in large type. Pass its :meth:`~Live.callback` to any attack: the
engine calls it between jitted chunks, so the picture moves while the attack runs, on
CPU or GPU alike (the view only ever sees numpy frames). Every frame is recorded, and a
Play button with a slider scrubs through them once the run is over.

In a notebook, display the view first, then run the attack in the same cell::

    import leakage_lab as ll
    from IPython.display import display
    from leakage_lab.widgets import Live

    live = Live(truth)                   # truth: the client's images [N, H, W, C]
    display(live)                        # the view appears now and updates live
    result = ll.attacks.dlg(model, params, grads, key=key, callback=live.callback)

Afterwards, ``live.strip()`` draws a static row of frames, which still reads on GitHub
where no kernel runs the widgets, and ``Live.from_result(result, truth)`` rebuilds a
scrubbable view from a finished result.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from leakage_lab.engine import AttackResult, Frame
from leakage_lab.metrics import psnr, score_batch

__all__ = ["Live", "frame_strip", "label_points", "tile", "to_png"]

# Batches up to this size are scored after matching reconstructions to the truth
# (metrics.score_batch, N^2 PSNRs); larger ones pair images by position to stay cheap.
MATCH_UP_TO = 16

_FONT = "font-size: 20px; line-height: 1.4;"
_TITLE_FONT = "font-size: 24px; font-weight: bold;"


def _as_batch(images) -> np.ndarray:
    """Returns ``images`` as a float batch ``[N, H, W, C]`` with C = 1 (grey) or 3 (RGB).

    Accepts one image ``[H, W]`` or ``[H, W, C]``, or a batch ``[N, H, W, C]``.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2:
        x = x[None, :, :, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape:
        raise ValueError(
            "Expected images [H, W], [H, W, C] or [N, H, W, C] with C = 1 or 3, "
            f"got shape {list(np.shape(images))}."
        )
    return x


def tile(images, *, max_columns: int = 8, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """Lays a batch of images out in a grid, row by row.

    Args:
        images: one image ``[H, W(, C)]`` or a batch ``[N, H, W, C]`` (C = 1 or 3).
        max_columns: images per row at most.
        gap: pixels between neighbouring images.
        fill: value of the gap pixels (1.0 is white).

    Returns:
        ``[rows*H + (rows-1)*gap, cols*W + (cols-1)*gap, C]`` with ``cols = min(N,
        max_columns)`` and ``rows = ceil(N / cols)``. A single image comes back unchanged.
    """
    x = _as_batch(images)
    n, h, w, c = x.shape
    cols = max(1, min(n, int(max_columns)))
    rows = math.ceil(n / cols)
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, c), fill,
                   dtype=np.float32)
    for i, image in enumerate(x):
        r, k = divmod(i, cols)
        top, left = r * (h + gap), k * (w + gap)
        grid[top:top + h, left:left + w] = image
    return grid


def to_png(images, *, scale: int = 6, max_columns: int = 8) -> bytes:
    """Encodes images as PNG bytes, tiled and enlarged for a projector.

    Values are clipped to [0, 1] (NaN becomes 0) and stored as 8-bit; grey images
    (C = 1) become a greyscale PNG, RGB images a colour one.

    Args:
        images: one image ``[H, W(, C)]`` or a batch ``[N, H, W, C]``, values in [0, 1].
        scale: each pixel becomes a ``scale`` x ``scale`` block (nearest neighbour).
        max_columns: images per row when tiling a batch (see :func:`tile`).

    Returns:
        The PNG file as bytes: ``scale`` times the size of the tiled grid.
    """
    if int(scale) < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}.")
    grid = tile(images, max_columns=max_columns)
    grid = np.repeat(np.repeat(grid, int(scale), axis=0), int(scale), axis=1)
    pixels = np.round(np.clip(np.nan_to_num(grid), 0.0, 1.0) * 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    # Low compression: the callback runs between chunks and should not slow the attack.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _score(images: np.ndarray, truth: np.ndarray | None):
    """Scores a reconstruction against the truth.

    Returns ``(images, value, label)``: the images in display order (matched to the
    truth when the batch is small enough), the PSNR in dB (the mean for a batch), and
    what that number is. ``value`` is ``None`` without a truth.
    """
    if truth is None:
        return images, None, ""
    if images.shape != truth.shape:
        raise ValueError(
            f"The reconstruction has shape {list(images.shape)} but the truth given to "
            f"Live has shape {list(truth.shape)}; they must match."
        )
    if len(images) == 1:
        return images, psnr(images[0], truth[0]), "PSNR"
    if len(images) <= MATCH_UP_TO:
        score = score_batch(images, truth)
        return images[score.order], score.mean_psnr, "mean PSNR (matched)"
    return images, float(np.mean(psnr(images, truth))), "mean PSNR (by position)"


def _number(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "–"


class Live:
    """A live, scrubbable view of an attack's reconstruction.

    Shows the current reconstruction beside the truth (if given) with the step, the
    loss, the best loss and the PSNR. Pass :meth:`callback` to an attack to animate it;
    every frame is kept in :attr:`frames`, and the Play button and slider below the
    pictures scrub through them. Display it with ``display(live)``, or by ending a cell
    with ``live``.

    For a batch with a truth, the PSNR is the mean after matching each truth image to
    its closest reconstruction (``metrics.score_batch``), and the reconstructions are
    drawn in that matched order, so each sits where its truth sits. Batches larger
    than ``MATCH_UP_TO`` are compared by position instead, which is cheaper.

    Args:
        truth: the ground-truth images ``[N, H, W, C]`` (or one image ``[H, W, C]``),
            values in [0, 1]; ``None`` to show the reconstruction alone.
        scale: on-screen pixels per image pixel (nearest neighbour), e.g. 6 turns a
            32x32 image into 192x192.
        title: a heading shown above the pictures.
        max_columns: images per row when a batch is tiled.
        interval: milliseconds per frame when the Play button runs.

    Attributes:
        frames: the recorded :class:`~leakage_lab.engine.Frame` s, in order.
        widget: the ipywidgets container, to place inside a larger layout.
    """

    def __init__(self, truth=None, *, scale: int = 6, title: str | None = None,
                 max_columns: int = 8, interval: int = 200):
        self.truth = None if truth is None else np.clip(_as_batch(truth), 0.0, 1.0)
        self.scale = int(scale)
        self.max_columns = int(max_columns)
        self.frames: list[Frame] = []
        self.message = ""
        self._views: dict[int, tuple[bytes, str]] = {}  # frame index -> (png, text)
        self._current = -1

        caption = f'<div style="{_FONT}">{{}}</div>'
        self._image = widgets.Image(format="png")
        self._text = widgets.HTML(caption.format("Waiting for the first frame…"))
        self._note = widgets.HTML()
        self._slider = widgets.IntSlider(value=0, min=0, max=0, description="frame",
                                         continuous_update=True,
                                         layout=widgets.Layout(width="420px"))
        self._play = widgets.Play(value=0, min=0, max=0, interval=int(interval),
                                  description="Play")
        self._link = widgets.jslink((self._play, "value"), (self._slider, "value"))
        self._slider.observe(self._on_slider, names="value")

        pictures = [widgets.VBox([widgets.HTML(caption.format("reconstruction")),
                                  self._image])]
        if self.truth is not None:
            # Grey until the first frame arrives.
            self._image.value = self._png(np.full_like(self.truth, 0.5))
            # The truth never changes: encode it once.
            truth_image = widgets.Image(value=self._png(self.truth), format="png")
            pictures.append(widgets.VBox([widgets.HTML(caption.format("truth")),
                                          truth_image],
                                         layout=widgets.Layout(margin="0 0 0 24px")))
        heading = [] if title is None else [
            widgets.HTML(f'<div style="{_TITLE_FONT}">{html.escape(title)}</div>')]
        self.widget = widgets.VBox(
            [*heading,
             widgets.HBox(pictures),
             self._text, self._note,
             widgets.HBox([self._play, self._slider])],
            layout=widgets.Layout(padding="8px"),
        )

    @classmethod
    def from_result(cls, result: AttackResult, truth=None, **kwargs) -> Live:
        """A view of a finished attack, to scrub through ``result.frames``.

        Args:
            result: what an attack returned.
            truth: the ground truth, as for :class:`Live`.
            **kwargs: passed on to :class:`Live` (``scale``, ``title``...).

        Returns:
            A :class:`Live` showing the last frame, with the run's ending message.
        """
        live = cls(truth, **kwargs)
        live.frames = list(result.frames)
        live.message = result.message
        live._note.value = f'<div style="{_FONT}"><i>{html.escape(result.message)}</i></div>'
        if live.frames:
            live._go_to(len(live.frames) - 1)
        return live

    def callback(self, frame: Frame) -> None:
        """Records ``frame`` and shows it; pass as ``callback=live.callback`` to an attack.

        The attack's engine calls it once before the first step and after every chunk.
        It encodes one small PNG and computes one PSNR, so it costs little time.
        """
        self.frames.append(frame)
        self._go_to(len(self.frames) - 1)

    def clear(self) -> None:
        """Forgets the recorded frames, to reuse the view for another run."""
        self.frames = []
        self._views.clear()
        self.message = ""
        self._note.value = ""
        self._current = -1
        self._slider.value = self._play.value = 0
        self._slider.max = self._play.max = 0

    def psnr(self, index: int = -1) -> float | None:
        """The PSNR (dB; the mean for a batch) of frame ``index``, or ``None`` without a truth."""
        frame = self.frames[index]
        return _score(_as_batch(frame.images), self.truth)[1]

    def strip(self, num: int = 6) -> Figure:
        """A static figure of ``num`` evenly spaced frames and the truth (:func:`frame_strip`)."""
        return frame_strip(self.frames, self.truth, num=num, max_columns=self.max_columns)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- internals --------------------------------------------------------------------

    def _png(self, images) -> bytes:
        return to_png(images, scale=self.scale, max_columns=self.max_columns)

    def _view(self, index: int) -> tuple[bytes, str]:
        """The PNG and the caption of frame ``index``, computed once and then cached."""
        if index not in self._views:
            frame = self.frames[index]
            images, value, label = _score(_as_batch(frame.images), self.truth)
            parts = [f"step <b>{frame.step}</b> / {frame.total_steps}",
                     f"loss {_number(frame.loss)}",
                     f"best {_number(frame.best_loss)}"]
            if value is not None:
                parts.append(f"{label} <b>{value:.1f} dB</b>")
            text = f'<div style="{_FONT}">{" &nbsp;·&nbsp; ".join(parts)}</div>'
            self._views[index] = (self._png(images), text)
        return self._views[index]

    def _show(self, index: int) -> None:
        if index == self._current or not 0 <= index < len(self.frames):
            return
        self._image.value, self._text.value = self._view(index)
        self._current = index

    def _go_to(self, index: int) -> None:
        """Shows frame ``index`` and moves the slider (and Play's range) to it."""
        self._show(index)
        last = len(self.frames) - 1
        self._slider.max = self._play.max = max(last, 0)
        # Set both ends of the jslink: a front end that draws the widget only later
        # (Voila, after the cell finishes) would otherwise sync Play's 0 to the slider.
        self._slider.value = self._play.value = index

    def _on_slider(self, change) -> None:
        self._show(int(change["new"]))


def _evenly_spaced(count: int, num: int) -> list[int]:
    """``num`` indices from 0 to ``count - 1`` inclusive, evenly spaced, without repeats."""
    if count <= 0 or num <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(num, count))})


def frame_strip(frames: Sequence[Frame], truth=None, *, num: int = 6,
                max_columns: int = 8) -> Figure:
    """Draws a row of evenly spaced frames of a run, then the truth, as a static figure.

    Each panel's title gives the step, and the PSNR when a truth is given (for a
    batch: the mean after matching, as in :class:`Live`). Unlike the widget, the figure
    still shows on GitHub, where no kernel runs. Nothing is shown here: in a notebook,
    end a cell with the call (or ``display(fig)``) to see it, or save it with
    ``fig.savefig(...)``.

    Args:
        frames: recorded frames, e.g. ``result.frames`` or ``live.frames``.
        truth: ground-truth images ``[N, H, W, C]`` (or one image), or ``None``.
        num: how many frames to draw at most; the first and the last are always among
            them.
        max_columns: images per row when a batch is tiled in one panel.

    Returns:
        The matplotlib Figure: one axis per drawn frame, plus one for the truth.
    """
    truth = None if truth is None else np.clip(_as_batch(truth), 0.0, 1.0)
    frames = list(frames)
    picks = _evenly_spaced(len(frames), num)
    panels = []  # (grid, title)
    for i in picks:
        images, value, _ = _score(_as_batch(frames[i].images), truth)
        title = f"step {frames[i].step}"
        if value is not None:
            title += f"\n{value:.1f} dB"
        panels.append((tile(images, max_columns=max_columns), title))
    if truth is not None:
        panels.append((tile(truth, max_columns=max_columns), "truth\n"))
    if not panels:
        raise ValueError("frame_strip needs at least one frame or a truth to draw.")

    height, width = panels[0][0].shape[:2]
    panel_width = min(4.0, max(1.8, width / 24))  # inches: wider for a tiled batch
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(panel_width * len(panels),
                                      panel_width * height / width + 0.7))
    # Detached from pyplot: a notebook then shows it once, when it is returned.
    plt.close(fig)
    for ax, (grid, title) in zip(axes[0], panels, strict=True):
        if grid.shape[-1] == 1:
            ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(np.clip(grid, 0.0, 1.0), interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# Offsets (points) tried in turn for a label: rings of growing radius around its point.
_LABEL_OFFSETS = tuple(
    (dx * r, dy * r - 4, "left" if dx > 0 else "right" if dx < 0 else "center")
    for r in (7, 16, 28, 42)
    for dx, dy in ((1, 0.4), (1, -0.9), (-1, 0.4), (-1, -0.9), (0, 1.2), (0, -1.6),
                   (1, 1.3), (-1, 1.3), (1, -1.9), (-1, -1.9)))


def label_points(ax, xs, ys, texts, *, fontsize: float = 8, pad: float = 2.0) -> list:
    """Writes ``texts[i]`` beside the point ``(xs[i], ys[i])`` without overprinting.

    Labels are placed one by one, each at the first of a few offsets around its point
    whose box overlaps neither an earlier label, nor any point, nor the axes' edge (rings
    of growing radius; a label set further off gets a thin leader line to its point); when
    none is free, the least crowded offset is used. Call it after
    the data and the axis limits are set (it draws the figure once to measure text).

    Returns:
        The :class:`matplotlib.text.Annotation` objects, in the order of ``texts``.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    points = ax.transData.transform(np.column_stack([np.asarray(xs, float),
                                                     np.asarray(ys, float)]))
    r = 5.0 * scale
    taken = [(x - r, y - r, x + r, y + r) for x, y in points]
    frame = ax.get_window_extent(renderer)

    def overlap(box, other):
        w = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
        h = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
        return w * h

    placed = []
    for (px, py), text in zip(points, texts, strict=True):
        best = None
        for dx, dy, ha in _LABEL_OFFSETS:
            note = ax.annotate(text, (0, 0), xycoords="figure pixels", fontsize=fontsize,
                               xytext=(dx, dy), textcoords="offset points", ha=ha,
                               va="bottom")
            note.xy = (px, py)
            e = note.get_window_extent(renderer)
            box = (e.x0 - pad, e.y0 - pad, e.x1 + pad, e.y1 + pad)
            outside = (box[0] < frame.x0) or (box[2] > frame.x1) or (box[1] < frame.y0) \
                or (box[3] > frame.y1)
            cost = sum(overlap(box, t) for t in taken) + (1e9 if outside else 0.0)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box, dx, dy, ha)
            else:
                note.remove()
            if cost == 0:
                break
        cost, note, box, dx, dy, ha = best
        # Anchor to data coordinates so the label follows the point if the figure resizes.
        note.remove()
        note = ax.annotate(text, (xs[len(placed)], ys[len(placed)]), fontsize=fontsize,
                           xytext=(dx, dy), textcoords="offset points", ha=ha, va="bottom",
                           arrowprops=None if abs(dx) + abs(dy) < 15 else dict(
                               arrowstyle="-", lw=0.5, color="0.5"))
        taken.append(box)
        placed.append(note)
    return placed
