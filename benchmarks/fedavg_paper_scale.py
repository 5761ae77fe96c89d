"""The FedAvg attack at paper scale on the white-background stand-in, both presets.

Dimitrov et al. (TMLR 2022) report Rec% (PSNR > 20 dB) and mean PSNR on FEMNIST at E = 10,
m = 5, N = 50 (Table 1). This runs the same measurement on ``ll.data.load("femnist-like")``
(the bundled digits shrunk, centred and inverted: white background, FEMNIST's ink density;
see ``leakage_lab/data/standin.py``), for the five methods of the paper's Table 1 under the
library's two presets (``preset="paper"`` and ``preset="released-code"``), beside the
three update-free guesses (``ll.metrics.baseline_scores``: all-background, pixel mean,
label mean, from the public half of the set) and each method's gain over the label-mean
guess.

The network normalises its input itself (``convnet(..., normalization=public)``: the
public half's per-channel mean and std, as the released code does for FEMNIST), the
clients feed it pixels, and the attack is called without ``normalization=``: the default
attack takes the normalisation from the network. Clients hold 50 images drawn from the
odd-numbered images of the set; the public data (guesses, normalisation) is the
even-numbered half. The network is the library's default ``convnet`` at initialisation
(one fixed key for every client, as in the released code), client learning rate 0.004,
known label counts.

``--before`` also runs the library as it was before the normalised working space (the
same network without the normalisation, fed pixels; attack in pixels from U(0, 1)) with
the default preset, method "Ours".
``--devices`` measures clients per second of ``independent=True`` on 1, 2 and 4 forced CPU
devices (``XLA_FLAGS=--xla_force_host_platform_device_count``), each in a subprocess.

The last line printed is the JSON; ``--out`` also writes it (with the command used) to
``benchmarks/results/fedavg_paper_scale.json``.

    python benchmarks/fedavg_paper_scale.py --epochs 1 --clients 10 --before
    python benchmarks/fedavg_paper_scale.py --devices
    python benchmarks/fedavg_paper_scale.py --ablation --clients 4 --out

``--ablation`` separates what makes the two presets differ at E = 1 (``ABLATION``): the
"paper" preset with one released-code setting swapped in at a time, and the
"released-code" preset with the paper's distance or iterate swapped back; it writes
``benchmarks/results/fedavg_paper_scale_ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "fedavg_paper_scale.json"
ABLATION_RESULTS = HERE / "results" / "fedavg_paper_scale_ablation.json"
LR, N, M = 0.004, 50, 5
METHODS = {   # name in the paper's Table 1 -> (fedavg method, invariant_weight or None)
    "Ours (prior)": ("per_batch", None),
    "Ours (no prior)": ("per_batch", 0.0),
    "Shared": ("shared", None),
    "FedSGD-Epoch": ("fedsgd_epoch", None),
    "FedSGD": ("fedsgd", None),
}
PAPER_TABLE1 = {  # FEMNIST, E = 10, m = 5, N = 50, known labels: Rec %, PSNR dB
    "Ours (prior)": (65.5, 21.5), "Ours (no prior)": (50.6, 20.3), "Shared": (59.9, 20.3),
    "FedSGD-Epoch": (56.0, 19.6), "FedSGD": (8.3, 16.7),
}
GUESS_KEYS = {"blank": "blank", "pixel mean": "pixel_mean", "label mean": "label_mean"}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def setup(classes: int):
    import leakage_lab as ll

    ds = ll.data.load("femnist-like" if classes == 10 else "femnist-like-62")
    public = ds.subset(np.arange(0, len(ds), 2))
    private = ds.subset(np.arange(1, len(ds), 2))
    return ll, ds, public, private


def clients_data(private, count: int, first: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for c in range(first + count):
        idx = rng.choice(len(private), N, replace=False)
        if c >= first:
            out.append((private.images[idx], private.labels[idx]))
    return out


def summarise(psnrs: list[np.ndarray], seconds: list[float] | None = None) -> dict:
    p = np.concatenate(psnrs)
    out = {"mean_psnr": round(float(p.mean()), 2),
           "rec_pct": round(100 * float(np.mean(p > 20)), 1)}
    if seconds:
        out["seconds_per_client"] = round(float(np.mean(seconds)), 1)
    return out


def prepare(epochs: int, clients: int, classes: int, first: int = 0):
    """The network (normalising its input), its weights, clients first.. (images, labels),
    their label counts, the update-free guesses' per-image PSNRs, and ``updates(net)``:
    the clients' weights after E epochs of ``net`` (they feed it pixels)."""
    import jax

    ll, ds, public, private = setup(classes)
    model = ll.models.convnet(ds.num_classes, (28, 28, 1), conv=ll.nn.conv2d_im2col,
                              normalization=public)
    params = model.init(jax.random.key(0))
    data = clients_data(private, clients, first)
    counts = np.stack([np.bincount(y, minlength=ds.num_classes) for _, y in data])
    guesses: dict = {k: [] for k in GUESS_KEYS.values()}
    for x, y in data:
        table = ll.metrics.baseline_scores(x, y, public.images, public.labels)
        for name, key in GUESS_KEYS.items():
            guesses[key].append(table[name].psnrs.tolist())

    def updates(net):
        return [ll.fl.client_update(net, params, x, y, lr=LR, epochs=epochs, batch_size=M,
                                    key=jax.random.key(1000 + c))
                for c, (x, y) in enumerate(data, start=first)]

    return ll, ds, model, params, data, counts, guesses, updates


