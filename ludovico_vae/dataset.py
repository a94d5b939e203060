"""A corpus of MIDI files as pieces of frames, cached on disk by file content and grid.

Parsing MIDI dominates the cost of a corpus; the cache makes every later load a matter of
reading a few packed bit arrays. Bad files never stop a scan: they are returned with the reason.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .files import atomic_write, sha256_file
from .frames import FrameGrid, Piece, score_to_piece
from .midi import MidiError, read_midi

CACHE_FORMAT = 1  # bump when the frame format changes, so old cache entries are not reused
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")


def default_cache_dir() -> Path:
    """`$BACHSFORMER_CACHE`, else the user's cache folder: never inside a corpus that may be read-only."""
    if os.environ.get("BACHSFORMER_CACHE"):
        return Path(os.environ["BACHSFORMER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bachsformer" / "frames"


def find_midi_files(directory) -> list:
    """MIDI files below `directory` (any depth, suffix case ignored), in a stable order."""
    directory = Path(directory)
    if not directory.exists():
        raise MidiError(directory, "no such file or directory")
    if directory.is_file():
        return [directory]
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def find_other_files(directory) -> list:
    """Files below `directory` that are not MIDI by their suffix: ignored, but worth reporting."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() not in MIDI_SUFFIXES)


def corpus_hash(paths) -> str:
    """One hash for a set of files, by name and content, so checkpoints can name their data."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: Path(p).name):
        digest.update(f"{Path(path).name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _cache_key(content_sha: str, grid: FrameGrid) -> str:
    spec = json.dumps({"format": CACHE_FORMAT, "sha256": content_sha, "grid": grid.to_dict()}, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:32]


def save_piece(piece: Piece, path) -> None:
    """Write a piece as packed bits and JSON metadata, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"shape": list(piece.frames.shape), "grid": piece.grid.to_dict(), "lead_in": piece.lead_in,
            "tempos": piece.tempos, "time_signatures": piece.time_signatures, "source": piece.source,
            "stats": piece.stats}
    with atomic_write(path) as f:
        np.savez(f, bits=np.packbits(piece.frames.astype(bool).ravel()), meta=np.array(json.dumps(meta)))


def load_saved_piece(path) -> Piece:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        shape = tuple(meta["shape"])
        frames = np.unpackbits(data["bits"], count=int(np.prod(shape))).reshape(shape)
    return Piece(frames, FrameGrid(**meta["grid"]), meta["lead_in"], [tuple(t) for t in meta["tempos"]],
                 [tuple(t) for t in meta["time_signatures"]], meta["source"], meta["stats"])


def load_piece(path, grid: FrameGrid = FrameGrid(), cache_dir=None, use_cache: bool = True) -> Piece:
    """One MIDI file as a piece; raises `MidiError` naming the file when it cannot be used."""
    path = Path(path)
    if not use_cache:
        return score_to_piece(read_midi(path), grid)
    if not path.is_file():
        read_midi(path)  # raises the MidiError that says what is wrong with the path
    content_sha = sha256_file(path)
    entry = Path(cache_dir or default_cache_dir()) / f"{_cache_key(content_sha, grid)}.npz"
    if entry.exists():
        try:
            piece = load_saved_piece(entry)
            piece.source = str(path)
            return piece
        except Exception:
            entry.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    piece = score_to_piece(read_midi(path), grid)
    try:
        save_piece(piece, entry)
    except OSError:
        pass  # an unwritable cache only costs speed
    return piece


def load_pieces(paths, grid: FrameGrid = FrameGrid(), cache_dir=None, use_cache: bool = True) -> tuple:
    """Load many files; returns (pieces, failures) where failures are `MidiError`s of the bad files."""
    pieces, failures = [], []
    for path in paths:
        try:
            pieces.append(load_piece(path, grid, cache_dir, use_cache))
        except MidiError as e:
            failures.append(e)
    return pieces, failures
