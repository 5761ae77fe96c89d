"""The dashboard's screen: the :class:`Dashboard` widget, its CSS, and the server's picture.

ipywidgets is imported when a :class:`Dashboard` is built, not with this module, so the
figures (:func:`server_figure`) work without it.
"""

from __future__ import annotations

import html
import io
import math

import jax
import numpy as np
from matplotlib.figure import Figure

from leakage_lab import attacks
from leakage_lab.dashboard.registry import (
    ATTACKS,
    DATASETS,
    DEFENSES,
    MODELS,
    SUGGESTED_MODEL,
    Config,
    Run,
    Scene,
    _dataset,
    _named_leaves,
    _order,
    _update_word,
    attack,
    check_config,
    observe,
    server_summary,
)

__all__ = ["Dashboard", "server_figure"]


def _as_matrix(leaf: np.ndarray) -> np.ndarray:
    """A 2-D view of one array: fan-in down, fan-out across (a bias is one row)."""
    leaf = np.asarray(leaf)
    if leaf.ndim <= 1:
        return leaf.reshape(1, -1)
    return leaf.reshape(-1, leaf.shape[-1])


def server_figure(scene: Scene) -> Figure:
    """Pictures of the update, one column per weight array (biases are in the table).

    Top row: what the client computed (only when a defense changed it); bottom row:
    what the server received, on the same colour scale (red positive, blue negative).
    For an MLP with one image, a last panel divides the first layer's weight gradient
    by its bias gradient: the image comes straight out (``attacks.analytic_fc``).
    """
    weights = [(n, c, o) for (n, c), (_, o) in zip(_named_leaves(scene.clean),
                                                   _named_leaves(scene.observed), strict=True)
               if n.endswith(".w") or n == "w"]
    rows = [("the server saw", 1)]
    if scene.defense is not None:
        rows = [("the client computed", 0), ("the server saw", 1)]
    leak = None
    first = next(iter(scene.observed))
    observed_first = scene.observed[first] if isinstance(scene.observed, dict) else None
    if (scene.config.model == "mlp" and len(scene.images) == 1 and observed_first is not None
            and _update_word(scene) == "gradient"):
        image = attacks.analytic_fc(observed_first["w"], observed_first["b"])
        if np.all(np.isfinite(image)):
            leak = np.clip(np.asarray(image).reshape(scene.images.shape[1:]), 0.0, 1.0)
    columns = len(weights) + (leak is not None)
    fig = Figure(figsize=(2.6 * columns, 2.4 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for c, (name, clean, seen) in enumerate(weights):
        scale = float(np.percentile(np.abs(clean), 99)) or 1.0
        for r, (title, which) in enumerate(rows):
            ax = axes[r, c]
            ax.imshow(_as_matrix((clean, seen)[which]), cmap="RdBu_r", vmin=-scale,
                      vmax=scale, aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{name}\n{'×'.join(map(str, clean.shape))}", fontsize=11)
            if c == 0:
                ax.set_ylabel(title, fontsize=11)
    if leak is not None:
        for r in range(len(rows)):
            axes[r, -1].set_axis_off()
        ax = axes[-1, -1]
        ax.imshow(leak[..., 0] if leak.shape[-1] == 1 else leak, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title("fc1.w grad ÷ fc1.b grad", fontsize=11)
    fig.tight_layout()
    return fig


def _figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------
# The widget.

_CSS = """<style>
.leakage-lab-dashboard .widget-label, .leakage-lab-dashboard select,
.leakage-lab-dashboard input, .leakage-lab-dashboard button,
.leakage-lab-dashboard .widget-readout, .leakage-lab-dashboard .widget-checkbox label,
.leakage-lab-dashboard .jupyter-widgets label {
  font-size: 20px !important; line-height: 1.4 !important; }
.leakage-lab-dashboard select, .leakage-lab-dashboard input[type="number"] {
  height: 36px !important; }
.leakage-lab-dashboard .widget-inline-hbox { min-height: 40px; }
.leakage-lab-dashboard .leakage-lab-run button, .leakage-lab-dashboard button.leakage-lab-run {
  font-size: 24px !important; height: 52px !important; }
</style>"""

_FONT = "font-size: 20px; line-height: 1.4;"


def _html(text: str, size: int = 20, bold: bool = False) -> str:
    weight = " font-weight: bold;" if bold else ""
    return f'<div style="font-size: {size}px; line-height: 1.4;{weight}">{text}</div>'


class Dashboard:
    """The classroom screen: controls on the left, the live reconstruction on the right,
    and below them what the server saw. Display it by ending a cell with it.

    Args:
        config: the starting configuration (default: a digit, the ReLU convnet,
            Inverting Gradients, no defense).
        seed: the starting seed (weights, defense noise, attack start).

    Attributes:
        widget: the ipywidgets container.
        live: the current :class:`~leakage_lab.widgets.Live` view (a new one per run).
        last: the last :class:`Run`, or ``None``.
        controls: the input widgets by :class:`Config` field name, plus ``"seed"``.
        run_button: the Run button (``run_button.click()`` runs it in code too).
    """

    def __init__(self, config: Config | None = None, *, seed: int = 0):
        import ipywidgets as w

        config = check_config(config if config is not None else Config())
        self.last: Run | None = None
        # Each control gets a Layout of its own: the strength knobs are hidden through
        # their layout's display, and a shared Layout would hide every control with it.
        def wide(display=None):
            return w.Layout(width="440px", display=display)

        style = {"description_width": "120px"}

        def dropdown(registry, value, description, label=lambda k, v: v):
            return w.Dropdown(options=[(label(k, v), k) for k, v in registry.items()],
                              value=value, description=description, style=style, layout=wide())

        self.controls = {
            "dataset": dropdown(DATASETS, config.dataset, "image set", lambda k, v: k),
            "image": w.IntSlider(value=config.image, min=0,
                                 max=len(_dataset(config.dataset)) - 1,
                                 description="image #", style=style, layout=wide()),
            "batch": w.IntSlider(value=config.batch, min=1, max=4, description="images",
                                 style=style, layout=wide()),
            "model": dropdown(MODELS, config.model, "model", lambda k, v: v.label),
            "attack": dropdown(ATTACKS, config.attack, "attack", lambda k, v: v.label),
            "defense": dropdown(DEFENSES, config.defense, "defense", lambda k, v: v.label),
            "strength": w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.01,
                                      readout_format=".3g", description="strength",
                                      style=style, layout=wide()),
            "noise": w.FloatLogSlider(value=1e-3, base=10, min=-4, max=-1, step=0.1,
                                      readout_format=".1e", description="σ", style=style,
                                      layout=wide("none")),
            "steps": w.IntSlider(value=config.steps, min=10, max=2000, step=10,
                                 description="steps", style=style, layout=wide()),
            "adaptive": w.Checkbox(value=config.adaptive, indent=False,
                                   description="attacker adapts to the defense",
                                   layout=wide()),
            "seed": w.IntText(value=int(seed), description="seed", style=style,
                              layout=w.Layout(width="240px")),
        }
        c = self.controls
        for name, control in c.items():  # so a page (and the browser test) can find each
            control.add_class(f"leakage-lab-control-{name}")
        self._preview = w.Image(format="png")
        self._preview_caption = w.HTML()
        self._hint = w.HTML()
        self.run_button = w.Button(description="Run", button_style="primary",
                                   icon="play", layout=w.Layout(width="440px", height="52px"))
        self.run_button.add_class("leakage-lab-run")
        self.status = w.HTML(_html("Choose, then press <b>Run</b>."))
        self._summary = w.HTML()
        self._server_image = w.Image(format="png")
        self._live_box = w.VBox()
        self.status.add_class("leakage-lab-status")

        self._set_strength_knob(config.defense, config.strength)
        c["dataset"].observe(self._on_dataset, names="value")
        for name in ("image", "batch"):
            c[name].observe(lambda _: self._show_preview(), names="value")
        for name in ("model", "attack"):
            c[name].observe(lambda _: self._show_hint(), names="value")
        c["attack"].observe(self._on_attack, names="value")
        c["defense"].observe(lambda change: self._set_strength_knob(change["new"], None),
                             names="value")
        self.run_button.on_click(self._on_run)

        left = w.VBox([
            w.HTML(_html("The client", 22, True)),
            c["dataset"], c["image"], c["batch"],
            w.HBox([self._preview, self._preview_caption]),
            c["model"],
            w.HTML(_html("The client's defense", 22, True)),
            c["defense"], c["strength"], c["noise"],
            w.HTML(_html("The curious server", 22, True)),
            c["attack"], c["steps"], c["adaptive"], c["seed"], self._hint,
            self.run_button, self.status,
        ], layout=w.Layout(width="470px", padding="8px"))
        right = w.VBox([w.HTML(_html("What the server rebuilt", 22, True)), self._live_box],
                       layout=w.Layout(padding="8px"))
        server = w.VBox([w.HTML(_html("What the server saw", 22, True)), self._summary,
                         self._server_image], layout=w.Layout(padding="8px"))
        self.widget = w.VBox([
            w.HTML(_CSS),
            w.HTML(_html("Gradient leakage, live", 30, True)),
            w.HBox([left, right]),
            server,
        ])
        self.widget.add_class("leakage-lab-dashboard")
        self._show_preview()
        self._show_hint()
        self._new_live()

    # -- reading and setting the controls ----------------------------------------------

    def config(self) -> Config:
        """The configuration the controls show now."""
        c = self.controls
        choice = DEFENSES[c["defense"].value]
        slider = c["noise"] if choice.log else c["strength"]
        return Config(dataset=c["dataset"].value, image=int(c["image"].value),
                      batch=int(c["batch"].value), model=c["model"].value,
                      attack=c["attack"].value, defense=c["defense"].value,
                      strength=float(slider.value) if choice.knob else None,
                      steps=int(c["steps"].value), adaptive=bool(c["adaptive"].value))

    def set_config(self, config: Config) -> None:
        """Moves the controls to ``config`` (checked first)."""
        config = check_config(config)
        c = self.controls
        c["dataset"].value = config.dataset
        c["batch"].value = config.batch
        c["image"].value = config.image
        for name in ("model", "attack", "defense", "steps", "adaptive"):
            c[name].value = getattr(config, name)
        self._set_strength_knob(config.defense, config.strength)

    def _set_strength_knob(self, defense: str, value: float | None) -> None:
        choice = DEFENSES[defense]
        linear, log = self.controls["strength"], self.controls["noise"]
        linear.layout.display = None if choice.knob and not choice.log else "none"
        log.layout.display = None if choice.knob and choice.log else "none"
        value = choice.default if value is None else value
        if choice.knob is None:
            linear.description, linear.disabled = "(no knob)", True
        elif choice.log:
            log.min, log.max = math.log10(choice.low), math.log10(choice.high)
            log.step, log.value, log.description = choice.step, value, choice.knob
        else:
            # Widen the range first so that no intermediate state has min > max.
            linear.max = max(linear.max, choice.high)
            linear.min = min(linear.min, choice.low)
            linear.step = choice.step
            linear.min, linear.max = choice.low, choice.high
            linear.value = value
            linear.description, linear.disabled = choice.knob, False

    def _on_dataset(self, change) -> None:
        name = change["new"]
        self.controls["image"].max = len(_dataset(name)) - 1
        self.controls["model"].value = SUGGESTED_MODEL[name]
        self._show_preview()

    def _on_attack(self, change) -> None:
        self.controls["steps"].value = ATTACKS[change["new"]].default_steps

    def _show_hint(self) -> None:
        c = self.controls
        text = (f"<b>{html.escape(ATTACKS[c['attack'].value].label)}:</b> "
                f"{html.escape(ATTACKS[c['attack'].value].about)}<br>"
                f"<b>{html.escape(MODELS[c['model'].value].label)}:</b> "
                f"{html.escape(MODELS[c['model'].value].about)}")
        self._hint.value = f'<div style="font-size: 16px; line-height: 1.3;">{text}</div>'

    def _show_preview(self) -> None:
        from leakage_lab.widgets import to_png

        c = self.controls
        ds = _dataset(c["dataset"].value)
        indices = self._indices()
        images = ds.images[indices]
        self._preview.value = to_png(images, scale=max(1, 84 // images.shape[1]), max_columns=4)
        names = ", ".join(ds.class_names[int(k)] for k in ds.labels[indices])
        self._preview_caption.value = _html(f"&nbsp;label: {html.escape(names)}", 18)

    def _indices(self) -> np.ndarray:
        """The client's images on screen now (clamped to the data set while choosing)."""
        c = self.controls
        order = _order(c["dataset"].value)
        batch = int(c["batch"].value)
        start = min(int(c["image"].value), len(order) - batch)
        return order[start:start + batch]

    def _new_live(self, truth=None):
        from leakage_lab.widgets import Live

        if truth is None:
            truth = _dataset(self.controls["dataset"].value).images[self._indices()]
        scale = max(2, 224 // (truth.shape[1] * min(len(truth), 2)))
        self.live = Live(truth, scale=scale, max_columns=2)
        self._live_box.children = (self.live.widget,)
        return self.live

    # -- running -----------------------------------------------------------------------

    def run(self) -> Run:
        """Runs the configuration on screen, animating the reconstruction; returns the Run.

        Errors propagate (the Run button's handler shows them in the status line).
        """
        config = check_config(self.config())
        key = jax.random.key(int(self.controls["seed"].value))
        self.status.value = _html("Preparing the client's update…")
        scene = observe(config, key=key)
        self._summary.value = _html(server_summary(scene), 18)
        self._server_image.value = _figure_png(server_figure(scene))
        live = self._new_live(scene.images)
        self.status.value = _html(
            "Attacking… (the first run of a setting compiles for a few seconds)")
        out = attack(scene, key=key, callback=live.callback)
        self.last = out
        self.status.value = _html(
            f"<b>PSNR {out.psnr:.1f} dB</b> after {out.result.steps} steps, "
            f"{out.seconds:.1f} s.<br><i>{html.escape(out.result.message)}</i>", 18)
        return out

    def _on_run(self, _button) -> None:
        self.run_button.disabled = True
        self.run_button.description = "Running…"
        try:
            self.run()
        except Exception as error:  # noqa: BLE001 - shown to the class, not raised
            self.status.value = (f'<div style="{_FONT} color: #b00020;"><b>Could not run:</b> '
                                 f"{html.escape(str(error))}</div>")
        finally:
            self.run_button.disabled = False
            self.run_button.description = "Run"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
