"""PyTorch references: the Inverting Gradients recipe, and one step of the FedAvg attack.

``python benchmarks/pytorch_reference.py`` (the default, ``inverting`` part) runs the
Inverting Gradients recipe of benchmarks/inverting_gradients.py, written in PyTorch.
``python benchmarks/pytorch_reference.py fedavg`` times one step of the FedAvg attack
(Dimitrov et al., TMLR 2022) in PyTorch: see :func:`fedavg_step_seconds` and
``benchmarks/fedavg.py --setting speed``, which runs it beside the library's step.

The Inverting Gradients part:

A reference point measured on the same machine: the same network (Dimitrov et al.'s
CIFAR-100 convnet, width 64, at PyTorch's default initialisation), the same images
(the bundled tiny-images), cosine distance + total variation 1e-4, Adam on the
gradient's sign (rate 0.1, x0.1 at 3/8, 5/8, 7/8 of the steps, MultiStepLR), clamping
to [0, 1] after every step, a start drawn uniformly from [0, 1] (``torch.rand_like``),
and the *last* iterate returned.

Runs are numbered as in benchmarks/inverting_gradients.py: image ``i`` of ``--images``
(spread evenly over the data set) and seed ``s`` of ``--seeds`` make run
``r = i * seeds + s``; the network's weights come from ``torch.manual_seed(1000 + r)``,
the start from ``torch.manual_seed(r)``. Success is PSNR >= 30 dB.

PyTorch is not a dependency of leakage-lab; run this in an environment that has it:

    pip install torch numpy && python benchmarks/pytorch_reference.py [--images 5]
        [--seeds 3] [--steps 1000] [--threads N]
    python benchmarks/pytorch_reference.py fedavg [--epochs 10] [--batch-size 5]
        [--num-samples 50] [--steps 6] [--threads N]

The last line of the output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _scores import THRESHOLD, summary
from torch import nn

_ROOT = Path(__file__).resolve().parent.parent
# The bundled file has lived in data/ and in leakage_lab/data/files/.
DATA_CANDIDATES = (_ROOT / "leakage_lab" / "data" / "files" / "tiny-images.npz",
                   _ROOT / "data" / "tiny-images.npz")


def _load_npz(candidates) -> tuple[np.ndarray, np.ndarray]:
    """The first existing file's images (float32 in [0, 1]) and int labels, without leakage-lab."""
    for path in candidates:
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                return z["images"].astype(np.float32) / 255.0, z["labels"].astype(np.int64)
    raise FileNotFoundError(f"{candidates[0].name} not found in {[str(p) for p in candidates]}")


def load_tiny_images() -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 32, 32, 3]`` float32 in [0, 1] and int labels, read without leakage-lab."""
    return _load_npz(DATA_CANDIDATES)


def picks(count: int, images: int) -> np.ndarray:
    """The indices of ``images`` photos spread evenly over a data set of ``count``."""
    return np.linspace(0, count - 1, images).round().astype(int)


def convnet(num_classes: int, width: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(width, 2 * width, 1, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 81, 100 * width // 32), nn.ReLU(),
        nn.Linear(100 * width // 32, num_classes),
    )


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, :, 1:] - x[:, :, :-1]).abs().mean()
            + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean())


def attack(model, truth, label, steps, seed):
    """One run of the recipe; returns (seconds, PSNR of the last iterate)."""
    params = list(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    observed = [g.detach() for g in torch.autograd.grad(loss_fn(model(truth), label), params)]
    observed_norm = torch.sqrt(sum((g * g).sum() for g in observed))
    torch.manual_seed(seed)
    x = torch.rand_like(truth, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    milestones = [int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        candidate = torch.autograd.grad(loss_fn(model(x), label), params, create_graph=True)
        dot = sum((c * g).sum() for c, g in zip(candidate, observed, strict=True))
        norm = torch.sqrt(sum((c * c).sum() for c in candidate))
        objective = 1 - dot / (norm * observed_norm) + 1e-4 * total_variation(x)
        objective.backward()
        x.grad.sign_()
        opt.step()
        schedule.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    seconds = time.perf_counter() - start
    mse = float(((x.detach() - truth) ** 2).mean())
    return seconds, 10 * np.log10(1 / mse)


def run(images: np.ndarray, labels: np.ndarray, *, n_images: int = 5, seeds: int = 3,
        steps: int = 1000, num_classes: int = 100, log=None) -> list[dict]:
    """The recipe over ``n_images`` x ``seeds`` runs; one row per run.

    ``images`` is ``[N, H, W, C]`` in [0, 1] (channels last, as leakage-lab loads them).
    """
    rows = []
    for i, index in enumerate(picks(len(images), n_images)):
        for s in range(seeds):
            r = i * seeds + s
            torch.manual_seed(1000 + r)
            model = convnet(num_classes)
            truth = torch.from_numpy(images[index : index + 1]).permute(0, 3, 1, 2).contiguous()
            label = torch.from_numpy(np.asarray(labels[index : index + 1], np.int64)
                                     % num_classes)
            seconds, psnr = attack(model, truth, label, steps, r)
            rows.append({"image": int(index), "seed": s, "run": r,
                         "seconds": round(seconds, 3), "psnr": round(float(psnr), 2)})
            if log is not None:
                log(rows[-1])
    return rows


# ------------------------------------------------------------------ the FedAvg attack step

DIGITS = (_ROOT / "leakage_lab" / "data" / "files" / "digits.npz", _ROOT / "data" / "digits.npz")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits ``[N, 28, 28, 1]`` in [0, 1] and their labels, without leakage-lab."""
    return _load_npz(DIGITS)


