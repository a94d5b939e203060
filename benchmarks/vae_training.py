"""Training throughput of the VQ-VAE: frames per second of forward + backward + AdamW step.

Random sparse frames (about 3% of cells on, onsets a subset of sounding cells) stand in for the
corpus; the cost of a step does not depend on the content. Peak RSS is the process maximum from
`resource.getrusage`, so it includes the Python interpreter and torch itself.

    python benchmarks/vae_training.py [batch_size] [steps]
"""
from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ludovico_vae.model import VQVAE, VQVAEConfig  # noqa: E402


def random_frames(batch_size: int, cfg: VQVAEConfig, density: float = 0.03, generator=None) -> torch.Tensor:
    """(B, C, n_keys, steps) {0, 1} frames; channel 0 is a subset of the last channel."""
    shape = (batch_size, cfg.channels, cfg.n_keys, cfg.steps)
    sounding = (torch.rand(shape[:1] + shape[2:], generator=generator) < density).float()
    onsets = sounding * (torch.rand(sounding.shape, generator=generator) < 0.3).float()
    frames = sounding.unsqueeze(1).expand(shape).clone()
    frames[:, 0] = onsets if cfg.channels > 1 else sounding
    return frames


def bench_vae_training(batch_size: int = 256, steps: int = 20, warmup: int = 3,
                       config_overrides: dict | None = None) -> dict:
    """Train on random frames for warmup + steps steps; time the last `steps` only."""
    torch.manual_seed(0)
    cfg = replace(VQVAEConfig(), **(config_overrides or {}))
    model = VQVAE(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    batches = [random_frames(batch_size, cfg) for _ in range(4)]
    times = []
    for i in range(warmup + steps):
        frames = batches[i % len(batches)]
        t0 = time.perf_counter()
        out = model(frames)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    timed = times[warmup:]
    n_params = model.num_params()
    return {
        "batch_size": batch_size,
        "steps": steps,
        "samples_per_s": batch_size * len(timed) / sum(timed),
        "best_step_samples_per_s": batch_size / min(timed),
        "ms_per_step": 1000 * sum(timed) / len(timed),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_params": n_params,
        "weights_mb": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20,
        "torch_threads": torch.get_num_threads(),
        "final_loss": float(out["loss"]),
        "config": cfg.to_dict(),
    }


if __name__ == "__main__":
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    print(json.dumps(bench_vae_training(batch_size=batch, steps=n_steps), indent=2))
