"""Inverting Gradients on tiny-images: seconds per 1,000 steps, compile time and PSNR, as JSON.

The recipe of Geiping et al. (NeurIPS 2020) on the CIFAR-100 convnet of Dimitrov et al.
(TMLR 2022, Table 5: width 64, 100 outputs) at initialisation: one 32x32 colour image,
its label known, cosine distance + total variation 1e-4, Adam on the gradient's sign
(rate 0.1, decayed x0.1 at 3/8, 5/8, 7/8), projection onto [0, 1]. Each run takes
another image and fresh weights; seconds exclude compilation, reported on its own.
The reference point is benchmarks/pytorch_reference.py, the same recipe in PyTorch, run on
the same machine (planning measured 21-25 s per 1,000 steps for a PyTorch version of it;
PyTorch 2.13 with pytorch_reference.py took 9.7 s on a quiet 2-core machine).

By default the attack compares gradients through ``attacks.gradient_inner_products``
(the 10368 x 200 weight gradient of the first dense layer is never formed) and the 3x3
convolution is one matrix product over patches (``nn.conv2d_im2col``: XLA's own
convolution is slow on CPU for the weight gradient's 32x32 window). ``--factored off
--conv xla`` runs the plain path, for comparison.

    python benchmarks/inverting_gradients.py [--runs 3] [--steps 1000] [--factored off]
                                             [--conv xla]
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from _env import environment

import leakage_lab as ll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--factored", choices=("auto", "off"), default="auto",
                        help="off: form the whole candidate gradient (the plain path)")
    parser.add_argument("--conv", choices=("im2col", "xla"), default="im2col",
                        help="the 3x3 convolution: one matrix product over patches, or XLA's")
    args = parser.parse_args()

    ds = ll.data.load("tiny-images")
    conv = ll.nn.conv2d_im2col if args.conv == "im2col" else ll.nn.conv2d
    model = ll.models.convnet(num_classes=args.num_classes, input_shape=ds.images.shape[1:],
                              width=64, conv=conv)
    picks = np.linspace(0, len(ds) - 1, args.runs).round().astype(int)
    rows = []
    for seed, index in enumerate(picks):
        truth = ds.images[index : index + 1]
        label = ds.labels[index : index + 1] % args.num_classes
        params = model.init(jax.random.key(1000 + seed))
        grads = ll.fl.gradient(model, params, truth, label)
        res = ll.attacks.reconstruct(model, params, grads, labels=label, steps=args.steps,
                                     key=jax.random.key(seed),
                                     factored=None if args.factored == "auto" else False)
        rows.append({
            "image": int(index), "seed": seed,
            "psnr": round(float(ll.metrics.psnr(res.images[0], truth[0])), 2),
            "seconds": round(res.seconds, 3), "compile_seconds": round(res.compile_seconds, 3),
            "best_loss": float(res.best_loss), "steps": res.steps,
        })
        print(json.dumps(rows[-1]), flush=True, file=sys.stderr)
    secs = np.array([r["seconds"] for r in rows])
    psnrs = np.array([r["psnr"] for r in rows])
    print(json.dumps({
        "benchmark": "inverting_gradients",
        "model": model.name,
        "runs": len(rows),
        "steps": args.steps,
        "factored": args.factored,
        "conv": args.conv,
        "median_seconds": float(np.median(secs)),
        "median_seconds_per_1000_steps": float(np.median(secs) * 1000 / args.steps),
        "compile_seconds": rows[0]["compile_seconds"],
        "median_psnr": float(np.median(psnrs)),
        "min_psnr": float(psnrs.min()),
        "reference": "python benchmarks/pytorch_reference.py (same recipe, PyTorch)",
        **environment(),
        "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    jnp.zeros(1).block_until_ready()
    main()
