"""The corpus as codebook tokens: each piece encoded by a VQ-VAE checkpoint (optionally in several
transpositions), cached on disk by the checkpoint's hash and the corpus hash, and cut into
windows of whole frames for the transformer.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ludovico_vae.dataset import default_cache_dir
from ludovico_vae.files import atomic_write, sha256_file
from ludovico_vae.frames import Piece, shift_keys
from ludovico_vae.midi import LOWEST_PITCH

from .music_stats import PITCH_CLASSES, SCALES
from .reconstruction import encode

TOKEN_CACHE_FORMAT = 2  # 2: local keys stored beside the tokens
FRAME_INDEX, BEAT_SLOT, KEY, PROGRESS, LOCAL_KEY = 0, 1, 2, 3, 4  # the extra per-token inputs of the transformer
SLOTS_PER_BEAT = 2  # beat position in the bar, counted in eighth notes
# The key input is a window's transposition from the piece as written, modulo an octave. Trained
# on every transposition, the model learns them all; asked for 0, it writes in the corpus' keys
# instead of drifting into whichever key its first notes happen to suggest.
KEYS = 12
# The progress input is how far through its piece a frame lies, in sixteenths of the piece. A
# 192-token context spans 12 beats, too little to know where a piece is in its form; told how far
# it has come, a model could follow a harmonic plan over any length. On the Goldberg codes it did
# not make the samples more tonal (README, "What the transformer sees"), so it is optional.
PROGRESS_BINS = 16
# The local-key input is the key the music around a frame is in: the best of the 12 major and 12
# harmonic-minor scales over the notes struck in the KEY_WINDOW frames centred on it, or NO_KEY
# where none are. A real variation spends its 32 bars in G, D and E minor and comes home; a model
# that sees 12 beats cannot plan that, and its samples spent 42% of their time in E minor and 14%
# in B minor against the corpus' 25% and 2% (README, "What the transformer sees"). Trained with
# its music's local keys, a model can be handed the plan of a real piece at sampling time.
KEY_WINDOW = 16
NO_KEY = len(SCALES)
LOCAL_KEYS = NO_KEY + 1


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


def local_keys(frames: np.ndarray) -> np.ndarray:
    """(N,) the local key of each frame `(N, 2, 88, T)`: an index into `music_stats.SCALES`, or
    NO_KEY where no note is struck in the KEY_WINDOW frames around it. Ties go to the major scale."""
    struck = frames[:, 0].sum(axis=-1, dtype=np.int64)  # (N, keys)
    per_class = np.zeros((len(frames), PITCH_CLASSES), dtype=np.int64)
    np.add.at(per_class.T, (LOWEST_PITCH + np.arange(struck.shape[1])) % PITCH_CLASSES, struck.T)
    cumulative = np.concatenate([np.zeros((1, PITCH_CLASSES), dtype=np.int64), per_class.cumsum(axis=0)])
    frame = np.arange(len(frames))
    lo = np.clip(frame - KEY_WINDOW // 2, 0, len(frames))
    hi = np.clip(frame + KEY_WINDOW - KEY_WINDOW // 2, 0, len(frames))
    window = cumulative[hi] - cumulative[lo]  # (N, 12) notes struck around each frame
    keys = (window @ SCALES.T.astype(np.int64)).argmax(axis=1)
    return np.where(window.sum(axis=1) > 0, keys, NO_KEY)


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


def with_silent_lead_in(piece: TokenPiece, silence: np.ndarray, slot: int) -> TokenPiece:
    """`piece` after one silent frame on the beat before its first, in beat slot `slot`.

    Generation starts a piece from the codes of a silent frame; without a lead-in those codes
    occur nowhere in the Goldberg tokens, so a model would meet its first context only at
    sampling time, and never learn how a piece begins after silence. The lead-in frame takes the
    local key of the frame after it, as generation gives it the key plan's first key.
    """
    keys = None if piece.local_keys is None else np.concatenate([piece.local_keys[:1], piece.local_keys])
    return TokenPiece(piece.name, np.concatenate([silence[None], piece.tokens]),
                      np.concatenate([[slot], piece.beat_slots]).astype(np.int64), piece.transpose, keys)


def _cache_path(cache_dir, vae_sha: str, corpus_key: str, transpositions, n_slots: int) -> Path:
    spec = json.dumps({"format": TOKEN_CACHE_FORMAT, "vae": vae_sha, "corpus": corpus_key, "slots": n_slots,
                       "transpositions": list(transpositions)}, sort_keys=True)
    key = hashlib.sha256(spec.encode()).hexdigest()[:32]
    return Path(cache_dir or default_cache_dir()).parent / "tokens" / f"{key}.npz"


def encode_corpus(model, vae_path, pieces: list, corpus_key: str, device, n_slots: int, transpositions=(0,),
                  cache_dir=None) -> list:
    """Every piece in every transposition as tokens, from the on-disk cache when it holds them.

    `corpus_key` identifies the pieces (their corpus hash); with the VAE checkpoint's own hash it
    names the cache entry, so a retrained VAE or a changed corpus is never served stale tokens.
    """
    path = _cache_path(cache_dir, sha256_file(vae_path), corpus_key, transpositions, n_slots)
    if path.exists():
        try:
            return _load_tokens(path)
        except Exception:
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    encoded = [encode_piece(model, piece, device, n_slots, t) for piece in pieces for t in transpositions]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            np.savez(f, names=np.array([p.name for p in encoded]), transpose=np.array([p.transpose for p in encoded]),
                     lengths=np.array([len(p) for p in encoded]),
                     tokens=np.concatenate([p.tokens for p in encoded]),
                     slots=np.concatenate([p.beat_slots for p in encoded]),
                     local_keys=np.concatenate([p.local_keys for p in encoded]))
    except OSError:
        pass  # an unwritable cache only costs time
    return encoded


def _load_tokens(path) -> list:
    with np.load(path, allow_pickle=False) as data:
        bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
        return [TokenPiece(str(name), data["tokens"][a:b], data["slots"][a:b], int(t), data["local_keys"][a:b])
                for name, t, a, b in zip(data["names"], data["transpose"], bounds[:-1], bounds[1:])]


class TokenWindows:
    """Windows of `frames_per_window` frames plus the next token, starting on every frame boundary.

    Inputs are the window's tokens, targets the same shifted by one, so every target inside a
    window is predicted from up to a full context of whole frames.
    """

    def __init__(self, pieces: list, frames_per_window: int):
        self.pieces = [p for p in pieces if len(p) > frames_per_window]
        self.frames_per_window = frames_per_window
        self.flat = [p.tokens.reshape(-1) for p in self.pieces]
        self.extras = [token_extras(len(p), p.tokens.shape[1], p.beat_slots, p.transpose, keys=p.local_keys)
                       for p in self.pieces]
        starts = [np.stack([np.full(len(p) - frames_per_window, i), np.arange(len(p) - frames_per_window)], 1)
                  for i, p in enumerate(self.pieces)]
        self.index = np.concatenate(starts) if starts else np.zeros((0, 2), dtype=np.int64)
        self.indices_per_frame = self.pieces[0].tokens.shape[1] if self.pieces else 0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def block_size(self) -> int:
        return self.frames_per_window * self.indices_per_frame

    def batch(self, rows) -> tuple:
        """Windows `rows` -> (inputs (B, T), targets (B, T), extras (B, T, 3)) as torch tensors."""
        size = self.block_size
        x = np.empty((len(rows), size), dtype=np.int64)
        y = np.empty((len(rows), size), dtype=np.int64)
        e = np.empty((len(rows), size, self.extras[0].shape[1] if self.extras else 0), dtype=np.int64)
        for j, (piece, frame) in enumerate(self.index[rows]):
            start = frame * self.indices_per_frame
            x[j] = self.flat[piece][start:start + size]
            y[j] = self.flat[piece][start + 1:start + size + 1]
            e[j] = self.extras[piece][start:start + size]
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(e)
