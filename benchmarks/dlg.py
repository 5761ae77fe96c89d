"""DLG on tiny-images: success rate, seconds per attack and compile time, as JSON.

Each (image, seed) pair draws a fresh sigmoid LeNet (weights from the seed), computes
the single-image gradient and runs ``ll.attacks.dlg`` from a random start. Success is
PSNR >= 30 dB. Seconds exclude compilation, which is reported on its own (the first
attack compiles; the rest reuse the code).

    python benchmarks/dlg.py [--pairs 24] [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from _env import environment

import leakage_lab as ll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--tol", type=float, default=None, help="default: dlg's own")
    args = parser.parse_args()

    ds = ll.data.load("tiny-images")
    model = ll.models.lenet(num_classes=ds.num_classes, input_shape=ds.images.shape[1:])
    picks = np.linspace(0, len(ds) - 1, args.pairs).round().astype(int)
    rows = []
    compile_seconds = None
    extra = {} if args.tol is None else {"tol": args.tol}
    for seed, index in enumerate(picks):
        truth = ds.images[index]
        params = model.init(jax.random.key(1000 + seed))
        grads = ll.fl.gradient(model, params, truth[None], ds.labels[index : index + 1])
        start = time.perf_counter()
        res = ll.attacks.dlg(model, params, grads, steps=args.steps, key=jax.random.key(seed),
                             **extra)
        wall = time.perf_counter() - start
        if compile_seconds is None:
            compile_seconds = res.compile_seconds
        value = ll.metrics.psnr(res.images[0], truth)
        rows.append({
            "image": int(index), "seed": seed, "psnr": round(float(value), 2),
            "seconds": round(res.seconds, 3), "wall_seconds": round(wall, 3),
            "steps": res.steps, "status": res.status,
            "label_ok": bool(int(res.labels[0]) == ds.labels[index]),
        })
        print(json.dumps(rows[-1]), flush=True, file=sys.stderr)
    psnrs = np.array([r["psnr"] for r in rows])
    secs = np.array([r["seconds"] for r in rows])
    print(json.dumps({
        "benchmark": "dlg",
        "pairs": len(rows),
        "success_rate": float(np.mean(psnrs >= 30.0)),
        "median_seconds": float(np.median(secs)),
        "median_seconds_success": float(np.median(secs[psnrs >= 30])) if (psnrs >= 30).any()
        else None,
        "compile_seconds": round(float(compile_seconds), 3),
        "median_psnr": float(np.median(psnrs)),
        "min_psnr": float(psnrs.min()),
        "label_accuracy": float(np.mean([r["label_ok"] for r in rows])),
        "median_steps": float(np.median([r["steps"] for r in rows])),
        **environment(),
        "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    jnp.zeros(1).block_until_ready()
    main()
