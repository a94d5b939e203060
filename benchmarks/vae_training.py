"""Training throughput of the VQ-VAE: frames per second of forward + backward + AdamW step.

The model is the bundled `checkpoints/vae.pt`'s config at its training batch size (64), with
random weights. Random sparse frames (about 3% of cells on, onsets a subset of sounding cells)
stand in for the corpus: the cost of a step does not depend on what the frames hold. Each step
is timed alone; `samples_per_s` is the batch size over the median step time, robust to the other
jobs on a shared machine, `mean_samples_per_s` the same over the mean. `bf16_samples_per_s` is
the same under bfloat16 autocast (`train.amp_cpu`); `flops_per_frame` (info, counted by torch's
FlopCounterMode on one frame's step) is what `python -m benchmarks` sets both against.

    python -m benchmarks --only vae_training
    python benchmarks/vae_training.py [--repeats N] [--threads N]   # the same
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.common import bundled  # noqa: E402
from ludovico_vae.model import VQVAE, VQVAEConfig  # noqa: E402

TINY = dict(codebook_size=16, code_dim=8, widths=(8, 8), n_res_blocks=1)


def random_frames(batch_size: int, frame_shape: tuple, density: float = 0.03) -> torch.Tensor:
    """(B, C, keys, steps) {0, 1} frames; channel 0 (onsets) lies inside the last channel."""
    channels, keys, steps = frame_shape
    sounding = (torch.rand(batch_size, 1, keys, steps) < density).float()
    onsets = sounding * (torch.rand(sounding.shape) < 0.3)
    return torch.cat([onsets] * (channels - 1) + [sounding], dim=1)


def bench_vae_training(cfg: VQVAEConfig | None = None, batch_size: int = 256, steps: int = 20,
                       warmup: int = 3, amp_cpu: bool = False) -> dict:
    """Train on random frames for `warmup` untimed then `steps` timed steps; returns the figures.
    amp_cpu: under bfloat16 autocast, as `train.amp_cpu` trains."""
    torch.manual_seed(0)
    cfg = cfg or VQVAEConfig()
    model = VQVAE(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    batches = [random_frames(batch_size, model.frame_shape) for _ in range(4)]

    def step(frames):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp_cpu):
            out = model(frames)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        return out

    with FlopCounterMode(display=False) as counter:  # what one step multiplies, forward and backward
        step(batches[0][:1])
    times = []
    for i in range(warmup + steps):
        frames = batches[i % len(batches)]
        start = time.perf_counter()
        out = step(frames)
        times.append(time.perf_counter() - start)
    timed = times[warmup:]
    return {
        "figures": {"samples_per_s": batch_size / statistics.median(timed),
                    "mean_samples_per_s": batch_size * len(timed) / sum(timed),
                    "median_step_ms": 1000 * statistics.median(timed)},
        "info": {"batch_size": batch_size, "steps": steps, "warmup_steps": warmup, "n_params": model.num_params(),
                 "flops_per_frame": counter.get_total_flops(),
                 "torch_threads": torch.get_num_threads(), "final_loss": out["loss"].item(),
                 "config": cfg.to_dict()},
    }


def measure(tiny: bool = False, threads: int | None = None) -> dict:
    """The bundled VAE at its training batch size; tiny: a small model, batch 4, 2 steps."""
    if tiny:
        return bench_vae_training(replace(VQVAEConfig(), **TINY), batch_size=4, steps=2, warmup=1)
    model_config, batch_size = bundled("vae")
    cfg = VQVAEConfig.from_dict(model_config)
    result = bench_vae_training(cfg, batch_size)
    bf16 = bench_vae_training(cfg, batch_size, steps=10, amp_cpu=True)
    result["figures"]["bf16_samples_per_s"] = bf16["figures"]["samples_per_s"]
    return result


if __name__ == "__main__":
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "vae_training", *sys.argv[1:]]))
