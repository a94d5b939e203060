"""What the benchmarks share: the bundled checkpoints' model configs, and the tiny sizes.

Speed is measured for the models `generate.py` ships with, so each benchmark builds its model
from the config stored in `checkpoints/` (random weights: the cost of a step does not depend on
them) and trains at the batch size that checkpoint was trained at.
"""
from __future__ import annotations

from pathlib import Path

from bachsformer.checkpoints import load_checkpoint
from bachsformer.paths import BUNDLED_CHECKPOINTS as CHECKPOINTS

REPO = Path(__file__).resolve().parents[1]


def bundled(kind: str) -> tuple:
    """(model config dict, training batch size) of the bundled `vae.pt` or `transformer.pt`."""
    state = load_checkpoint(CHECKPOINTS / f"{kind}.pt", kind)
    return dict(state["model_config"]), int(state["config"]["train"]["batch_size"])
