"""Defenses and their price: test accuracy against leakage, as JSON.

For each defense at two strengths (SignSGD has no knob: one setting), two numbers:

* **utility**: test accuracy of the Dimitrov et al. (TMLR 2022, Table 5) convnet trained
  with ``fl.train`` (FedAvg) on the bundled ``digits``, every client's update passed
  through the defense (DP-SGD: every local step clipped and noised; ε from
  ``ll.privacy.epsilon``, dp-accounting's RDP accountant, at δ = 1e-5);
* **leakage**: the strongest attack we have against that defense on held-out clients
  (not used in training), each sending one FedSGD update (one local step on its batch)
  at the initial weights, where gradients leak most (as Table 6 of Dimitrov et al.
  attacks the first round). The attack is Inverting Gradients (``attacks.reconstruct``,
  labels known, TV prior) with the defense's ``matched_distance`` (``kept_distance`` for
  top-k and pruning, ``sign_distance`` for SignSGD, the defended layer left out for
  Soteria, Balunović et al., ICLR 2022), plain cosine otherwise. Where the matched
  distance differs from plain cosine, the naive cosine attack is reported beside it.
  Reported: mean PSNR and Rec% (share of images with PSNR > 20 dB after matching).

Then secure aggregation (Bonawitz et al., ACM CCS 2017; ``ll.secagg``): the attack on the
securely aggregated update of k held-out clients (one image each) for growing k, and on
one client's masked update as the server receives it, against its plain update.

    python benchmarks/defenses.py [--rounds 30] [--attack-clients 8] [--steps 300]

The default run took 21 minutes on a 2-core CPU shared with other jobs (load 10-20); the
two Soteria rows are a third of it, since every client computes its representation's
Jacobian for each of its 100 images in every round.
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
from leakage_lab import compression, defenses, distances, privacy, secagg, trees


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def defense_table(args) -> list[dict]:
    """Each row: family, strength, and what fl.train / the attacked client get."""

    def soteria(fraction):
        return lambda m, p, x, y: defenses.soteria(m, p, x, fraction=fraction)

    rows = [{"family": "none", "strength": "-"}]
    for s in args.gaussian:
        rows.append({"family": "gaussian noise", "strength": f"sigma={s:g}",
                     "defense": defenses.gaussian(s)})
    for s in args.dp_noise:
        rows.append({"family": "DP-SGD", "strength": f"C={args.dp_clip:g}, sigma={s:g}",
                     "dp": privacy.dp_sgd(args.dp_clip, s)})
    for b in args.bits:
        rows.append({"family": "quantisation", "strength": f"{b} bits",
                     "defense": compression.quantize(b)})
    rows.append({"family": "SignSGD", "strength": "1 bit + scale",
                 "defense": compression.sign()})
    for f in args.top_k:
        rows.append({"family": "top-k", "strength": f"{100 * f:g}% kept",
                     "defense": compression.top_k(f)})
    for p in args.prune:
        rows.append({"family": "random pruning", "strength": f"p={p:g}",
                     "defense": defenses.prune(p)})
    for f in args.soteria:
        rows.append({"family": "Soteria", "strength": f"{100 * f:g}% of features pruned",
                     "defense": soteria(f)})
    return rows


def observe(model, params, images, labels, row, *, lr, key):
    """What the server sees from one FedSGD client (one local step), as a gradient.

    The client sends ``θs + D(θc - θs)``; the attacker reads ``-(sent - θs) / lr``, the
    defended gradient. Returns it and the defense the client used (None for DP / none).
    """
    theta_c = ll.fl.client_update(model, params, images, labels, lr=lr, epochs=1,
                                  batch_size=len(labels), key=key, dp=row.get("dp"))
    update = trees.tree_sub(theta_c, params)
    defense = row.get("defense")
    if defense is not None and not hasattr(defense, "apply"):
        defense = defense(model, params, images, labels)
    if defense is not None:
        update = defense.apply(update, key=jax.random.fold_in(key, 2))
    return trees.tree_scale(update, -1.0 / lr), defense


def attack(model, params, observed, images, labels, distance, steps, key) -> dict:
    res = ll.attacks.reconstruct(model, params, observed, labels=labels, distance=distance,
                                 steps=steps, key=key)
    score = ll.metrics.score_batch(res.images, images)
    return {"psnr": [round(float(v), 2) for v in score.psnr], "mean_psnr": score.mean_psnr,
            "rec": score.rec}


def summarise(per_client: list[dict]) -> dict:
    values = [v for c in per_client for v in c["psnr"]]
    return {"mean_psnr": round(float(np.mean(values)), 2),
            "rec_percent": round(100.0 * float(np.mean(np.asarray(values) > 20.0)), 1),
            "psnr": values}


def tradeoff_part(args, model, params, clients, test, held_out) -> list[dict]:
    table = []
    for row in defense_table(args):
        start = time.perf_counter()
        run = ll.fl.train(model, params, clients, rounds=args.rounds,
                          clients_per_round=args.clients_per_round, lr=args.lr,
                          epochs=args.epochs, batch_size=args.batch_size,
                          key=jax.random.key(5), dp=row.get("dp"), defense=row.get("defense"))
        accuracy = ll.fl.accuracy(model, run.params, test.images, test.labels)
        train_seconds = time.perf_counter() - start
        matched, naive, name = [], [], "cosine"
        for c, (x, y) in enumerate(held_out):
            key = jax.random.key(100 + c)
            observed, used = observe(model, params, x, y, row, lr=args.lr, key=key)
            distance = (used.matched_distance if used is not None
                        and used.matched_distance is not None else distances.cosine)
            name = getattr(distance, "__name__", "distance")
            matched.append(attack(model, params, observed, x, y, distance, args.steps, key))
            if distance is not distances.cosine:
                naive.append(attack(model, params, observed, x, y, distances.cosine,
                                    args.steps, key))
        out = {"defense": row["family"], "strength": row["strength"],
               "accuracy": round(accuracy, 4),
               "epsilon": None if run.epsilon is None else round(run.epsilon, 3),
               "attack_distance": name, "attack": summarise(matched),
               "naive_cosine_attack": summarise(naive) if naive else None,
               "train_seconds": round(train_seconds, 1),
               "seconds": round(time.perf_counter() - start, 1)}
        table.append(out)
        log(f"{row['family']:>15} {row['strength']:>24}: acc {out['accuracy']:.3f} "
            f"eps {out['epsilon']} | {name} {out['attack']['mean_psnr']:.1f} dB "
            f"Rec {out['attack']['rec_percent']:.0f}%"
            + (f" | naive {out['naive_cosine_attack']['mean_psnr']:.1f} dB" if naive else "")
            + f" ({out['seconds']:.0f} s)")
    return table


def secagg_part(args, model, params, pool) -> dict:
    """Leakage from the secure aggregate of k clients (one image each), and of one masked
    update read as if it were an update."""
    rows = []
    for k in args.secagg_k:
        xs, ys = pool.images[:k], pool.labels[:k]
        updates = []
        for c in range(k):
            theta_c = ll.fl.client_update(model, params, xs[c:c + 1], ys[c:c + 1], lr=args.lr,
                                          epochs=1, batch_size=1, key=jax.random.key(c))
            updates.append(trees.tree_sub(theta_c, params))
        if k == 1:
            total = updates[0]      # one client: nothing to aggregate with
        else:
            total = secagg.secure_sum(updates, threshold=k // 2 + 1, scale=2**24, seed=k).total
        observed = trees.tree_scale(total, -1.0 / (args.lr * k))
        start = time.perf_counter()
        result = attack(model, params, observed, xs, ys, distances.cosine, args.secagg_steps,
                        jax.random.key(7))
        rows.append({"k": k, "mean_psnr": round(result["mean_psnr"], 2),
                     "rec_percent": round(100 * result["rec"], 1), "psnr": result["psnr"],
                     "seconds": round(time.perf_counter() - start, 1)})
        log(f"secure aggregate of k={k}: {result['mean_psnr']:.1f} dB, "
            f"Rec {100 * result['rec']:.0f}%")

    # One masked update y_u, decoded as the server would decode an update.
    n = 4
    updates = []
    for c in range(n):
        theta_c = ll.fl.client_update(model, params, pool.images[c:c + 1],
                                      pool.labels[c:c + 1], lr=args.lr, epochs=1,
                                      batch_size=1, key=jax.random.key(c))
        updates.append(trees.tree_sub(theta_c, params))
    encoded = [secagg.encode(u, scale=2**24, max_clients=n) for u in updates]
    state = secagg.setup(n, 3, seed=11)
    masked = secagg.mask(encoded[0][0], 0, state)
    masked_view = secagg.decode(masked, encoded[0][1], num_clients=1)
    x, y = pool.images[:1], pool.labels[:1]
    plain = attack(model, params, trees.tree_scale(updates[0], -1.0 / args.lr), x, y,
                   distances.cosine, args.secagg_steps, jax.random.key(7))
    hidden = attack(model, params, trees.tree_scale(masked_view, -1.0 / args.lr), x, y,
                    distances.cosine, args.secagg_steps, jax.random.key(7))
    flat_u = np.concatenate([np.ravel(v) for v in jax.tree.leaves(updates[0])])
    flat_m = np.concatenate([np.ravel(v) for v in jax.tree.leaves(masked_view)])
    log(f"one update: plain {plain['mean_psnr']:.1f} dB, masked {hidden['mean_psnr']:.1f} dB")
    return {"aggregate": rows, "threshold": "k // 2 + 1", "fixed_point_scale": 2**24,
            "one_masked_update": {
                "plain_psnr": round(plain["mean_psnr"], 2),
                "masked_psnr": round(hidden["mean_psnr"], 2),
                "correlation_masked_vs_plain": round(float(np.corrcoef(flat_u, flat_m)[0, 1]),
                                                     4)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--samples-per-client", type=int, default=100)
    parser.add_argument("--clients-per-round", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--attack-clients", type=int, default=8)
    parser.add_argument("--attack-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--gaussian", type=float, nargs=2, default=[1e-4, 1e-3])
    parser.add_argument("--dp-clip", type=float, default=1.0)
    parser.add_argument("--dp-noise", type=float, nargs=2, default=[0.3, 1.0])
    parser.add_argument("--bits", type=int, nargs=2, default=[8, 4])
    parser.add_argument("--top-k", type=float, nargs=2, default=[0.1, 0.01])
    parser.add_argument("--prune", type=float, nargs=2, default=[0.5, 0.9])
    parser.add_argument("--soteria", type=float, nargs=2, default=[0.5, 0.9])
    parser.add_argument("--secagg-k", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--secagg-steps", type=int, default=400)
    parser.add_argument("--skip-tradeoff", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()

    ds = ll.data.load("digits")
    train, test = ll.data.train_test_split(ds, test_fraction=0.2, key=jax.random.key(0))
    clients = ll.data.split_iid(train, num_clients=args.clients,
                                samples_per_client=args.samples_per_client,
                                key=jax.random.key(2))
    # Held-out clients: images from the test split, never trained on.
    pool = test.subset(np.arange(len(test) - 64, len(test)))
    b = args.attack_batch
    held_out = [(pool.images[c * b:(c + 1) * b], pool.labels[c * b:(c + 1) * b])
                for c in range(args.attack_clients)]
    model = ll.models.convnet(num_classes=10, input_shape=(28, 28, 1), width=args.width)
    params = model.init(jax.random.key(1))

    result = {"benchmark": "defenses", "model": model.name, "dataset": "digits",
              "settings": {k: v for k, v in vars(args).items()}}
    if not args.skip_tradeoff:
        result["tradeoff"] = tradeoff_part(args, model, params, clients, test, held_out)
    result["secure_aggregation"] = secagg_part(args, model, params, pool)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps({**result, **environment()}, indent=1))


if __name__ == "__main__":
    jnp.zeros(1).block_until_ready()
    main()
