"""Sampling speed of the GPT: tokens per second of `GPT.generate` with the key/value cache.

For each batch size and length, `repeats` timed runs of generate(prompt, length) from a 16-token
random prompt (untrained weights: the cost of a step does not depend on them), after one
untimed run. Reported: medians of wall time and of this process's CPU time, as tokens per
second (batch * length / seconds) and microseconds per step; equal rates at 2,048 and 8,192
tokens mean the cost per token stays flat as a piece grows. CPU time is reported beside wall
time because on a shared machine wall time also counts the time other processes held the
cores. Peak RSS is the process maximum (`ru_maxrss`), interpreter and torch included.

    python benchmarks/sampling.py [--threads N ...] [--repeats N] [--sweep]

`--threads` gives generate's num_threads: 1 is its default, 0 stands for None (torch's own
setting, all cores). `--sweep` adds the trade-off curve: tokens per second against n_layer /
n_embd / n_kv_head, at 2,048 tokens.
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
from mingpt.model import GPT, GPTConfig  # noqa: E402

SWEEP = [  # the trade-off curve: speed against size
    dict(n_layer=2, n_embd=128), dict(n_layer=3, n_embd=128), dict(n_layer=4, n_embd=64),
    dict(n_layer=4, n_embd=96), dict(n_layer=4, n_embd=128), dict(n_layer=4, n_embd=128, n_kv_head=None),
    dict(n_layer=6, n_embd=128), dict(n_layer=4, n_embd=192, n_head=6),
    dict(n_layer=6, n_head=6, n_embd=192, n_kv_head=None),
]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _random_inputs(cfg: GPTConfig, batch: int, prompt_len: int, total: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (batch, prompt_len), generator=g)
    if not cfg.extra_vocab_sizes:
        return prompt, None
    extras = torch.stack([torch.randint(0, n, (batch, total), generator=g) for n in cfg.extra_vocab_sizes], -1)
    return prompt, extras


def bench_sampling(config_overrides: dict | None = None, batch_sizes=(1, 32), lengths=(2048, 8192),
                   repeats: int = 3, num_threads: int | None = 1, prompt_len: int = 16) -> dict:
    """Median sampling speed per batch size and length.

    num_threads goes to `generate`: 1, its default, or None for torch's own setting
    (`torch.get_num_threads()`, the number of cores unless the caller changed it).
    """
    torch.manual_seed(0)
    cfg = replace(GPTConfig(), **(config_overrides or {}))
    model = GPT(cfg).eval()
    load_before = os.getloadavg()
    runs = {}
    for batch in batch_sizes:
        prompt, extras = _random_inputs(cfg, batch, prompt_len, prompt_len + max(lengths))
        model.generate(prompt, 256, generator=torch.Generator().manual_seed(0), num_threads=num_threads,
                       extras=None if extras is None else extras[:, :prompt_len + 256])
        for length in lengths:
            walls, cpus = [], []
            for r in range(repeats):
                g = torch.Generator().manual_seed(r)
                ex = None if extras is None else extras[:, :prompt_len + length]
                t0, c0 = time.perf_counter(), time.process_time()
                model.generate(prompt, length, generator=g, extras=ex, num_threads=num_threads)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            runs[f"batch{batch}_len{length}"] = {
                "batch": batch, "length": length,
                "tokens_per_s": batch * length / wall, "us_per_step": 1e6 * wall / length,
                "cpu_tokens_per_s": batch * length / cpu, "cpu_us_per_step": 1e6 * cpu / length,
                "wall_s": walls, "cpu_s": cpus,
            }
    kv_bytes = 2 * cfg.n_layer * cfg.kv_heads * cfg.head_size * cfg.block_size * 4
    return {
        "config": cfg.to_dict(), "n_params": model.num_params(),
        "threads": num_threads or torch.get_num_threads(), "repeats": repeats, "prompt_len": prompt_len,
        "kv_cache_kb_per_sequence": kv_bytes / 1024, "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(), "runs": runs, "peak_rss_mb": _peak_rss_mb(),
    }


def sweep(configs=SWEEP, batch_sizes=(1, 32), length: int = 2048, repeats: int = 3, num_threads: int = 1) -> list:
    """tokens/s against model size: the trade-off curve."""
    rows = []
    for overrides in configs:
        r = bench_sampling(overrides, batch_sizes, (length,), repeats, num_threads)
        rows.append({"overrides": overrides, "n_params": r["n_params"],
                     **{f"batch{b}_tokens_per_s": r["runs"][f"batch{b}_len{length}"]["tokens_per_s"] for b in batch_sizes},
                     **{f"batch{b}_cpu_tokens_per_s": r["runs"][f"batch{b}_len{length}"]["cpu_tokens_per_s"]
                        for b in batch_sizes},
                     "load_avg_after": r["load_avg_after"]})
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                        help="generate's num_threads; 0: None, torch's own setting")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    result = {"cpu_count": os.cpu_count(), "default_torch_threads": torch.get_num_threads(),
              "targets": {"batch1_tokens_per_s": 5000, "batch32_tokens_per_s": 50000}}
    for n in args.threads:
        key = f"num_threads_{n}" if n else f"num_threads_None_torch_{torch.get_num_threads()}"
        result[key] = bench_sampling(num_threads=n or None, repeats=args.repeats)
    if args.sweep:
        result["sweep_1_thread_len2048"] = sweep(repeats=args.repeats)
    print(json.dumps(result, indent=2))
