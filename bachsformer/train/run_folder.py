"""A training run's folder: its resolved config, its metrics (CSV and PNG) and its `last` and
`best` checkpoints, continued only on purpose; and the export of a run's weights for generation.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ludovico_vae.files import TEMPORARY_PREFIX, atomic_write

from ..checkpoints import check_matches, load_checkpoint, save_checkpoint
from ..errors import ConfigError
from .config import config_to_dict, save_config


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


class RunFolder:
    """A training run's folder: its resolved config, metrics, and `last`/`best` checkpoints.

    A folder that already holds a run is continued only with `resume`, never overwritten. With
    `write=False` (the ranks other than 0 of a distributed run) the folder is only checked: rank 0
    alone writes the config, metrics and checkpoints.
    """

    def __init__(self, out_dir, resume: bool, config: dict, write: bool = True):
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
