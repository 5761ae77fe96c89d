"""The success rate and median PSNR that the Inverting Gradients benchmark and its PyTorch
reference both report (numpy only, so the reference needs no JAX)."""

import numpy as np

THRESHOLD = 30.0   # dB: a reconstruction this good is hard to tell from the original


def summary(rows: list[dict], steps: int) -> dict:
    """Success rate (PSNR >= THRESHOLD), median PSNR and speed of a list of rows."""
    psnrs = np.array([r["psnr"] for r in rows])
    secs = np.array([r["seconds"] for r in rows])
    return {
        "runs": len(rows),
        "successes": int((psnrs >= THRESHOLD).sum()),
        "success_rate": float((psnrs >= THRESHOLD).mean()),
        "median_psnr": float(np.median(psnrs)),
        "min_psnr": float(psnrs.min()),
        "median_seconds_per_1000_steps": float(np.median(secs) * 1000 / steps),
    }
