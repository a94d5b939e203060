"""The transformer's view of music: a piece as codebook indices, one row of 16 per frame, and the
per-token inputs beside them (index within the frame, beat slot, key, progress, local key).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ludovico_vae.frames import Piece, shift_keys
from ludovico_vae.model import VQVAE

from .tonality import NO_KEY, local_keys

FRAME_INDEX, BEAT_SLOT, KEY, PROGRESS, LOCAL_KEY = 0, 1, 2, 3, 4  # the extra per-token inputs of the transformer
SLOTS_PER_BEAT = 2  # beat position in the bar, counted in eighth notes
# The key input is a window's transposition from the piece as written, modulo an octave. Trained
# on every transposition, the model learns them all; asked for 0, it writes in the corpus' keys
# instead of drifting into whichever key its first notes happen to suggest.
KEYS = 12
# The progress input is how far through its piece a frame lies, in sixteenths of the piece: a
# 12-beat context is too short to know where in its form a piece stands.
PROGRESS_BINS = 16
LOCAL_KEYS = NO_KEY + 1  # the local-key input's vocabulary: 24 keys and none


@dataclass
class TokenPiece:
    """One piece (in one transposition) as codes, one row of indices per frame."""

    name: str
    tokens: np.ndarray  # (N, indices_per_frame) int64
    beat_slots: np.ndarray  # (N,) int64: eighth-note slot of each frame's start in its bar
    transpose: int = 0
    local_keys: np.ndarray | None = None  # (N,) int64: see `local_keys`; NO_KEY throughout if None

    def __len__(self) -> int:
        return len(self.tokens)


def beat_slots(beat_in_bar: np.ndarray, n_slots: int) -> np.ndarray:
    """Eighth-note slot of each frame in its bar, the last slot standing for all later ones."""
    return np.minimum(np.floor(beat_in_bar * SLOTS_PER_BEAT + 0.5).astype(np.int64), n_slots - 1)


def progress_bins(frames: np.ndarray, piece_frames: int) -> np.ndarray:
    """The progress bin of each frame position in a piece of `piece_frames` frames (earlier
    positions, such as a silent lead-in, are bin 0; later ones the last bin)."""
    bins = np.floor(np.asarray(frames) * PROGRESS_BINS / max(piece_frames, 1)).astype(np.int64)
    return np.clip(bins, 0, PROGRESS_BINS - 1)


def token_extras(n_frames: int, indices_per_frame: int, slots: np.ndarray, transpose: int = 0,
                 progress: np.ndarray | None = None, keys: np.ndarray | None = None) -> np.ndarray:
    """Per-token extra inputs `(n_frames * indices_per_frame, 5)`: index within the frame, beat
    slot, key, progress, local key. `progress` (n_frames,) defaults to that of a whole piece of
    n_frames; `keys` (n_frames,), the local keys, to NO_KEY."""
    index = np.tile(np.arange(indices_per_frame), n_frames)
    key = np.full_like(index, transpose % KEYS)
    if progress is None:
        progress = progress_bins(np.arange(n_frames), n_frames)
    if keys is None:
        keys = np.full(n_frames, NO_KEY)
    return np.stack([index, np.repeat(slots[:n_frames], indices_per_frame), key,
                     np.repeat(progress[:n_frames], indices_per_frame),
                     np.repeat(np.asarray(keys, dtype=np.int64)[:n_frames], indices_per_frame)], axis=1)


def encode_piece(model, piece: Piece, device, n_slots: int, transpose: int = 0) -> TokenPiece:
    frames = shift_keys(piece.frames, transpose) if transpose else piece.frames
    indices = encode(model, frames, device)
    _, _, beat_in_bar = piece.meter_per_frame()
    return TokenPiece(piece.name, indices.astype(np.int64), beat_slots(beat_in_bar, n_slots), transpose,
                      local_keys(frames))


def silent_frame_codes(model, frame_shape: tuple, device) -> np.ndarray:
    """(indices_per_frame,) the codes of an empty frame: what a piece starting from nothing is
    prompted with, and what a training piece's silent lead-in is made of."""
    empty = torch.zeros((1, *frame_shape), device=device)
    return model.encode_indices(empty)[0].cpu().numpy().astype(np.int64)


EXTRA_INPUTS = {"frame_index": FRAME_INDEX, "beat": BEAT_SLOT, "key": KEY, "progress": PROGRESS,
                "local_key": LOCAL_KEY}


def select_extras(extras: torch.Tensor, names) -> torch.Tensor | None:
    """The columns of the per-token extras `(..., 5)` the model was configured with."""
    if not names:
        return None
    return extras[..., [EXTRA_INPUTS[n] for n in names]]


@torch.no_grad()
def encode(model: VQVAE, frames: np.ndarray, device, batch_size: int = 1024) -> np.ndarray:
    """Frames `(N, 2, 88, T)` -> indices `(N, 16)`, a batch at a time."""
    was_training = model.training
    model.eval()
    indices = []
    for i in range(0, len(frames), batch_size):
        x = torch.from_numpy(frames[i:i + batch_size]).to(device=device, dtype=torch.float32)
        indices.append(model.encode_indices(x).cpu().numpy())
    model.train(was_training)
    return np.concatenate(indices) if indices else np.zeros((0, model.config.n_indices), dtype=np.int64)
