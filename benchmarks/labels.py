"""Label recovery on digits: Geng et al.'s batch counts and iDLG's sign rule, as JSON.

For an untrained and a trained convnet (Dimitrov et al., TMLR 2022, Table 5 network,
trained here with a few epochs of SGD on 4,000 digits), draws random batches of the
held-out 1,000 digits, computes their FedSGD gradient and estimates the label counts
with ``ll.labels.batch_counts`` from uniform-noise dummy inputs (as Geng et al.) and from
100 "public" training digits. The error of a batch is sum_k |true_k - estimated_k|
(0 is perfect, 2 means one sample counted in the wrong class). iDLG's accuracy is over
single-sample gradients, with the bias rule and with the weight rule.

    python benchmarks/labels.py [--batches 50] [--singles 100] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np
from _env import environment

import leakage_lab as ll
from leakage_lab import labels


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def count_errors(model, params, ds, *, sizes, batches, key, public=None):
    """Count errors per batch size; dummy inputs are uniform noise, or 100 ``public`` images."""
    rows = {}
    for n in sizes:
        errors, exact, raw_abs = [], 0, []
        for b in range(batches):
            k_batch, k_dummy = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, n), b))
            idx = np.asarray(jax.random.choice(k_batch, len(ds), (n,), replace=False))
            grads = ll.fl.gradient(model, params, ds.images[idx], ds.labels[idx])
            dummy = None
            if public is not None:
                pick = np.asarray(jax.random.choice(k_dummy, len(public), (100,), replace=False))
                dummy = public.images[pick]
            res = labels.batch_counts(model, params, grads, num_samples=n, key=k_dummy,
                                      dummy_images=dummy)
            true = np.bincount(ds.labels[idx], minlength=ds.num_classes)
            err = int(np.abs(true - np.asarray(res.counts)).sum())
            errors.append(err)
            exact += err == 0
            raw_abs.append(float(np.abs(true - np.asarray(res.raw)).sum()))
        rows[str(n)] = {
            "mean_count_error": round(float(np.mean(errors)), 3),
            "mean_count_error_per_sample": round(float(np.mean(errors)) / n, 4),
            "exact_share": round(exact / batches, 3),
            "mean_raw_error": round(float(np.mean(raw_abs)), 3),
        }
        log(f"  batch size {n}: {rows[str(n)]}")
    return rows


def idlg_accuracy(model, params, ds, *, singles, key):
    idx = np.asarray(jax.random.choice(key, len(ds), (singles,), replace=False))
    per = ll.fl.per_example_gradients(model, params, ds.images[idx], ds.labels[idx])
    hits = {"bias_rule": 0, "weight_rule": 0}
    for i, y in enumerate(ds.labels[idx]):
        g = jax.tree.map(lambda a, i=i: a[i], per)
        hits["bias_rule"] += int(labels.idlg(model, params, g)[0]) == int(y)
        hits["weight_rule"] += int(labels.idlg(model, params, g, use_bias=False)[0]) == int(y)
    return {k: v / singles for k, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--singles", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    args = parser.parse_args()
    start = time.perf_counter()

    ds = ll.data.load("digits")
    perm = np.asarray(jax.random.permutation(jax.random.key(0), len(ds)))
    train, test = ds.subset(perm[:4000]), ds.subset(perm[4000:])
    model = ll.models.convnet(num_classes=10, input_shape=(28, 28, 1))
    untrained = model.init(jax.random.key(1))

    log(f"training {model.name}: {args.epochs} epochs of SGD on {len(train)} digits ...")
    t = time.perf_counter()
    trained = ll.fl.client_update(model, untrained, train.images, train.labels, lr=0.1,
                                  epochs=args.epochs, batch_size=32, key=jax.random.key(2))
    trained = jax.block_until_ready(trained)
    train_seconds = time.perf_counter() - t
    acc = {
        "untrained": ll.fl.accuracy(model, untrained, test.images, test.labels),
        "trained": ll.fl.accuracy(model, trained, test.images, test.labels),
    }
    log(f"  test accuracy {acc}, {train_seconds:.1f} s")

    networks = {}
    for name, params in (("untrained", untrained), ("trained", trained)):
        log(f"{name} network: label counts ...")
        counts = count_errors(model, params, test, sizes=args.sizes, batches=args.batches,
                              key=jax.random.key(3))
        log(f"{name} network: label counts, dummy inputs = 100 training digits ...")
        public = count_errors(model, params, test, sizes=args.sizes, batches=args.batches,
                              key=jax.random.key(3), public=train)
        log(f"{name} network: iDLG on {args.singles} single-sample gradients ...")
        idlg = idlg_accuracy(model, params, test, singles=args.singles, key=jax.random.key(4))
        log(f"  {idlg}")
        networks[name] = {"test_accuracy": round(acc[name], 4), "batch_counts": counts,
                          "batch_counts_public_dummies": public,
                          "idlg_accuracy": idlg}

    print(json.dumps({
        "benchmark": "labels",
        "model": model.name,
        "data": "digits (batches from 1,000 held-out samples)",
        "training": {"epochs": args.epochs, "lr": 0.1, "batch_size": 32,
                     "samples": len(train), "seconds": round(train_seconds, 1)},
        "batches_per_size": args.batches,
        "count_error": "sum over classes of |true count - estimated count|, mean over batches",
        "dummy_inputs": "batch_counts: 100 uniform images in [0, 1] per batch (Geng et al.); "
                        "batch_counts_public_dummies: 100 random training digits per batch",
        "networks": networks,
        "seconds": round(time.perf_counter() - start, 1),
        **environment(),
    }, indent=2))


if __name__ == "__main__":
    main()
