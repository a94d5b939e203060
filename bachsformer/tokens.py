"""The transformer's view of music: a piece as codebook indices, one row of 16 per frame, and the
per-token inputs beside them (index within the frame, beat slot, key, progress, local key).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ludovico_vae.frames import SOUNDING, Piece, bar_per_frame, shift_keys
from ludovico_vae.midi import LOWEST_PITCH
from ludovico_vae.model import VQVAE

from .tonality import NO_KEY, PITCH_CLASSES, key_of_weights, local_keys

# the extra per-token inputs of the transformer, as columns of `token_extras`
FRAME_INDEX, BEAT_SLOT, KEY, PROGRESS, LOCAL_KEY, PIECE_KEY, SECTION, BAR_IN_SECTION, BARS_LEFT, FUTURE = range(10)
SLOTS_PER_BEAT = 2  # beat position in the bar, counted in eighth notes
# The key input is a window's transposition from the piece as written, modulo an octave. Trained
# on every transposition, the model learns them all; asked for 0, it writes in the corpus' keys
# instead of drifting into whichever key its first notes happen to suggest.
KEYS = 12
# The progress input is how far through its piece a frame lies, in sixteenths of the piece: a
# 12-beat context is too short to know where in its form a piece stands.
PROGRESS_BINS = 16
LOCAL_KEYS = NO_KEY + 1  # the local-key input's vocabulary: 24 keys and none
# The plan inputs: the key the whole piece is in (24 keys, as written after transposition) and
# where a frame stands in the piece's form. A piece is read as SECTIONS sections of equal length in
# bars (the Goldberg variations, repeats written out, are A A B B of 16 bars each); a frame is told
# its section, its bar within the section and the bars left to the end. A model that knows these
# can close a section on the dominant and the piece on the tonic, in the key it is asked for.
PIECE_KEYS = NO_KEY
SECTIONS = 4
BAR_SLOTS = 16  # bar within the section; the last slot stands for all later bars
BARS_LEFT_SLOTS = 16  # bars to the end, the last slot standing for BARS_LEFT_SLOTS - 1 or more
# Filling a gap: the frames that follow the gap are put first in the sequence, marked by the
# future input (1), and the frames before the gap and the gap itself follow in order (0). A model
# trained on some windows so reordered writes a gap knowing what comes after it, and on the rest
# continues as before; their plan inputs say where in the piece the future frames stand.
FUTURE_ROLES = 2


@dataclass
class TokenPiece:
    """One piece (in one transposition) as codes, one row of indices per frame."""

    name: str
    tokens: np.ndarray  # (N, indices_per_frame) int64
    beat_slots: np.ndarray  # (N,) int64: eighth-note slot of each frame's start in its bar
    transpose: int = 0
    local_keys: np.ndarray | None = None  # (N,) int64: see `local_keys`; NO_KEY throughout if None
    bars: np.ndarray | None = None  # (N,) int64: the bar each frame starts in, from 0
    key: int = NO_KEY  # the whole piece's key as it sounds (after `transpose`)

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


def form_plan(bars: np.ndarray, n_bars: int) -> tuple:
    """(section, bar in section, bars left) slots of frames in `bars` (N,) of a piece of `n_bars`."""
    bars = np.asarray(bars, dtype=np.int64)
    section = np.minimum(bars * SECTIONS // max(n_bars, 1), SECTIONS - 1)
    first_bar = -(-section * n_bars // SECTIONS)  # ceil: where each section begins
    in_section = np.clip(bars - first_bar, 0, BAR_SLOTS - 1)
    left = np.clip(n_bars - 1 - bars, 0, BARS_LEFT_SLOTS - 1)
    return section, in_section, left


def token_extras(n_frames: int, indices_per_frame: int, slots: np.ndarray, transpose: int = 0,
                 progress: np.ndarray | None = None, keys: np.ndarray | None = None,
                 bars: np.ndarray | None = None, n_bars: int | None = None, piece_key: int = NO_KEY) -> np.ndarray:
    """Per-token extra inputs `(n_frames * indices_per_frame, 10)`, columns as named above: index
    within the frame, beat slot, transposition, progress, local key, piece key, section, bar in
    section, bars left, future (0: tokens in order; see `future_first`). `progress` (n_frames,) defaults to that of a whole piece of n_frames; `keys`
    (n_frames,), the local keys, to NO_KEY; `bars` (n_frames,) to bar 0 of a one-bar piece."""
    index = np.tile(np.arange(indices_per_frame), n_frames)
    key = np.full_like(index, transpose % KEYS)
    if progress is None:
        progress = progress_bins(np.arange(n_frames), n_frames)
    if keys is None:
        keys = np.full(n_frames, NO_KEY)
    if bars is None:
        bars = np.zeros(n_frames, dtype=np.int64)
    plan = form_plan(np.asarray(bars)[:n_frames], int(n_bars if n_bars is not None else np.max(bars, initial=0) + 1))
    per_frame = [slots[:n_frames], progress[:n_frames], np.asarray(keys, dtype=np.int64)[:n_frames],
                 np.full(n_frames, piece_key), *plan]
    slot, progress, local, whole, section, in_section, left = (np.repeat(c, indices_per_frame) for c in per_frame)
    return np.stack([index, slot, key, progress, local, whole, section, in_section, left, np.zeros_like(index)], axis=1)


def future_first(tokens: np.ndarray, extras: np.ndarray, n_future: int, indices_per_frame: int) -> tuple:
    """The fill-in-the-middle order of a run of whole frames: its last `n_future` frames first,
    marked as the future, then the frames before them, in order.

    tokens (N * indices_per_frame,), extras (N * indices_per_frame, 10) -> the same, reordered.
    """
    cut = len(tokens) - n_future * indices_per_frame
    future = extras[cut:].copy()
    future[:, FUTURE] = 1
    return np.concatenate([tokens[cut:], tokens[:cut]]), np.concatenate([future, extras[:cut]])


def extras_of(piece: TokenPiece) -> np.ndarray:
    """`token_extras` of a whole piece as it was encoded."""
    n = len(piece)
    bars = piece.bars if piece.bars is not None else np.zeros(n, dtype=np.int64)
    return token_extras(n, piece.tokens.shape[1], piece.beat_slots, piece.transpose, keys=piece.local_keys,
                        bars=bars, n_bars=int(bars.max(initial=0)) + 1, piece_key=piece.key)


def encode_piece(model, piece: Piece, device, n_slots: int, transpose: int = 0) -> TokenPiece:
    """A piece, moved by `transpose` semitones, as codes with its beats, bars, local keys and key."""
    frames = shift_keys(piece.frames, transpose) if transpose else piece.frames
    indices = encode(model, frames, device)
    _, _, beat_in_bar = piece.meter_per_frame()
    return TokenPiece(piece.name, indices.astype(np.int64), beat_slots(beat_in_bar, n_slots), transpose,
                      local_keys(frames), bar_per_frame(piece.time_signatures, piece.frame_starts), key_of_frames(frames))


def key_of_frames(frames: np.ndarray) -> int:
    """The key of frames `(N, 2, 88, T)` by key profiles over their sounding cells; NO_KEY if silent."""
    sounding = frames[:, SOUNDING].sum(axis=(0, 2), dtype=np.int64)  # (88,) cells each key sounds
    weights = np.bincount((LOWEST_PITCH + np.arange(len(sounding))) % PITCH_CLASSES, weights=sounding,
                          minlength=PITCH_CLASSES)
    key = key_of_weights(weights)
    return NO_KEY if key is None else key


def silent_frame_codes(model, frame_shape: tuple, device) -> np.ndarray:
    """(indices_per_frame,) the codes of an empty frame: what a piece starting from nothing is
    prompted with, and what a training piece's silent lead-in is made of."""
    empty = torch.zeros((1, *frame_shape), device=device)
    return model.encode_indices(empty)[0].cpu().numpy().astype(np.int64)


EXTRA_INPUTS = {"frame_index": FRAME_INDEX, "beat": BEAT_SLOT, "key": KEY, "progress": PROGRESS,
                "local_key": LOCAL_KEY, "piece_key": PIECE_KEY, "section": SECTION, "bar_in_section": BAR_IN_SECTION,
                "bars_left": BARS_LEFT, "future": FUTURE}


def select_extras(extras: torch.Tensor, names) -> torch.Tensor | None:
    """The columns of the per-token extras `(..., 10)` the model was configured with."""
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
