"""A small generic trainer: AdamW with weight-decay groups, warmup + cosine learning rate,
gradient clipping, mixed precision (CUDA, and the CPU on request), and callbacks. It knows
nothing of the data: the caller hands it batches and decides when to evaluate and save.
"""
from __future__ import annotations

import math
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class TrainerConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 turns clipping off
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    amp: bool = True  # bfloat16 autocast on CUDA
    # bfloat16 autocast on the CPU as well (with `amp`): about 1.5x faster training per thread where
    # the CPU multiplies bfloat16 natively (AVX512-BF16, AMX), slower elsewhere; off by default,
    # since it rounds each product's inputs (docs/speed.md measures both)
    amp_cpu: bool = False

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be non-negative, got {self.grad_clip}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be non-negative, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")

    def require(self, at_least_one=(), non_negative=()):
        """Checks for the integer fields a subclass adds; each error names its field."""
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warmup to 1, then a cosine down to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, config: TrainerConfig) -> torch.optim.AdamW:
    """Decay the matrices of matmuls and convolutions; never biases, norms or embeddings' scale.

    Parameters with fewer than two dimensions are biases and norm gains: decaying them only
    pulls the model away from what it learned. Buffers (an EMA codebook, say) are not parameters
    and so are never touched by the optimizer.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


class Trainer:
    """One optimisation step at a time, so callers keep control of epochs, evaluation and saving.

    `model` may be wrapped in DistributedDataParallel, which averages the gradients of `backward`
    over processes; the caller keeps the bare module for checkpoints and evaluation.
    """

    def __init__(self, model: torch.nn.Module, config: TrainerConfig, total_steps: int, device: torch.device):
        self.model, self.config, self.device = model, config, torch.device(device)
        self.total_steps = total_steps
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, config.warmup_steps, total_steps, config.min_lr_ratio))
        self.step = 0
        self.callbacks = defaultdict(list)

    def add_callback(self, event: str, fn) -> None:
        self.callbacks[event].append(fn)

    def trigger(self, event: str, **info) -> None:
        for fn in self.callbacks[event]:
            fn(self, **info)

    def _autocast(self):
        if self.config.amp and (self.device.type == "cuda" or (self.device.type == "cpu" and self.config.amp_cpu)):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, *inputs) -> dict:
        """Forward (the model returns a dict holding "loss"), backward, clip, step; returns floats."""
        self.model.train()
        with self._autocast():
            out = self.model(*inputs)
        loss = out["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        result = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()
                  if isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1)}
        self.trigger("on_batch_end", result=result)
        return result

    def run(self, batches) -> None:
        """Train on every batch of an iterable (each a tuple of model inputs)."""
        for batch in batches:
            self.train_step(*(batch if isinstance(batch, (tuple, list)) else (batch,)))

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