def run_table(epochs: int, presets: list[str], methods: list[str], clients: int,
              steps_scale: float, classes: int, first: int = 0, before: bool = False) -> dict:
    """Raw per-image PSNRs of every (preset, method) and guess, for clients first.. ."""
    import jax

    from leakage_lab import fedavg as F

    ll, ds, model, params, data, counts, guesses, updates = prepare(epochs, clients,
                                                                     classes, first)
    # The library before the normalised working space: the same weights, no normalisation.
    plain = ll.models.convnet(ds.num_classes, (28, 28, 1), conv=ll.nn.conv2d_im2col)
    batches = -(-N // M)
    raw: dict = {"guesses": guesses, "presets": {}, "same_as": {}}
    xs = [x for x, _ in data]
    thetas = updates(model)
    runs = [(preset, name) for preset in presets for name in methods]
    if before:
        runs.append(("before", "Ours (prior)"))
    done: dict = {}
    for preset, name in runs:
        method, weight = METHODS[name]
        layout = getattr(F, method)(epochs, batches)
        base = "paper" if preset == "before" else preset
        w = F.PRESETS[base]["invariant_weight"] if weight is None else weight
        # Methods whose layout (and prior, where it acts) coincide are one computation:
        # at E = 1, "Ours", "Ours (no prior)" and "Shared" are the same attack.
        ident = (preset, layout, w if layout.copies > 1 and layout.prior else None)
        if ident in done:
            raw["same_as"][f"{preset}/{name}"] = done[ident][0]
            raw["presets"].setdefault(preset, {})[name] = done[ident][1]
            continue
        kw = {} if weight is None else {"invariant_weight": weight}
        steps = max(1, int(round(F.PRESETS[base]["steps"] * steps_scale)))
        # All clients at once (independent=True): one compilation; on a CPU the clients
        # run one after the other inside it. Same θs for all (one init, as the released
        # code); the lowest-loss step ("paper") is chosen on the sum of their losses.
        if preset == "before":   # the library before: no normalisation, attack in pixels
            res = ll.attacks.fedavg(plain, params, updates(plain), label_counts=counts,
                                    lr=LR, epochs=epochs, batch_size=M, steps=steps,
                                    key=jax.random.key(7000 + first), independent=True,
                                    method=getattr(F, method), **kw)
        else:
            res = ll.attacks.fedavg(model, params, thetas, label_counts=counts, lr=LR,
                                    epochs=epochs, batch_size=M, steps=steps,
                                    key=jax.random.key(7000 + first), preset=preset,
                                    independent=True, method=getattr(F, method), **kw)
        cell = [[], []]
        for c, x in enumerate(xs):
            score = ll.metrics.score_batch(res.images[c * N:(c + 1) * N], x)
            cell[0].append(score.psnr.tolist())
            cell[1].append(res.seconds / len(xs))
        raw["presets"].setdefault(preset, {})[name] = cell
        done[ident] = (f"{preset}/{name}", cell)
        p = np.concatenate(cell[0])
        log(f"  E={epochs} clients {first}-{first + len(xs) - 1} {preset} {name}: "
            f"{p.mean():.1f} dB, Rec {100 * np.mean(p > 20):.0f}% ({res.seconds:.0f} s + "
            f"{res.compile_seconds:.0f} s compile)")
    steps = {p: max(1, int(round(F.PRESETS["paper" if p == "before" else p]["steps"]
                                 * steps_scale))) for p in raw["presets"]}
    return {"E": epochs, "m": M, "N": N, "clients": list(range(first, first + clients)),
            "steps": steps, "raw": raw}


def summary(parts: list[dict]) -> dict:
    """One table from raw parts of the same E: parts over other clients are concatenated,
    parts over the same clients (other presets or methods) merged."""
    first = parts[0]
    seen: dict[tuple, dict] = {}
    for p in parts:
        seen.setdefault(tuple(p["clients"]), p)
    clients = [c for key in seen for c in key]
    g = {k: summarise([np.asarray(v) for p in seen.values() for v in p["raw"]["guesses"][k]])
         for k in GUESS_KEYS.values()}
    out = {"E": first["E"], "m": M, "N": N, "clients": len(clients), "client_ids": clients,
           "guesses": g, "presets": {}}
    cells: dict[str, dict[str, list]] = {}
    steps: dict[str, int] = {}
    same_as: dict[str, str] = {}
    for p in parts:
        same_as.update(p["raw"]["same_as"])
        for preset, per in p["raw"]["presets"].items():
            steps[preset] = p["steps"][preset]
            for name, cell in per.items():
                cells.setdefault(preset, {}).setdefault(name, []).append((p["clients"], cell))
    for preset, per in cells.items():
        block = {"steps": steps[preset], "methods": {}}
        for name, got in per.items():
            if sorted(c for ids, _ in got for c in ids) != sorted(clients):
                continue      # not run on every client
            psnrs = [np.asarray(v) for _, cell in got for v in cell[0]]
            secs = [v for _, cell in got for v in cell[1]]
            s = summarise(psnrs, secs)
            s["gain_over_label_mean_db"] = round(s["mean_psnr"] - g["label_mean"]["mean_psnr"],
                                                 2)
            if f"{preset}/{name}" in same_as:
                s["same_computation_as"] = same_as[f"{preset}/{name}"]
            block["methods"][name] = s
        out["presets"][preset] = block
    return out


#: ``--ablation``: which of the released code's settings makes its preset score higher at
#: E = 1 (where "Ours", "Ours (no prior)" and "Shared" coincide and λ_inv does not act).
#: Each row is a preset with some of its settings replaced (``PRESETS`` keys).
ABLATION = {
    "paper": ("paper", {}),
    "paper, layer-weighted L2 distance": ("paper", {"distance": "layer-l2"}),
    "paper, ramp 1 -> 2": ("paper", {"ramp": 2.0}),
    "paper, L2 and ramp": ("paper", {"distance": "layer-l2", "ramp": 2.0}),
    "paper, smooth decay": ("paper", {"optimizer": ("smooth", 0.4, 0.995, 10)}),
    "paper, last iterate": ("paper", {"keep": "last"}),
    "paper, 400 steps": ("paper", {"steps": 400}),
    "released-code": ("released-code", {}),
    "released-code, cosine distance": ("released-code", {"distance": "cosine"}),
    "released-code, lowest-loss iterate": ("released-code", {"keep": "best"}),
}


def ablation(clients: int, first: int = 0) -> dict:
    """Mean PSNR and Rec% of "Ours (prior)" at E = 1 under every row of ``ABLATION``, on
    the clients first.., beside the guesses. A row runs as a preset registered for the
    run under a temporary name (the library's presets are not changed)."""
    import jax

    from leakage_lab import fedavg as F

    ll, ds, model, params, data, counts, guesses, updates = prepare(1, clients, 10, first)
    thetas = updates(model)
    out = {"E": 1, "method": "Ours (prior)", "clients": list(range(first, first + clients)),
           "guesses": {k: summarise([np.asarray(v) for v in vs]) for k, vs in guesses.items()},
           "rows": {}}
    for name, (base, changes) in ABLATION.items():
        F.PRESETS["_ablation"] = {**F.PRESETS[base], **changes}
        try:
            res = ll.attacks.fedavg(model, params, thetas, label_counts=counts, lr=LR,
                                    epochs=1, batch_size=M, key=jax.random.key(7000 + first),
                                    preset="_ablation", independent=True)
        finally:
            del F.PRESETS["_ablation"]
        psnrs = [ll.metrics.score_batch(res.images[c * N:(c + 1) * N], x).psnr
                 for c, (x, _) in enumerate(data)]
        row = {"base": base, "changes": changes, **summarise(psnrs)}
        out["rows"][name] = row
        log(f"  ablation {name}: {row['mean_psnr']:.2f} dB, Rec {row['rec_pct']:.1f}% "
            f"({res.seconds:.0f} s)")
    for row in out["rows"].values():
        row["vs_base_db"] = round(row["mean_psnr"] - out["rows"][row["base"]]["mean_psnr"], 2)
    return out


def devices_worker(devices: int, clients: int, steps: int) -> dict:
    """Clients per second of independent=True on this process's forced CPU devices."""
    import jax

    ll, ds, public, private = setup(10)
    model = ll.models.convnet(10, (28, 28, 1), normalization=public)
    params = model.init(jax.random.key(0))
    thetas, counts = [], []
    for c, (x, y) in enumerate(clients_data(private, clients)):
        thetas.append(ll.fl.client_update(model, params, x, y, lr=LR, epochs=1,
                                          batch_size=M, key=jax.random.key(c)))
        counts.append(np.bincount(y, minlength=10))
    kw = dict(label_counts=np.stack(counts), lr=LR, epochs=1, batch_size=M, steps=steps,
              independent=True, devices=devices)
    ll.attacks.fedavg(model, params, thetas, key=jax.random.key(1), **kw)   # compile
    res = ll.attacks.fedavg(model, params, thetas, key=jax.random.key(2), **kw)
    return {"devices": devices, "clients": clients, "steps": steps,
            "seconds": round(res.seconds, 2), "clients_per_second": round(clients / res.seconds, 3)}


def devices_table(clients: int, steps: int) -> list[dict]:
    out = []
    for d in (1, 2, 4):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}",
               "JAX_PLATFORMS": "cpu"}
        cmd = [sys.executable, __file__, "--devices-worker", str(d), "--clients", str(clients),
               "--device-steps", str(steps)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        log(f"  {d} device(s): {out[-1]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="1,10", help="comma list of E")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--first-client", type=int, default=0)
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="attack steps = preset steps x this (1: the presets' own)")
    parser.add_argument("--presets", default="paper,released-code")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--classes", type=int, choices=(10, 62), default=10)
    parser.add_argument("--before", action="store_true",
                        help="also the library before normalisation (pixels, default preset)")
    parser.add_argument("--devices", action="store_true", help="clients/s on 1, 2, 4 devices")
    parser.add_argument("--device-steps", type=int, default=20)
    parser.add_argument("--devices-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--ablation", action="store_true",
                        help="only the ABLATION rows on --clients clients (--out: "
                             f"{ABLATION_RESULTS.name})")
    parser.add_argument("--part", default=None,
                        help="write the raw per-image PSNRs of this run to PART (JSON)")
    parser.add_argument("--combine", nargs="+", default=None, metavar="PART",
                        help="summarise raw parts (runs split over clients) into one JSON")
    parser.add_argument("--note", default="", help="what was reduced, recorded in the JSON")
    parser.add_argument("--out", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    if args.devices_worker is not None:
        print(json.dumps(devices_worker(args.devices_worker, args.clients, args.device_steps)))
        return
    sys.path.insert(0, str(HERE))
    from _env import environment

    start = time.perf_counter()
    out = {"command": "python benchmarks/fedavg_paper_scale.py " + " ".join(sys.argv[1:]),
           "environment": environment(),
           "setting": {"data": "femnist-like" if args.classes == 10 else "femnist-like-62",
                       "N": N, "m": M, "client_lr": LR, "label_counts": "known",
                       "network": "ll.models.convnet(conv=nn.conv2d_im2col, normalization="
                                  "public) at init, one key for all clients",
                       "client_input": "pixels; the network normalises them with the public "
                                       "half's ds.normalization; the attack takes it from the "
                                       "network (no normalization=)",
                       "guesses": "ll.metrics.baseline_scores, public = even-numbered images",
                       "rec_threshold_db": 20},
           "note": args.note,
           "paper_table1_femnist_E10": {k: {"rec_pct": v[0], "mean_psnr": v[1]}
                                        for k, v in PAPER_TABLE1.items()}}
    if args.ablation:
        out.update(ablation(args.clients, args.first_client))
        out["total_seconds"] = round(time.perf_counter() - start, 1)
        if args.out:
            ABLATION_RESULTS.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out))
        return
    presets = [p for p in args.presets.split(",") if p]
    methods = [m for m in args.methods.split(",") if m]
    parts = []
    if args.combine:
        parts = [part for f in args.combine for part in json.loads(Path(f).read_text())["parts"]]
        out["parts_commands"] = sorted({json.loads(Path(f).read_text())["command"]
                                        for f in args.combine})
    elif not args.skip_table:
        for e in (int(v) for v in args.epochs.split(",") if v):
            parts.append(run_table(e, presets, methods, args.clients, args.steps_scale,
                                   args.classes, args.first_client, args.before and e == 1))
        if args.part:
            Path(args.part).write_text(json.dumps({"command": out["command"], "parts": parts}))
    if parts:
        by_e: dict[int, list] = {}
        for part in parts:
            by_e.setdefault(part["E"], []).append(part)
        out["tables"] = {f"E={e}": summary(ps) for e, ps in sorted(by_e.items())}
    if args.devices:
        out["clients_per_second"] = devices_table(8, args.device_steps)
    out["total_seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
