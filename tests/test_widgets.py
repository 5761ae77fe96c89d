"""Tests for the live reconstruction view (headless: no frontend, no kernel)."""

import io

import jax
import numpy as np
import pytest
from PIL import Image

import leakage_lab as ll
from leakage_lab.engine import Frame
from leakage_lab.widgets import Live, frame_strip, tile, to_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode(png) -> np.ndarray:
    png = bytes(png)  # Image.value holds a memoryview
    assert png.startswith(PNG_SIGNATURE)
    return np.asarray(Image.open(io.BytesIO(png)))


def test_png_grey_is_upscaled_greyscale():
    image = np.linspace(0, 1, 8 * 5).reshape(8, 5, 1)
    pixels = decode(to_png(image, scale=3))
    assert pixels.shape == (24, 15)  # 2-D: a greyscale PNG
    # Nearest neighbour: each pixel becomes a 3x3 block of the same value.
    assert np.all(pixels[:3, :3] == pixels[0, 0])
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255


def test_png_colour_clips_to_unit_range():
    image = np.zeros((4, 4, 3))
    image[..., 0] = 2.0  # above 1: clipped to full red
    image[..., 2] = -1.0  # below 0: clipped to none
    pixels = decode(to_png(image, scale=2))
    assert pixels.shape == (8, 8, 3)
    assert np.all(pixels[..., 0] == 255) and np.all(pixels[..., 2] == 0)


def test_batch_tiles_in_a_grid():
    batch = np.random.default_rng(0).uniform(size=(5, 6, 7, 1))
    # 5 images, at most 3 a row: 2 rows x 3 columns, 1-pixel gaps, scaled by 2.
    pixels = decode(to_png(batch, scale=2, max_columns=3))
    assert pixels.shape == (2 * (2 * 6 + 1), 2 * (3 * 7 + 2))
    grid = tile(batch, max_columns=3)
    assert grid.shape == (13, 23, 1)
    np.testing.assert_allclose(grid[7:13, 8:15], batch[4])
    with pytest.raises(ValueError, match="C = 1 or 3"):
        to_png(np.zeros((2, 4, 4, 2)))


def frame(step, images, total=10):
    return Frame(step, float(10 - step), float(10 - step), images, total)


def test_callback_records_frames_and_slider_scrubs():
    truth = np.random.default_rng(1).uniform(size=(2, 4, 4, 3))
    live = Live(truth, scale=2, title="demo")
    truth_png = live.widget.children[1].children[1].children[1].value
    assert truth_png == to_png(truth, scale=2)
    for step in range(3):
        live.callback(frame(step, np.clip(truth + 0.3 / (step + 1), 0, 1)))
    assert len(live.frames) == 3 and live._slider.max == live._play.max == 2
    assert live._slider.value == 2
    assert "step <b>2</b> / 10" in live._text.value and "PSNR" in live._text.value
    assert live.psnr(0) < live.psnr(2)
    live._slider.value = 0
    assert live._image.value == to_png(live.frames[0].images, scale=2)
    assert "step <b>0</b>" in live._text.value
    live.clear()
    assert live.frames == [] and live._slider.max == 0


def test_truth_shape_mismatch_is_explained():
    live = Live(np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="must match"):
        live.callback(frame(0, np.zeros((1, 5, 5, 1))))


@pytest.fixture(scope="module")
def attack():
    """A real DLG run on a tiny LeNet, recording what the view showed at each callback."""
    model = ll.models.lenet(num_classes=4, input_shape=(8, 8, 1))
    k_params, k_image, k_attack = jax.random.split(jax.random.key(0), 3)
    params = model.init(k_params)
    truth = np.asarray(jax.random.uniform(k_image, (1, 8, 8, 1)))
    grads = ll.fl.gradient(model, params, truth, np.array([2]))

    live = Live(truth, scale=4)
    shown = []

    def callback(f):
        live.callback(f)
        shown.append(bytes(live._image.value))

    result = ll.attacks.dlg(model, params, grads, steps=60, chunk=20, key=k_attack,
                            tol=0.0, callback=callback)
    return live, shown, result, truth


def test_live_run_animates_and_scrubs(attack):
    live, shown, result, truth = attack
    assert len(shown) == len(live.frames) == 4  # once at the start, then 3 chunks
    assert all(png.startswith(PNG_SIGNATURE) for png in shown)
    assert decode(shown[0]).shape == (32, 32)
    assert shown[0] != shown[-1]  # the picture moved
    assert live._slider.max == len(live.frames) - 1
    live._slider.value = 1
    assert live._image.value == shown[1]
    assert f"step <b>{live.frames[1].step}</b>" in live._text.value
    live._slider.value = 0
    assert live._image.value == shown[0]


def test_from_result_and_strip(attack):
    _, _, result, truth = attack
    view = Live.from_result(result, truth, scale=4)
    assert len(view.frames) == len(result.frames)
    assert view._slider.value == view._slider.max == len(result.frames) - 1
    assert view.message == result.message
    np.testing.assert_allclose(decode(view._image.value)[::4, ::4] / 255,
                               result.frames[-1].images[0, ..., 0], atol=1 / 255)

    fig = view.strip(num=3)
    assert len(fig.axes) == 3 + 1  # three frames and the truth
    assert fig.axes[0].get_title().startswith("step 0")
    assert "dB" in fig.axes[0].get_title()
    assert fig.axes[-1].get_title().startswith("truth")
    # More than there are frames: every frame once. Without a truth: no truth panel.
    assert len(frame_strip(result.frames, num=50).axes) == len(result.frames)


def test_ipython_display_does_not_need_a_kernel(capsys):
    live = Live()
    live._ipython_display_()  # outside IPython, display() just prints a text form
    assert "VBox" in capsys.readouterr().out


def test_label_points_does_not_overprint():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leakage_lab.widgets import label_points

    fig, ax = plt.subplots(figsize=(6, 4))
    xs, ys = [40, 39, 38, 40.5, 20, 6, 6.5], [85, 85.5, 84, 85.2, 70, 40, 40.3]
    ax.scatter(xs, ys)
    notes = label_points(ax, xs, ys, [f"label {i}" for i in range(len(xs))])
    fig.canvas.draw()
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(n) for n in notes]      # the text, without leader lines
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)
