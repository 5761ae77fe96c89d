"""The Inverting Gradients recipe of benchmarks/inverting_gradients.py, written in PyTorch.

A reference point measured on the same machine: the same network (Dimitrov et al.'s
CIFAR-100 convnet, width 64, at PyTorch's default initialisation), the same images
from ``leakage_lab/data/files/tiny-images.npz``, cosine distance + total variation 1e-4,
Adam on the gradient's sign (rate 0.1, x0.1 at 3/8, 5/8, 7/8 of the steps), clamping to [0, 1].

PyTorch is not a dependency of leakage-lab; run this in an environment that has it:

    pip install torch numpy && python benchmarks/pytorch_reference.py [--runs 3]
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
from torch import nn

DATA = Path(__file__).resolve().parent.parent / "leakage_lab" / "data" / "files" / "tiny-images.npz"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    with np.load(DATA, allow_pickle=False) as z:
        images = z["images"].astype(np.float32) / 255.0
        labels = z["labels"].astype(np.int64)
    picks = np.linspace(0, len(images) - 1, args.runs).round().astype(int)
    rows = []
    for seed, index in enumerate(picks):
        torch.manual_seed(1000 + seed)
        model = convnet(100)
        truth = torch.from_numpy(images[index : index + 1]).permute(0, 3, 1, 2).contiguous()
        label = torch.from_numpy(labels[index : index + 1] % 100)
        seconds, psnr = attack(model, truth, label, args.steps, seed)
        rows.append({"image": int(index), "seconds": round(seconds, 3), "psnr": round(psnr, 2)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    secs = np.array([r["seconds"] for r in rows])
    print(json.dumps({
        "benchmark": "inverting_gradients_pytorch_reference",
        "runs": len(rows), "steps": args.steps,
        "median_seconds_per_1000_steps": float(np.median(secs) * 1000 / args.steps),
        "median_psnr": float(np.median([r["psnr"] for r in rows])),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
