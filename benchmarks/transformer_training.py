"""Training throughput of the GPT: tokens per second of forward + backward + AdamW step, run
through `mingpt.trainer.Trainer`.

The model is the bundled `checkpoints/transformer.pt`'s config (extra inputs included) at its
training batch size (64), with random weights; random tokens stand in for the corpus, since the
cost of a step does not depend on the content. Each step is timed alone; tokens/s is batch *
block_size over the median step, after `warmup` untimed steps. CPU time (this process) is
reported beside wall time because on a shared machine wall time also counts the time other
processes held the cores. `bf16_tokens_per_s` is the same under bfloat16 autocast
(`train.amp_cpu`); `flops_per_token` (info) is what `python -m benchmarks` sets both against.

The original implementation trained minGPT's "gpt-mini" (6 layers, 6 heads, 192 wide, block
192, vocabulary 16) at 2,400 tokens/s (batch 128, 4.6 GB RSS); `--gpt-mini` measures that size
here, once, in this process.

    python -m benchmarks --only transformer_training
    python benchmarks/transformer_training.py [--repeats N] [--threads N]   # the same
    python benchmarks/transformer_training.py --gpt-mini
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
from benchmarks.sampling import step_weight_shapes  # noqa: E402
from mingpt.model import GPT, GPTConfig  # noqa: E402
from mingpt.trainer import Trainer, TrainerConfig  # noqa: E402

GPT_MINI = dict(n_layer=6, n_head=6, n_kv_head=None, n_embd=192, block_size=192, vocab_size=16)
ORIGINAL = {"size": "gpt-mini", "tokens_per_s": 2400, "batch_size": 128, "peak_rss_mb": 4.6 * 1024}
TINY = dict(n_layer=1, n_head=2, n_kv_head=1, n_embd=32, block_size=32, vocab_size=64)


def training_flops_per_token(cfg: GPTConfig) -> int:
    """Forward and backward arithmetic per token of a full window: 6 per weight of every product
    (2 forward, 4 backward), and causal attention over the window (half of a square of scores
    and of weighted values, forward and twice that backward)."""
    return 6 * sum(k * n for k, n in step_weight_shapes(cfg)) + 6 * cfg.n_layer * cfg.block_size * cfg.n_embd


def bench_transformer_training(cfg: GPTConfig | None = None, batch_size: int = 64, steps: int = 10,
                               warmup: int = 2, amp_cpu: bool = False) -> dict:
    """Train on random tokens for warmup + steps steps; time the last `steps` one by one.
    amp_cpu: under bfloat16 autocast, as `train.amp_cpu` trains."""
    torch.manual_seed(0)
    cfg = cfg or GPTConfig()
    model = GPT(cfg)
    trainer = Trainer(model, TrainerConfig(warmup_steps=0, amp_cpu=amp_cpu), total_steps=warmup + steps,
                      device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.vocab_size, (2, batch_size, cfg.block_size + 1), generator=g)
    extras = None
    if cfg.extra_vocab_sizes:
        extras = torch.stack([torch.randint(0, n, (batch_size, cfg.block_size), generator=g)
                              for n in cfg.extra_vocab_sizes], dim=-1)
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
        "figures": {"tokens_per_s": tokens / wall, "cpu_tokens_per_s": tokens / cpu, "s_per_step": wall},
        "info": {"config": cfg.to_dict(), "n_params": model.num_params(), "batch_size": batch_size,
                 "flops_per_token": training_flops_per_token(cfg),
                 "tokens_per_step": tokens, "steps": steps, "warmup_steps": warmup,
                 "torch_threads": torch.get_num_threads(), "step_wall_s": walls[warmup:],
                 "final_loss": result["loss"]},
    }


def measure(tiny: bool = False, threads: int | None = None) -> dict:
    """The bundled transformer at its training batch size; tiny: one small layer, batch 2, 2 steps."""
    if tiny:
        return bench_transformer_training(replace(GPTConfig(), **TINY), batch_size=2, steps=2, warmup=1)
    model_config, batch_size = bundled("transformer")
    cfg = GPTConfig.from_dict(model_config)
    result = bench_transformer_training(cfg, batch_size)
    bf16 = bench_transformer_training(cfg, batch_size, steps=6, amp_cpu=True)
    result["figures"]["bf16_tokens_per_s"] = bf16["figures"]["tokens_per_s"]
    result["info"]["bf16_final_loss"] = bf16["info"]["final_loss"]
    return result


if __name__ == "__main__":
    if "--gpt-mini" in sys.argv[1:]:
        import resource

        result = bench_transformer_training(replace(GPTConfig(), **GPT_MINI), ORIGINAL["batch_size"])
        result["info"].update(original=ORIGINAL, cpu_count=os.cpu_count(),
                              peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result, indent=2))
        sys.exit(0)
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "transformer_training", *sys.argv[1:]]))
