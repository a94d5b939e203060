"""Sampling speed of the GPT: tokens per second of `GPT.generate` with the key/value cache.

The model is the bundled `checkpoints/transformer.pt`'s config (random weights: the cost of a
step does not depend on them). For batch 1 and 32 and for 2,048 and 8,192 new tokens, one timed
generate(prompt, length) from a 16-token random prompt, after one untimed warm-up of 256 tokens;
`python -m benchmarks` repeats the whole in fresh processes. Reported: tokens per second (batch
* length / seconds) of wall time and of this process's CPU time (on a shared machine wall time
also counts the time other processes held the cores). Equal rates at 2,048 and 8,192 tokens mean
the cost per token stays flat as a piece grows.

Threads: generate's `num_threads`, 1 unless `--threads` says otherwise (1 is what `generate.py`
uses: a sampling step's ops are too small to share).

    python -m benchmarks --only sampling
    python benchmarks/sampling.py [--repeats N] [--threads N]   # the same
    python benchmarks/sampling.py --sweep   # tokens/s against n_layer / n_embd / n_kv_head, 2,048 tokens
    python benchmarks/sampling.py --profile   # where a step's time goes: batch 1, and 32 on 1 and 2 threads

Batch 32 is also measured on two threads (`batch32_len2048_2_threads_tokens_per_s`): a batch
that large has enough arithmetic per op to share. The limits these figures are set against
(`python -m benchmarks`, see `benchmarks.report`): at batch 1 the chain of a step's weight
products alone (`step_products_us`, measured by `benchmarks.roofline`); at batch 32 the slower of
its arithmetic (`step_flops_per_token`) at the machine's peak and of the bytes a step reads
(every weight once, and each sequence's full key/value window) at its memory bandwidth.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import bundled  # noqa: E402
from mingpt.model import GPT, GPTConfig, KVCacheDecoder  # noqa: E402

BATCH_SIZES, LENGTHS = (1, 32), (2048, 8192)
TINY = dict(n_layer=1, n_head=2, n_kv_head=1, n_embd=32, block_size=32, vocab_size=64)
TINY_LENGTHS = (32, 64)
SWEEP = [  # the trade-off curve: speed against size
    dict(n_layer=2, n_embd=128), dict(n_layer=3, n_embd=128), dict(n_layer=4, n_embd=64),
    dict(n_layer=4, n_embd=96), dict(n_layer=4, n_embd=128), dict(n_layer=4, n_embd=128, n_kv_head=None),
    dict(n_layer=6, n_embd=128), dict(n_layer=4, n_embd=192, n_head=6),
    dict(n_layer=6, n_head=6, n_embd=192, n_kv_head=None),
]


def _random_inputs(cfg: GPTConfig, batch: int, prompt_len: int, total: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (batch, prompt_len), generator=g)
    if not cfg.extra_vocab_sizes:
        return prompt, None
    extras = torch.stack([torch.randint(0, n, (batch, total), generator=g) for n in cfg.extra_vocab_sizes], -1)
    return prompt, extras


def bench_sampling(cfg: GPTConfig | None = None, batch_sizes=BATCH_SIZES, lengths=LENGTHS, repeats: int = 1,
                   num_threads: int | None = 1, prompt_len: int = 16, warmup: int = 256) -> dict:
    """Median sampling speed per batch size and length.

    num_threads goes to `generate`: 1, its default, or None for torch's own setting
    (`torch.get_num_threads()`, the number of cores unless the caller changed it).
    """
    torch.manual_seed(0)
    cfg = cfg or GPTConfig()
    model = GPT(cfg).eval()
    figures, walls_by_run = {}, {}
    for batch in batch_sizes:
        prompt, extras = _random_inputs(cfg, batch, prompt_len, prompt_len + max(lengths + (warmup,)))
        model.generate(prompt, warmup, generator=torch.Generator().manual_seed(0), num_threads=num_threads,
                       extras=None if extras is None else extras[:, :prompt_len + warmup])
        for length in lengths:
            walls, cpus = [], []
            for r in range(repeats):
                g = torch.Generator().manual_seed(r)
                ex = None if extras is None else extras[:, :prompt_len + length]
                t0, c0 = time.perf_counter(), time.process_time()
                model.generate(prompt, length, generator=g, extras=ex, num_threads=num_threads)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            key = f"batch{batch}_len{length}"
            figures[f"{key}_tokens_per_s"] = batch * length / statistics.median(walls)
            figures[f"{key}_cpu_tokens_per_s"] = batch * length / statistics.median(cpus)
            walls_by_run[key] = walls
    return {
        "figures": figures,
        "info": {"config": cfg.to_dict(), "n_params": model.num_params(),
                 "torch_threads": num_threads or torch.get_num_threads(), "repeats_in_process": repeats,
                 "prompt_len": prompt_len, "wall_s": walls_by_run, **step_costs(cfg)},
    }


def step_costs(cfg: GPTConfig) -> dict:
    """What one cached step costs per sequence: its arithmetic, and the bytes it reads (the
    weights once per step, whatever the batch; the key/value window once per sequence)."""
    kv_bytes = 2 * cfg.n_layer * cfg.kv_heads * cfg.head_size * cfg.block_size * 4
    weight_bytes = 4 * sum(k * n for k, n in step_weight_shapes(cfg))
    return {"step_flops_per_token": step_flops_per_token(cfg), "step_weight_bytes": weight_bytes,
            "kv_cache_bytes_per_sequence": kv_bytes}


def measure(tiny: bool = False, threads: int | None = None) -> dict:
    """The bundled transformer at batch 1 and 32, 2,048 and 8,192 tokens; tiny: a small model, 32 and 64."""
    if tiny:
        return bench_sampling(replace(GPTConfig(), **TINY), lengths=TINY_LENGTHS, num_threads=threads or 1,
                              warmup=8)
    model_config, _ = bundled("transformer")
    cfg = GPTConfig.from_dict(model_config)
    result = bench_sampling(cfg, num_threads=threads or 1)
    if (threads or 1) == 1 and (os.cpu_count() or 1) >= 2:
        both = bench_sampling(cfg, batch_sizes=(32,), lengths=(2048,), num_threads=2)
        result["figures"]["batch32_len2048_2_threads_tokens_per_s"] = both["figures"]["batch32_len2048_tokens_per_s"]
    return result


def sweep(configs=SWEEP, batch_sizes=BATCH_SIZES, length: int = 2048, repeats: int = 3, num_threads: int = 1) -> list:
    """tokens/s against model size (overrides of the `GPTConfig` defaults): the trade-off curve."""
    rows = []
    for overrides in configs:
        r = bench_sampling(replace(GPTConfig(), **overrides), batch_sizes, (length,), repeats, num_threads)
        rows.append({"overrides": overrides, "n_params": r["info"]["n_params"], **r["figures"],
                     "load_avg_after": os.getloadavg()})
    return rows


def step_weight_shapes(cfg: GPTConfig) -> list:
    """(in, out) of every weight product of one cached step: q k v, output, MLP in and out per
    layer, then the head."""
    C, hs = cfg.n_embd, cfg.head_size
    return [(C, C + 2 * cfg.kv_heads * hs), (C, C), (C, 4 * C), (4 * C, C)] * cfg.n_layer + [(C, cfg.vocab_size)]


def step_flops_per_token(cfg: GPTConfig) -> int:
    """Multiply-adds x 2 of one cached step of one sequence, with a full attention window: the
    weight products, and the scores and weighted values over the window."""
    attention = cfg.n_layer * 2 * cfg.n_head * cfg.head_size * cfg.block_size
    return 2 * (sum(k * n for k, n in step_weight_shapes(cfg)) + attention)


def step_products_us(cfg: GPTConfig, batch: int = 1, threads: int = 1, reps: int = 2000) -> float:
    """Microseconds for the weight products of one cached step alone, in order, on `threads`
    threads (median of 5).

    At batch 1 a step streams every weight once: the step can be no faster than this chain,
    whatever the other ops cost."""
    chain = [(torch.randn(batch, k), torch.randn(k, n), torch.empty(batch, n)) for k, n in step_weight_shapes(cfg)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        for _ in range(6):  # the first pass warms the caches and is dropped
            t0 = time.perf_counter()
            for _ in range(reps):
                for a, b, out in chain:
                    torch.mm(a, b, out=out)
            times.append((time.perf_counter() - t0) / reps * 1e6)
        return statistics.median(times[1:])
    finally:
        torch.set_num_threads(before)


def profile_step(cfg: GPTConfig, batch: int, threads: int = 1, steps: int = 200, rows: int = 12) -> str:
    """Where one cached step's time goes, with a full window: torch's profiler over `steps` steps
    (ops by their own time), beside the step and the chain of its weight products alone."""
    from torch.profiler import profile

    torch.manual_seed(0)
    model = GPT(cfg).eval()
    prompt, extras = _random_inputs(cfg, batch, cfg.block_size, cfg.block_size + 2 * steps + 1)
    decoder = KVCacheDecoder(model, batch)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            decoder.prefill(prompt, None if extras is None else extras[:, :cfg.block_size])
            embedded = None if extras is None else decoder.embed_extras(extras[:, cfg.block_size:])
            tokens = torch.randint(0, cfg.vocab_size, (2 * steps, batch))

            def run(first):
                for i in range(first, first + steps):
                    decoder.fast_step(tokens[i], None if embedded is None else embedded[:, i])
            run(0)
            t0 = time.perf_counter()
            run(0)
            step_us = (time.perf_counter() - t0) / steps * 1e6
            with profile() as prof:
                run(steps)
    finally:
        torch.set_num_threads(before)
    chain_us = step_products_us(cfg, batch, threads, reps=500)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return (f"batch {batch}, {threads} thread(s): a step {step_us:.0f} us, its weight products alone "
            f"{chain_us:.0f} us; profiled over {steps} steps (the profiler adds its own cost per op):\n{table}")


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        cfg = GPTConfig.from_dict(bundled("transformer")[0])
        for batch, threads in ((1, 1), (32, 1), (32, 2)):
            print(profile_step(cfg, batch, threads))
        sys.exit(0)
    if "--sweep" in sys.argv[1:]:
        print(json.dumps({"cpu_count": os.cpu_count(), "sweep_1_thread_len2048": sweep()}, indent=2))
        sys.exit(0)
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "sampling", *sys.argv[1:]]))
