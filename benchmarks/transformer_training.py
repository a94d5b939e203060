"""Training throughput of the GPT: tokens per second of forward + backward + AdamW step, run
through `mingpt.trainer.Trainer`, and the process's peak RSS.

Random tokens stand in for the corpus: the cost of a step does not depend on the content. Each
step is timed alone; tokens/s is batch * block_size over the median step, after `warmup`
untimed steps. CPU time (this process) is reported beside wall time because on a shared machine
wall time also counts the time other processes held the cores. Peak RSS is `ru_maxrss`, so it
includes the interpreter and torch; run from the command line, every configuration gets a fresh
process, so that each peak is its own.

Sizes: the default `GPTConfig`, and minGPT's "gpt-mini" (6 layers, 6 heads, 192 wide, block 192,
vocabulary 16), the size the original implementation trained at 2,400 tokens/s (batch 128,
4.6 GB RSS).

    python benchmarks/transformer_training.py [--batch-size N] [--steps N] [--threads N ...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mingpt.model import GPT, GPTConfig  # noqa: E402
from mingpt.trainer import Trainer, TrainerConfig  # noqa: E402

SIZES = {
    "default": {},
    "gpt-mini": dict(n_layer=6, n_head=6, n_kv_head=None, n_embd=192, block_size=192, vocab_size=16),
}
ORIGINAL = {"size": "gpt-mini", "tokens_per_s": 2400, "batch_size": 128, "peak_rss_mb": 4.6 * 1024}


def bench_transformer_training(config_overrides: dict | None = None, batch_size: int = 128, steps: int = 10,
                               warmup: int = 2) -> dict:
    """Train on random tokens for warmup + steps steps; time the last `steps` one by one."""
    torch.manual_seed(0)
    cfg = replace(GPTConfig(), **(config_overrides or {}))
    model = GPT(cfg)
    trainer = Trainer(model, TrainerConfig(warmup_steps=0), total_steps=warmup + steps, device="cpu")
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.vocab_size, (2, batch_size, cfg.block_size + 1), generator=g)
    extras = None
    if cfg.extra_vocab_sizes:
        extras = torch.stack([torch.randint(0, n, (batch_size, cfg.block_size), generator=g)
                              for n in cfg.extra_vocab_sizes], dim=-1)
    load_before = os.getloadavg()
    walls, cpus = [], []
    for i in range(warmup + steps):
        batch = data[i % 2]
        inputs = (batch[:, :-1], batch[:, 1:]) + (() if extras is None else (extras,))
        t0, c0 = time.perf_counter(), time.process_time()
        result = trainer.train_step(*inputs)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    wall, cpu = statistics.median(walls[warmup:]), statistics.median(cpus[warmup:])
    tokens = batch_size * cfg.block_size
    return {
        "config": cfg.to_dict(), "n_params": model.num_params(), "batch_size": batch_size,
        "tokens_per_step": tokens, "steps": steps, "warmup": warmup, "torch_threads": torch.get_num_threads(),
        "tokens_per_s": tokens / wall, "best_step_tokens_per_s": tokens / min(walls[warmup:]),
        "cpu_tokens_per_s": tokens / cpu, "s_per_step": wall, "step_wall_s": walls[warmup:],
        "final_loss": result["loss"], "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kilobytes on Linux
    }


def _in_fresh_process(name: str, threads: int, batch_size: int, steps: int, warmup: int) -> dict:
    """One size in its own process, so that its peak RSS is its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--threads", str(threads),
               "--batch-size", str(batch_size), "--steps", str(steps), "--warmup", str(warmup)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{name} with {threads} threads failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1], help="0: torch's default")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--child", choices=list(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.threads[0]:
            torch.set_num_threads(args.threads[0])
        print(json.dumps(bench_transformer_training(SIZES[args.child], args.batch_size, args.steps, args.warmup)))
        sys.exit(0)
    result = {"cpu_count": os.cpu_count(), "original": ORIGINAL, "target_tokens_per_s": 2 * ORIGINAL["tokens_per_s"]}
    for name in args.sizes:
        for n in args.threads:
            result[f"{name}_threads_{n or 'default'}"] = _in_fresh_process(name, n, args.batch_size, args.steps,
                                                                           args.warmup)
    print(json.dumps(result, indent=2))
