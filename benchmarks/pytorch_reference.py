"""The Inverting Gradients recipe of benchmarks/inverting_gradients.py, written in PyTorch.

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


def load_tiny_images() -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 32, 32, 3]`` float32 in [0, 1] and int labels, read without leakage-lab."""
    for path in DATA_CANDIDATES:
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                return z["images"].astype(np.float32) / 255.0, z["labels"].astype(np.int64)
    raise FileNotFoundError(f"tiny-images.npz not found in {[str(p) for p in DATA_CANDIDATES]}")


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



def main() -> None:
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
