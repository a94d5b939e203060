"""What every run shares: one device resolver, one seeding function, checkpoints written atomically
that load on any device without running code, and a run folder that records metrics.
"""
from __future__ import annotations

import csv
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from ludovico_vae.files import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the file and the reason in one line."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; a named device must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} is not available: this machine has no CUDA GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} is not available: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} is not available: this machine has no Apple MPS")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch once at the start of a run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(state: dict, path) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`.

    A crash at any moment leaves either the old checkpoint or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path, kind: str | None = None) -> dict:
    """Load on the CPU with `weights_only=True`, so a checkpoint can never run code.

    `kind` names the stage the caller expects ("vae" or "transformer"); anything else is refused.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such checkpoint")
    if path.is_dir():
        raise CheckpointError(path, "is a directory, not a checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise CheckpointError(path, f"refused: not a plain weights file ({first[:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(path, f"corrupt or truncated checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or "kind" not in state:
        raise CheckpointError(path, "not a bachsformer checkpoint")
    if kind is not None and state["kind"] != kind:
        raise CheckpointError(path, f"is a {state['kind']} checkpoint, expected a {kind} checkpoint")
    return state


class MetricsLog:
    """Per-evaluation metrics appended to `metrics.csv` and drawn to `metrics.png` in the run folder."""

    def __init__(self, run_dir, plots: dict):
        self.csv_path = Path(run_dir) / "metrics.csv"
        self.png_path = Path(run_dir) / "metrics.png"
        self.plots = plots  # panel title -> list of column names drawn in it

    def rows(self) -> list:
        if not self.csv_path.exists():
            return []
        with open(self.csv_path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows written after the checkpoint being resumed from."""
        rows = [r for r in self.rows() if int(float(r["step"])) <= step]
        if not rows:
            self.csv_path.unlink(missing_ok=True)
            return
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.plot()

    def plot(self) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        if not rows:
            return
        fig, axes = plt.subplots(1, len(self.plots), figsize=(4.2 * len(self.plots), 3.2), squeeze=False)
        steps = [float(r["step"]) for r in rows]
        for ax, (title, columns) in zip(axes[0], self.plots.items()):
            for column in columns:
                values = [float(r[column]) if r.get(column) not in (None, "") else np.nan for r in rows]
                ax.plot(steps, values, marker=".", label=column)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=110)
        plt.close(fig)


def refuse_overwrite(path, force: bool) -> None:
    """Nothing a user had is replaced unless they said --force."""
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path}: already exists; pass --force to replace it")


class RunFolder:
    """A training run's folder: its resolved config, metrics, and `last`/`best` checkpoints.

    A folder that already holds a run is continued only with `resume`, never overwritten. With
    `write=False` (the ranks other than 0 of a distributed run) the folder is only checked: rank 0
    alone writes the config, metrics and checkpoints.
    """

    def __init__(self, out_dir, resume: bool, config: dict, write: bool = True):
        from .config import ConfigError, config_to_dict, save_config

        self.dir = Path(out_dir)
        self.last, self.best = self.dir / "last.pt", self.dir / "best.pt"
        if not resume and self.last.exists():
            raise ConfigError(f"train.out_dir: {self.dir} already holds a run; pass --resume to continue it "
                              "or choose another --train.out_dir")
        if resume and not self.last.exists():
            raise ConfigError(f"train.out_dir: nothing to resume, {self.last} does not exist")
        self.config_dict = config_to_dict(config)
        if not write:
            return
        if not resume:
            self.dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.dir / "config.yaml")

    def metrics(self, plots: dict) -> MetricsLog:
        return MetricsLog(self.dir, plots)

    def resume_state(self, kind: str) -> dict:
        return load_checkpoint(self.last, kind)

    def save(self, state: dict, improved: bool) -> None:
        """`last` at every evaluation; `best` too when the monitored metric improved."""
        save_checkpoint(state, self.last)
        if improved:
            save_checkpoint(state, self.best)


def export_weights(source, destination, kind: str) -> None:
    """Keep what generation needs (weights, configs, metrics, hashes); drop optimizer and RNG state."""
    state = load_checkpoint(source, kind)
    for key in ("trainer", "torch_rng", "rank_rngs"):
        state.pop(key, None)
    save_checkpoint(state, destination)
