"""Checkpoints: written atomically, loaded on the CPU without running code, their kind and format
checked, so a file from another stage, another version or another grid is refused in one line.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from ludovico_vae.files import atomic_write, file_head

from .errors import CheckpointError

# The layout of a checkpoint's entries. Raise it when an entry is renamed or changes meaning, and
# teach `_UPGRADES` to read the old layout; any other format is refused with a message.
# 2: the VQ-VAE's model config no longer repeats the frame shape (channels, keys, steps): the grid owns it.
CHECKPOINT_FORMAT = 2
FRAME_SHAPE_KEYS = ("channels", "n_keys", "steps")


def _from_format_1(state: dict, path) -> dict:
    """Format 1 kept the frame shape in the VQ-VAE config as well as in the grid; drop the copy."""
    steps = state["grid"]["steps_per_quarter"]
    for key in ("model_config", "vae_model_config"):
        config = state.get(key)
        if state["kind"] == "transformer" and key == "model_config" or not isinstance(config, dict):
            continue
        if config.get("steps", steps) != steps:
            raise CheckpointError(path, f"its VQ-VAE reads frames of {config['steps']} steps but its grid has {steps}")
        state[key] = {k: v for k, v in config.items() if k not in FRAME_SHAPE_KEYS}
    model = state.get("config", {}).get("model")
    if state["kind"] == "vae" and isinstance(model, dict):
        state["config"]["model"] = {k: v for k, v in model.items() if k not in FRAME_SHAPE_KEYS}
    return state


_UPGRADES = {1: _from_format_1}


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
    try:
        head = file_head(path, 4, "no such checkpoint", "a checkpoint file")
    except ValueError as e:
        raise CheckpointError(path, str(e)) from None
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
    return _current_format(state, path)


def _current_format(state: dict, path) -> dict:
    """The state in CHECKPOINT_FORMAT's layout, upgraded from an older one this version can read."""
    found = state.get("format")
    if found == CHECKPOINT_FORMAT:
        return state
    if isinstance(found, int) and found > CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"checkpoint format {found} is newer than this bachsformer reads "
                                    f"({CHECKPOINT_FORMAT}); upgrade bachsformer")
    if found not in _UPGRADES:
        raise CheckpointError(path, f"checkpoint format {found!r} is older than this bachsformer reads "
                                    f"(it reads {', '.join(map(str, sorted(_UPGRADES)))} and {CHECKPOINT_FORMAT}); "
                                    "retrain with this version")
    while found != CHECKPOINT_FORMAT:
        state = _UPGRADES[found](state, path)
        found += 1
    state["format"] = found
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