def fedavg_convnet_params(generator: torch.Generator, width: int = 32, channels: int = 1,
                          size: int = 28, num_classes: int = 10) -> list[torch.Tensor]:
    """The library's default ``models.convnet`` (Dimitrov et al., Table 5, FEMNIST width) as
    a list of tensors: conv 3x3 pad 1, ReLU, avg-pool 2; conv 1x1 pad 1, ReLU, avg-pool 2;
    dense 100, ReLU; dense 10. PyTorch's default initialisation, U(-1/sqrt(fan_in), ..)."""
    side = (size // 2 + 2) // 2
    shapes = [((width, channels, 3, 3), 9 * channels), ((2 * width, width, 1, 1), width),
              ((100 * width // 32, 2 * width * side * side), 2 * width * side * side),
              ((num_classes, 100 * width // 32), 100 * width // 32)]
    params = []
    for shape, fan_in in shapes:
        bound = 1.0 / np.sqrt(fan_in)
        for s in (shape, shape[:1]):
            params.append((torch.rand(s, generator=generator) * 2 - 1) * bound)
    return params


def fedavg_convnet(params, x: torch.Tensor) -> torch.Tensor:
    """The forward pass of :func:`fedavg_convnet_params`' network on NCHW images."""
    w1, b1, w2, b2, w3, b3, w4, b4 = params
    x = torch.nn.functional.avg_pool2d(torch.relu(torch.nn.functional.conv2d(x, w1, b1,
                                                                              padding=1)), 2)
    x = torch.nn.functional.avg_pool2d(torch.relu(torch.nn.functional.conv2d(x, w2, b2,
                                                                              padding=1)), 2)
    x = torch.relu(torch.nn.functional.linear(x.flatten(1), w3, b3))
    return torch.nn.functional.linear(x, w4, b4)


def sim_update(params, images, labels, lr: float) -> list[torch.Tensor]:
    """SimUpdate: the client's local SGD on ``images [E, B, m, C, H, W]`` (one variable per
    epoch and batch, "Ours"), ``labels [B, m]`` the same split in every epoch; each step's
    gradient is taken with ``create_graph=True`` so that the attack can differentiate
    through all ``U = E·B`` steps. Returns the simulated client weights."""
    loss_fn = torch.nn.CrossEntropyLoss()
    theta = [p.detach().requires_grad_(True) for p in params]
    for e in range(images.shape[0]):
        for b in range(images.shape[1]):
            loss = loss_fn(fedavg_convnet(theta, images[e, b]), labels[b])
            grads = torch.autograd.grad(loss, theta, create_graph=True)
            theta = [t - lr * g for t, g in zip(theta, grads, strict=True)]
    return theta


def fedavg_objective(params, observed, images, labels, lr: float, *, invariant_weight=1.0,
                     tv_weight=1e-3, clip_weight=2.0) -> torch.Tensor:
    """The library's default FedAvg loss (``fedavg.fedavg_objective``): cosine between the
    observed and the simulated average update, the epoch prior (mean image, squared),
    total variation and the box penalty."""
    epochs, batches = images.shape[:2]
    steps = epochs * batches
    simulated = [(p - t) / (lr * steps) for p, t in
                 zip(params, sim_update(params, images, labels, lr), strict=True)]
    dot = sum((o * s).sum() for o, s in zip(observed, simulated, strict=True))
    norms = (torch.sqrt(sum((o * o).sum() for o in observed))
             * torch.sqrt(sum((s * s).sum() for s in simulated)))
    value = 1 - dot / (norms + 1e-12)
    means = images.flatten(1, 2).mean(dim=1)                       # [E, C, H, W]
    value = value + invariant_weight * ((means[:, None] - means[None]) ** 2).mean()
    flat = images.flatten(0, 2)
    value = value + tv_weight * ((flat[:, :, 1:] - flat[:, :, :-1]).abs().mean()
                                 + (flat[:, :, :, 1:] - flat[:, :, :, :-1]).abs().mean())
    return value + clip_weight * (torch.relu(flat - 1) ** 2 + torch.relu(-flat) ** 2).mean()


def fedavg_step_seconds(*, epochs: int = 10, batch_size: int = 5, num_samples: int = 50,
                        steps: int = 6, lr: float = 0.004, seed: int = 0) -> dict:
    """Seconds per step of the FedAvg attack in PyTorch, as the library runs it by default.

    A client holding ``num_samples`` bundled digits takes ``epochs`` epochs of batches of
    ``batch_size`` (reshuffled every epoch) from freshly initialised weights; the attack
    optimises ``E·N`` dummy images (one copy per epoch, "Ours") with Adam at rate 0.4,
    differentiating the cosine loss through the simulated client. The first step (which
    also allocates) is timed apart; the others give the median, in wall-clock seconds and
    in CPU seconds of the process (``time.process_time``, all threads: on a machine that
    others load, the CPU time of a one-thread run is the steadier measure).
    """
    if num_samples % batch_size:
        raise ValueError("fedavg_step_seconds: num_samples must be a multiple of batch_size, "
                         f"got N={num_samples}, m={batch_size}.")
    images, labels = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), num_samples, replace=False)
    x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels[idx])
    gen = torch.Generator().manual_seed(seed)
    params = fedavg_convnet_params(gen)
    theta = [p.clone().requires_grad_(True) for p in params]
    batches = -(-num_samples // batch_size)
    for _ in range(epochs):          # the client, Algorithm 1
        order = torch.randperm(num_samples, generator=gen)
        for b in range(batches):
            sel = order[b * batch_size:(b + 1) * batch_size]
            loss = torch.nn.functional.cross_entropy(fedavg_convnet(theta, x[sel]), y[sel])
            grads = torch.autograd.grad(loss, theta)
            theta = [(t - lr * g).detach().requires_grad_(True)
                     for t, g in zip(theta, grads, strict=True)]
    U = epochs * batches
    observed = [((p - t) / (lr * U)).detach() for p, t in zip(params, theta, strict=True)]
    split = y[torch.randperm(num_samples, generator=gen)].reshape(batches, batch_size)
    dummy = torch.rand((epochs, batches, batch_size, *x.shape[1:]), generator=gen)
    dummy.requires_grad_(True)
    opt = torch.optim.Adam([dummy], lr=0.4)
    times, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        opt.zero_grad()
        value = fedavg_objective(params, observed, dummy, split, lr)
        value.backward(inputs=[dummy])
        opt.step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"benchmark": "fedavg_attack_step_pytorch_reference", "epochs": epochs,
            "batch_size": batch_size, "num_samples": num_samples, "local_steps": U,
            "first_step_seconds": round(times[0], 4),
            "seconds_per_step": round(float(np.median(times[1:] or times)), 4),
            "step_seconds": [round(t, 4) for t in times],
            "cpu_seconds_per_step": round(float(np.median(cpu[1:] or cpu)), 4),
            "last_loss": float(value.detach()),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count()}


def main_fedavg(argv) -> None:
    parser = argparse.ArgumentParser(prog="pytorch_reference.py fedavg",
                                     description=fedavg_step_seconds.__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=50)
    parser.add_argument("--steps", type=int, default=6, help="attack steps to time")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's own choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(json.dumps(fedavg_step_seconds(epochs=args.epochs, batch_size=args.batch_size,
                                         num_samples=args.num_samples, steps=args.steps)))


def main() -> None:
    if sys.argv[1:2] == ["fedavg"]:
        main_fedavg(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's own choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    images, labels = load_tiny_images()
    rows = run(images, labels, n_images=args.images, seeds=args.seeds, steps=args.steps,
               log=lambda row: print(json.dumps(row), file=sys.stderr, flush=True))
    print(json.dumps({
        "benchmark": "inverting_gradients_pytorch_reference",
        "steps": args.steps, "threshold_db": THRESHOLD,
        **summary(rows, args.steps),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "rows": rows,
    }))


if __name__ == "__main__":
    main()
