"""Training throughput of the VQ-VAE: frames per second of forward + backward + AdamW step.

Random sparse frames (about 3% of cells on, onsets a subset of sounding cells) stand in for the
corpus: the cost of a step does not depend on what the frames hold. Each step is timed alone;
`samples_per_s` is the batch size over the median step time, robust to the other jobs on a
shared machine, `mean_samples_per_s` the same over the mean. Peak RSS is `ru_maxrss` of this
process, so it includes the interpreter and torch. The load average is reported alongside
because these machines are shared: compare runs made side by side.

    python benchmarks/vae_training.py [--batch-size 256 512] [--steps 20] [--warmup 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ludovico_vae.model import VQVAE, VQVAEConfig  # noqa: E402


def random_frames(batch_size: int, cfg: VQVAEConfig, density: float = 0.03) -> torch.Tensor:
    """(B, C, n_keys, steps) {0, 1} frames; channel 0 (onsets) lies inside the last channel."""
    sounding = (torch.rand(batch_size, 1, cfg.n_keys, cfg.steps) < density).float()
    onsets = sounding * (torch.rand(sounding.shape) < 0.3)
    return torch.cat([onsets] * (cfg.channels - 1) + [sounding], dim=1)


def bench_vae_training(batch_size: int = 256, steps: int = 20, warmup: int = 3,
                       config_overrides: dict | None = None) -> dict:
    """Train on random frames for `warmup` untimed then `steps` timed steps; returns the figures."""
    torch.manual_seed(0)
    cfg = replace(VQVAEConfig(), **(config_overrides or {}))
    model = VQVAE(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    batches = [random_frames(batch_size, cfg) for _ in range(4)]
    times = []
    for i in range(warmup + steps):
        frames = batches[i % len(batches)]
        start = time.perf_counter()
        out = model(frames)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    timed = times[warmup:]
    return {
        "batch_size": batch_size,
        "steps": steps,
        "samples_per_s": batch_size / statistics.median(timed),
        "mean_samples_per_s": batch_size * len(timed) / sum(timed),
        "median_step_ms": 1000 * statistics.median(timed),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_params": model.num_params(),
        "weights_mb": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "final_loss": out["loss"].item(),
        "config": cfg.to_dict(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    results = [bench_vae_training(b, args.steps, args.warmup) for b in args.batch_size]
    print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
