"""Where the bundled weights and recipes live: found from this package, never from the working
directory, so every command and the API find them wherever they are run from.
"""
from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def _bundled(name: str) -> Path:
    """A bundled folder: inside the package when installed from a wheel, else at the top of the
    repository (a clone, or an editable install)."""
    inside = Path(__file__).resolve().parent / name
    return inside if inside.is_dir() else REPOSITORY / name


BUNDLED_CHECKPOINTS = _bundled("checkpoints")
CONFIGS = _bundled("configs")
VAE_FILE, TRANSFORMER_FILE = "vae.pt", "transformer.pt"  # the two files of a checkpoint folder
# The styles a checkpoint folder may hold: each a transformer file on the codes of its one VAE.
STYLES = {"goldberg": TRANSFORMER_FILE, "chorales": "transformer-chorales.pt"}
DEFAULT_STYLE = "goldberg"
BUNDLED_VAE = BUNDLED_CHECKPOINTS / VAE_FILE
VAE_RECIPE = CONFIGS / "ludovico_vae.yaml"
TRANSFORMER_RECIPE = CONFIGS / "bachsformer.yaml"


def available_styles(checkpoint_dir=BUNDLED_CHECKPOINTS) -> list:
    """The styles whose transformer file `checkpoint_dir` holds, the default first."""
    return [name for name, file in STYLES.items() if (Path(checkpoint_dir) / file).exists()]
