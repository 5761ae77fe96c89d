"""Helpers shared by the tests."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def numpy_init(model, seed):
    """Weights shaped like ``model.init``'s, drawn with numpy (``model.init`` takes seconds
    to compile): U(-0.5, 0.5) for the LeNet as in DLG, else PyTorch's default
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in the product of a weight's input dims."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = {}
    for name, layer in shapes.items():
        bound = 0.5 if model.name.startswith("lenet") else \
            1 / np.sqrt(np.prod(layer["w"].shape[:-1]))
        params[name] = {k: jnp.asarray(rng.uniform(-bound, bound, v.shape), jnp.float32)
                        for k, v in layer.items()}
    return params


def small_client(model):
    """The client tests/test_fedavg.py and tests/test_fedavg_presets.py attack: the weights
    ``numpy_init(model, 0)``, six images U(0, 1) shaped like the model's input (seed 0) and
    their labels [0, 1, 2, 0, 1, 0]. Returns (params, images, labels)."""
    params = numpy_init(model, 0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, (6, *model.input_shape)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 0], np.int32)
    return params, images, y


def load(path):
    """A notebook as JSON."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sources(nb):
    return ["".join(c.get("source", [])) for c in nb["cells"]]


def regions(text, begin, end):
    """The lines strictly inside each BEGIN ... END region of one cell."""
    found, inside = [], None
    for line in text.split("\n"):
        if begin in line:
            inside = []
        elif end in line:
            found.append(inside)
            inside = None
        elif inside is not None:
            inside.append(line)
    return found
