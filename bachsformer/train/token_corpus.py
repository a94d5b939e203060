"""The training corpus as tokens: every piece encoded by the VQ-VAE in every transposition, cached
on disk by the VAE's and the corpus' hashes, and cut into windows of whole frames.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ludovico_vae.dataset import default_cache_dir
from ludovico_vae.files import atomic_write, sha256_file
from ludovico_vae.frames import FrameGrid, meter_per_frame
from ludovico_vae.model import VQVAE

from ..cli import progress
from ..pair import Style, load_vae
from ..tokens import TokenPiece, beat_slots, encode_piece, extras_of, future_first, key_of_frames, silent_frame_codes
from ..tonality import local_keys
from .data import load_corpus, split_pieces

TOKEN_CACHE_FORMAT = 3  # 2: local keys stored beside the tokens; 3: bars and the piece's key

@dataclass
class TokenCorpus:
    """The corpus as tokens, split, with the VAE that encoded it: what a transformer run needs."""

    vae: VQVAE
    grid: FrameGrid
    style: Style  # the training pieces' meter, tempo and key plans, for generation's defaults
    corpus_hash: str
    vae_sha256: str
    train: list  # TokenPiece: every training piece in every transposition
    held_out: list  # the held-out pieces as written
    train_as_written: list  # the training pieces as written


def load_token_corpus(data, device, log=print) -> TokenCorpus:
    """Encode the corpus of `data` (a `TokenDataConfig`) with its VAE, from the cache when it can."""
    vae, grid, _ = load_vae(data.vae_path, device)
    pieces, corpus_key = load_corpus(data, grid, log)
    tokens = encode_corpus(vae, data.vae_path, pieces, corpus_key, device, data.beat_slots,
                           data.transpositions, data.cache_dir)
    train_pieces = split_pieces(pieces, data.held_out)[0]
    train_names = {p.name for p in train_pieces}
    if data.silent_lead_in:  # training windows only: held-out bits stay comparable across runs
        silence = silent_frame_codes(vae, grid.frame_shape, device)
        slots = {p.name: int(beat_slots(lead_in_beat(p), data.beat_slots)) for p in train_pieces}
        tokens = [with_silent_lead_in(t, silence, slots[t.name]) if t.name in train_names else t for t in tokens]
    return TokenCorpus(vae, grid, corpus_style(train_pieces, data.form), corpus_key, sha256_file(data.vae_path),
                       train=[t for t in tokens if t.name in train_names],
                       held_out=[t for t in tokens if t.name not in train_names and t.transpose == 0],
                       train_as_written=[t for t in tokens if t.name in train_names and t.transpose == 0])


def lead_in_beat(piece) -> float:
    """Where in its bar the beat before `piece`'s first frame lies (a pickup counted back from the
    first full bar, as generation places its silent lead-in frame)."""
    starts = np.insert(piece.frame_starts, 0, piece.frame_starts[0] - 1)
    return float(meter_per_frame(piece.time_signatures, starts)[2][0])


def corpus_style(pieces: list, form: str = "binary") -> Style:
    """The meter most frames are in, the median tempo and the commonest key: what generation
    defaults to. And each
    piece's key plan (its local keys as written, and its meter), for a model with a local-key input
    to follow at sampling time."""
    meters, plans, keys = Counter(), [], Counter(key_of_frames(piece.frames) for piece in pieces)
    for piece in pieces:
        numerators, denominators, _ = piece.meter_per_frame()
        piece_meters = Counter(zip(numerators.tolist(), denominators.tolist()))
        meters.update(piece_meters)
        plans.append({"name": piece.name, "meter": list(piece_meters.most_common(1)[0][0]),
                      "keys": local_keys(piece.frames).tolist()})
    (numerator, denominator), _ = meters.most_common(1)[0]
    return Style((numerator, denominator), float(np.median([p.tempos[0][1] for p in pieces])), plans,
                 keys.most_common(1)[0][0], form)



def with_silent_lead_in(piece: TokenPiece, silence: np.ndarray, slot: int) -> TokenPiece:
    """`piece` after one silent frame on the beat before its first, in beat slot `slot`.

    Generation starts a piece from the codes of a silent frame; without a lead-in those codes
    occur nowhere in the Goldberg tokens, so a model would meet its first context only at
    sampling time, and never learn how a piece begins after silence. The lead-in frame takes the
    local key of the frame after it, as generation gives it the key plan's first key.
    """
    keys = None if piece.local_keys is None else np.concatenate([piece.local_keys[:1], piece.local_keys])
    bars = None if piece.bars is None else np.concatenate([piece.bars[:1], piece.bars])
    return TokenPiece(piece.name, np.concatenate([silence[None], piece.tokens]),
                      np.concatenate([[slot], piece.beat_slots]).astype(np.int64), piece.transpose, keys, bars,
                      piece.key)


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
    # encoding by search (VQVAEConfig.search_candidates) takes up to an hour: the bar says how many,
    # and each (piece, transposition) is kept as it is done, so an interrupted run resumes there
    parts = path.with_suffix(".parts")
    work = progress(list(enumerate((piece, t) for piece in pieces for t in transpositions)), "encoding the corpus")
    encoded = [_encoded_part(parts / f"{i:06d}.npz", lambda: encode_piece(model, piece, device, n_slots, t))
               for i, (piece, t) in work]
    try:
        _save_tokens(path, encoded)
        shutil.rmtree(parts, ignore_errors=True)
    except OSError:
        pass  # an unwritable cache only costs time
    return encoded


def _encoded_part(part: Path, encode) -> TokenPiece:
    """One encoded (piece, transposition): from its part file when an earlier run wrote it."""
    if part.exists():
        try:
            return _load_tokens(part)[0]
        except Exception:
            part.unlink(missing_ok=True)
    encoded = encode()
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        _save_tokens(part, [encoded])
    except OSError:
        pass
    return encoded


def _save_tokens(path: Path, encoded: list) -> None:
    with atomic_write(path) as f:
        np.savez(f, names=np.array([p.name for p in encoded]), transpose=np.array([p.transpose for p in encoded]),
                 lengths=np.array([len(p) for p in encoded]),
                 tokens=np.concatenate([p.tokens for p in encoded]),
                 slots=np.concatenate([p.beat_slots for p in encoded]),
                 local_keys=np.concatenate([p.local_keys for p in encoded]),
                 bars=np.concatenate([p.bars for p in encoded]), keys=np.array([p.key for p in encoded]))


def _load_tokens(path) -> list:
    with np.load(path, allow_pickle=False) as data:
        bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
        return [TokenPiece(str(name), data["tokens"][a:b], data["slots"][a:b], int(t), data["local_keys"][a:b],
                           data["bars"][a:b], int(key))
                for name, t, key, a, b in zip(data["names"], data["transpose"], data["keys"], bounds[:-1], bounds[1:])]


class TokenWindows:
    """Windows of `frames_per_window` frames plus the next token, starting on every frame boundary.

    Inputs are the window's tokens, targets the same shifted by one, so every target inside a
    window is predicted from up to a full context of whole frames.
    """

    def __init__(self, pieces: list, frames_per_window: int):
        self.pieces = [p for p in pieces if len(p) > frames_per_window]
        self.frames_per_window = frames_per_window
        self.flat = [p.tokens.reshape(-1) for p in self.pieces]
        self.extras = [extras_of(p) for p in self.pieces]
        starts = [np.stack([np.full(len(p) - frames_per_window, i), np.arange(len(p) - frames_per_window)], 1)
                  for i, p in enumerate(self.pieces)]
        self.index = np.concatenate(starts) if starts else np.zeros((0, 2), dtype=np.int64)
        self.indices_per_frame = self.pieces[0].tokens.shape[1] if self.pieces else 0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def block_size(self) -> int:
        return self.frames_per_window * self.indices_per_frame

    def batch(self, rows, future=None) -> tuple:
        """Windows `rows` -> (inputs (B, T), targets (B, T), extras (B, T, 10)) as torch tensors.

        `future` (B,) reorders row j's window with its last future[j] frames first (`future_first`;
        0 keeps it in order): the in-order part ends where the future begins, so its last target
        is the future's first token, and the future's last token predicts nothing (-1).
        """
        size, per_frame = self.block_size, self.indices_per_frame
        x = np.empty((len(rows), size), dtype=np.int64)
        y = np.empty((len(rows), size), dtype=np.int64)
        e = np.empty((len(rows), size, self.extras[0].shape[1] if self.extras else 0), dtype=np.int64)
        for j, (piece, frame) in enumerate(self.index[rows]):
            start = frame * per_frame
            n_future = 0 if future is None else int(future[j])
            if n_future:
                x[j], e[j] = future_first(self.flat[piece][start:start + size], self.extras[piece][start:start + size],
                                          n_future, per_frame)
                y[j, :-1], y[j, -1] = x[j, 1:], x[j, 0]
                y[j, n_future * per_frame - 1] = -1
            else:
                x[j] = self.flat[piece][start:start + size]
                y[j] = self.flat[piece][start + 1:start + size + 1]
                e[j] = self.extras[piece][start:start + size]
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(e)
