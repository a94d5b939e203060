"""What every run shares: one device resolver, one seeding function, checkpoints written atomically
that load on any device without running code, and a run folder that records metrics.
"""
from __future__ import annotations

import csv
import io
import pickle
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ludovico_vae.files import TEMPORARY_PREFIX, atomic_write


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


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive; anything else is not our checkpoint


def load_checkpoint(path, kind: str | None = None) -> dict:
    """Load on the CPU with `weights_only=True`, so a checkpoint can never run code.

    `kind` names the stage the caller expects ("vae" or "transformer"); anything else is refused.
    Every failure is a `CheckpointError` of one line: the file and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such checkpoint")
    if path.is_dir():
        raise CheckpointError(path, "is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(path, f"cannot be read ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(path, "empty file, not a checkpoint")
    if head != ZIP_MAGIC:
        raise CheckpointError(path, "not a checkpoint (torch.save writes a zip archive; this is not one)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the weights-only unpickler warns about pickle protocols
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        code = re.search(r"GLOBAL (\S+)", str(e))
        if code:
            raise CheckpointError(path, f"refused: loading it would import {code.group(1)}, and weights never "
                                        "need code to load; only load checkpoints you trust") from None
        raise CheckpointError(path, "corrupt checkpoint (its pickled data cannot be read)") from None
    except MemoryError:
        raise CheckpointError(path, "corrupt checkpoint (it asks for more memory than this machine has)") from None
    except Exception as e:  # zip, storage and pickle readers raise many types for damaged files
        raise CheckpointError(path, f"corrupt or truncated checkpoint ({_first_line(e)})") from None
    if not isinstance(state, dict) or "kind" not in state:
        raise CheckpointError(path, "not a bachsformer checkpoint")
    if kind is not None and state["kind"] != kind:
        raise CheckpointError(path, f"is a {state['kind']} checkpoint, expected a {kind} checkpoint")
    return state


def _first_line(error: Exception, limit: int = 120) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_matches(state: dict, path, expected: dict) -> None:
    """Refuse a checkpoint saved for another grid or model than the one about to be built.

    Entries of a saved dict are compared one by one; one the checkpoint lacks (a setting added
    since it was written) is taken to have kept its default.
    """
    for key, value in expected.items():
        saved = state.get(key)
        if isinstance(saved, dict) and isinstance(value, dict):
            names = sorted(n for n in saved if saved[n] != value.get(n))
            if not names:
                continue
            detail = "; ".join(f"{n} {saved[n]!r} there, {value.get(n)!r} here" for n in names[:3])
        elif saved == value:
            continue
        else:
            detail = f"{saved!r} there, {value!r} here"
        raise CheckpointError(path, f"was saved with another {key} ({detail})")


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
        self._write([r for r in self.rows() if int(float(r["step"])) <= step])

    def append(self, row: dict) -> None:
        self._write(self.rows() + [row])
        self.plot()

    def _write(self, rows: list) -> None:
        """Rewrite the whole file atomically: a full disk never leaves half a row (the file is small)."""
        if not rows:
            self.csv_path.unlink(missing_ok=True)
            return
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
        with atomic_write(self.csv_path) as f:
            f.write(text.getvalue().encode())

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
        with atomic_write(self.png_path) as f:
            fig.savefig(f, dpi=110, format="png")
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
        if resume:
            for stale in self.dir.glob(f"{TEMPORARY_PREFIX}*"):  # a write cut short by a crash
                stale.unlink(missing_ok=True)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.dir / "config.yaml")

    def metrics(self, plots: dict) -> MetricsLog:
        return MetricsLog(self.dir, plots)

    def resume_state(self, kind: str, expected: dict | None = None) -> dict:
        """The `last` checkpoint, refused if its entries differ from `expected` (grid, model config)."""
        state = load_checkpoint(self.last, kind)
        check_matches(state, self.last, expected or {})
        return state

    def save(self, state: dict, improved: bool, snapshot: bool = False) -> None:
        """`last` at every evaluation; `best` too when the monitored metric improved.

        With `snapshot`, also `step-NNNNNN.pt`: held-out likelihood does not rank checkpoints the
        way their samples do, so a run can keep every one for a later choice.
        """
        save_checkpoint(state, self.last)
        if improved:
            save_checkpoint(state, self.best)
        if snapshot:
            save_checkpoint(state, self.dir / f"step-{state['step']:06d}.pt")


def export_weights(source, destination, kind: str) -> None:
    """Keep what generation needs (weights, configs, metrics, hashes); drop optimizer and RNG state."""
    state = load_checkpoint(source, kind)
    for key in ("trainer", "torch_rng", "rank_rngs"):
        state.pop(key, None)
    save_checkpoint(state, destination)
