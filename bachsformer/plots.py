"""Pictures a person would rather look at than read: the piano roll of a generated piece."""
from __future__ import annotations

import numpy as np

from ludovico_vae.files import atomic_write
from ludovico_vae.frames import ONSET, SOUNDING, frames_to_roll
from ludovico_vae.midi import LOWEST_PITCH


def piano_roll_png(frames: np.ndarray, prompt_frames: int, grid, path) -> None:
    """Sounding cells in grey, onsets dark; the prompt in blue, what the model wrote in red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roll = frames_to_roll(frames)
    T = grid.steps_per_quarter
    split = prompt_frames * T
    image = np.ones((*roll.shape[1:], 3))
    colours = {"prompt": np.array([0.15, 0.35, 0.8]), "model": np.array([0.8, 0.2, 0.15])}
    for name, cols in (("prompt", slice(0, split)), ("model", slice(split, None))):
        sounding, onset = roll[SOUNDING][:, cols].astype(bool), roll[ONSET][:, cols].astype(bool)
        part = image[:, cols]
        part[sounding] = 1 - 0.45 * (1 - colours[name])
        part[onset] = colours[name]
    keys = np.flatnonzero(roll[SOUNDING].any(axis=1))
    low, high = (keys.min(), keys.max()) if len(keys) else (0, roll.shape[1] - 1)
    width = min(40.0, max(6.0, roll.shape[2] / T * 0.12))
    fig, ax = plt.subplots(figsize=(width, 4))
    ax.imshow(image[low:high + 1], origin="lower", aspect="auto", interpolation="nearest",
              extent=(0, roll.shape[2] / T, LOWEST_PITCH + low - 0.5, LOWEST_PITCH + high + 0.5))
    if prompt_frames:
        ax.axvline(prompt_frames, color="black", linewidth=1)
        ax.set_title("prompt (blue) | continuation (red)")
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI pitch")
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
