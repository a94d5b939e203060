"""Notes <-> piano-roll frames of one quarter note each, the unit the VQ-VAE compresses.

A roll has two channels over the 88 keys: ONSET marks the cell where a key is struck, SOUNDING
every cell where it sounds (the onset cell too). The onset channel is what lets a repeated note
survive: two adjacent quarter notes on one key are one sounding run split by a second onset.
The roll of a whole piece is cut into frames `(N, 2, 88, T)`; frames concatenate back into the
roll, so notes held across frame boundaries survive.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .midi import HIGHEST_PITCH, LOWEST_PITCH, MidiError, Notes, Score, bar_lines, keyboard_reference

ONSET, SOUNDING = 0, 1
CHANNELS = 2
N_KEYS = HIGHEST_PITCH - LOWEST_PITCH + 1
MAX_BEATS = 20_000  # about three hours at 120 a minute; a longer roll is almost surely a corrupt file
QUANTISED_SHARE = 0.9  # onsets near the grid below this share: a performance, not quantised MIDI


@dataclass(frozen=True)
class FrameGrid:
    """How time and pitch are cut into cells.

    24 steps per quarter hold both duplets and triplets down to 32nd-note triplets
    (docs/frame-format.md gives the share of Goldberg onsets on each candidate grid).
    """

    steps_per_quarter: int = 24
    out_of_range: str = "fold"  # notes outside A0-C8: "fold" by octaves onto the keyboard, or "drop"

    def __post_init__(self):
        if not isinstance(self.steps_per_quarter, int) or not 1 <= self.steps_per_quarter <= 960:
            raise ValueError(f"steps_per_quarter must be an integer from 1 to 960, got {self.steps_per_quarter!r}")
        if self.out_of_range not in ("fold", "drop"):
            raise ValueError(f"out_of_range must be 'fold' or 'drop', got {self.out_of_range!r}")

    @property
    def ticks_per_beat(self) -> int:
        """A MIDI resolution near 480 on which every cell boundary falls on a whole tick."""
        return self.steps_per_quarter * math.ceil(480 / self.steps_per_quarter)

    @property
    def frame_shape(self) -> tuple:
        return (CHANNELS, N_KEYS, self.steps_per_quarter)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Piece:
    """A piece as frames plus what is needed to write it back with bar lines and tempo.

    Times in the metadata are beats of the source file; frame i starts at beat `i - lead_in`.
    `lead_in` is the silence put before the file's start so that bar lines (after a pickup, say)
    fall on frame boundaries.
    """

    frames: np.ndarray  # (N, 2, 88, T) uint8
    grid: FrameGrid
    lead_in: float = 0.0
    tempos: list = field(default_factory=lambda: [(0.0, 120.0)])
    time_signatures: list = field(default_factory=lambda: [(0.0, 4, 4)])
    source: str = ""
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def name(self) -> str:
        """The source file's name without its suffix, as held-out lists name pieces."""
        return Path(self.source).stem

    @property
    def frame_starts(self) -> np.ndarray:
        """Start of each frame in beats of the source file."""
        return np.arange(len(self.frames), dtype=np.float64) - self.lead_in

    def meter_per_frame(self) -> tuple:
        """For each frame: (numerator, denominator) in force and beats since its bar began."""
        return meter_per_frame(self.time_signatures, self.frame_starts)

    def notes(self) -> Notes:
        """The notes of the piece in beats of the source file."""
        return roll_to_notes(frames_to_roll(self.frames), self.grid.steps_per_quarter).shifted(-self.lead_in)

    def score(self) -> Score:
        return Score(self.notes(), self.grid.ticks_per_beat, list(self.tempos), list(self.time_signatures),
                     self.source)


def meter_per_frame(time_signatures: list, frame_starts: np.ndarray) -> tuple:
    """Meter and position in the bar (in beats) at each frame start.

    A first bar shorter than the next meter's bar is a pickup: positions before the first full
    bar are counted back from it, so a one-eighth pickup in 4/4 sits at beat 3.5.
    """
    bars, sig_beats, time_signatures = _full_bars(time_signatures, frame_starts)
    idx = np.clip(np.searchsorted(sig_beats, frame_starts, side="right") - 1, 0, len(sig_beats) - 1)
    numerators = np.array([time_signatures[i][1] for i in idx], dtype=np.int64)
    denominators = np.array([time_signatures[i][2] for i in idx], dtype=np.int64)
    bar_idx = np.searchsorted(bars, frame_starts, side="right") - 1
    first_bar = _bar_length(time_signatures[0])
    beat_in_bar = np.where(bar_idx >= 0, frame_starts - bars[np.maximum(bar_idx, 0)],
                           np.mod(frame_starts - bars[0], first_bar))
    return numerators, denominators, np.round(beat_in_bar, 9)


def bar_per_frame(time_signatures: list, frame_starts: np.ndarray) -> np.ndarray:
    """(N,) the bar each frame starts in, counted from 0 at the first full bar (a pickup is bar 0 too)."""
    bars, _, _ = _full_bars(time_signatures, frame_starts)
    return np.maximum(np.searchsorted(bars, frame_starts, side="right") - 1, 0)


def _full_bars(time_signatures: list, frame_starts: np.ndarray) -> tuple:
    """(bar starts, signature beats, signatures), a pickup's short first bar left out."""
    end = float(frame_starts[-1]) + 1 if len(frame_starts) else 1.0
    bars = bar_lines(time_signatures, end)
    sig_beats = np.array([b for b, _, _ in time_signatures])
    if (len(time_signatures) > 1 and len(bars) > 1 and bars[1] - bars[0] < _bar_length(time_signatures[1])
            and bars[1] == sig_beats[1]):
        return bars[1:], sig_beats[1:], time_signatures[1:]
    return bars, sig_beats, time_signatures


def _bar_length(signature) -> float:
    _, num, den = signature
    return num * 4.0 / den


def lead_in_beats(time_signatures: list, end_beat: float, steps_per_quarter: int) -> float:
    """Silence to put first so that most bar lines fall on quarter-note (frame) boundaries."""
    bars = bar_lines(time_signatures, end_beat)
    phase = np.round(np.mod(bars, 1.0) * steps_per_quarter).astype(np.int64) % steps_per_quarter
    most_common_phase = Counter(phase.tolist()).most_common(1)[0][0]
    return ((steps_per_quarter - most_common_phase) % steps_per_quarter) / steps_per_quarter


def fit_to_keyboard(notes: Notes, mode: str = "fold") -> tuple:
    """Fold notes outside A0-C8 by octaves onto the keyboard, or drop them; returns (notes, count)."""
    outside = (notes.pitch < LOWEST_PITCH) | (notes.pitch > HIGHEST_PITCH)
    count = int(outside.sum())
    if not count:
        return notes, 0
    if mode == "drop":
        return notes.select(~outside), count
    pitch = notes.pitch.copy()
    low, high = pitch < LOWEST_PITCH, pitch > HIGHEST_PITCH
    pitch[low] += 12 * np.ceil((LOWEST_PITCH - pitch[low]) / 12).astype(np.int64)
    pitch[high] -= 12 * np.ceil((pitch[high] - HIGHEST_PITCH) / 12).astype(np.int64)
    return Notes(pitch, notes.start, notes.end), count


def shift_keys(frames: np.ndarray, semitones: int) -> np.ndarray:
    """Transpose frames `(..., 88, T)` by `semitones`, dropping notes pushed off the keyboard."""
    out = np.zeros_like(frames)
    if abs(semitones) >= N_KEYS:
        return out
    if semitones >= 0:
        out[..., semitones:, :] = frames[..., :N_KEYS - semitones, :]
    else:
        out[..., :semitones, :] = frames[..., -semitones:, :]
    return out


def notes_to_roll(notes: Notes, steps_per_quarter: int, n_steps: int | None = None) -> np.ndarray:
    """Notes (beats >= 0, pitches on the keyboard) -> roll `(2, 88, L)` uint8.

    Times snap to the nearest cell; a note keeps at least one cell; notes that collide on a key
    after snapping follow the keyboard reference (the longer wins, a new onset ends the old note).
    """
    T = steps_per_quarter
    notes = notes.select(notes.end > notes.start)
    start = np.floor(notes.start * T + 0.5).astype(np.int64)
    end = np.maximum(np.floor(notes.end * T + 0.5).astype(np.int64), start + 1)
    if len(start) and start.min() < 0:
        raise ValueError("notes must not start before beat 0")
    cells = keyboard_reference(Notes(notes.pitch, start, end))
    start, end = cells.start.astype(np.int64), cells.end.astype(np.int64)
    key = cells.pitch - LOWEST_PITCH
    length = int(end.max(initial=0))
    if n_steps is None:
        n_steps = math.ceil(length / T) * T
    if length > n_steps:
        raise ValueError(f"notes last {length} steps, longer than the roll of {n_steps}")
    roll = np.zeros((CHANNELS, N_KEYS, n_steps), dtype=np.uint8)
    roll[ONSET, key, start] = 1
    edges = np.zeros((N_KEYS, n_steps + 1), dtype=np.int32)  # +1 at each onset, -1 after each end
    np.add.at(edges, (key, start), 1)
    np.add.at(edges, (key, end), -1)
    roll[SOUNDING] = np.cumsum(edges[:, :-1], axis=1) > 0
    return roll


def roll_to_notes(roll: np.ndarray, steps_per_quarter: int) -> Notes:
    """Roll `(2, 88, L)` -> notes in beats; the inverse of `notes_to_roll`.

    A note starts at an onset cell, or where a key starts sounding without one (as a decoder may
    write), and lasts until its key stops sounding or is struck again, at least one cell.
    """
    onset = roll[ONSET].astype(bool)
    sounding = roll[SOUNDING].astype(bool)
    n_keys, length = sounding.shape
    pad = np.zeros((n_keys, 1), dtype=bool)
    rising = sounding & ~np.concatenate([pad, sounding[:, :-1]], axis=1)
    starts = np.concatenate([onset | rising, pad], axis=1)  # a silent column ends every key's row
    stops = starts | ~np.concatenate([sounding, pad], axis=1)
    start_flat = np.flatnonzero(starts)
    stop_flat = np.flatnonzero(stops)
    end_flat = stop_flat[np.searchsorted(stop_flat, start_flat, side="right")]
    key, start = np.divmod(start_flat, length + 1)
    end = end_flat - key * (length + 1)
    notes = Notes(key + LOWEST_PITCH, start / steps_per_quarter, end / steps_per_quarter)
    return notes.sorted()


def roll_to_frames(roll: np.ndarray, steps_per_quarter: int) -> np.ndarray:
    """`(2, 88, N*T)` -> `(N, 2, 88, T)`, padding the roll with silence to whole quarters."""
    c, k, length = roll.shape
    n = math.ceil(length / steps_per_quarter)
    if n * steps_per_quarter != length:
        roll = np.concatenate([roll, np.zeros((c, k, n * steps_per_quarter - length), roll.dtype)], axis=2)
    return np.ascontiguousarray(roll.reshape(c, k, n, steps_per_quarter).transpose(2, 0, 1, 3))


def frames_to_roll(frames: np.ndarray) -> np.ndarray:
    """`(N, 2, 88, T)` -> `(2, 88, N*T)`."""
    n, c, k, t = frames.shape
    return frames.transpose(1, 2, 0, 3).reshape(c, k, n * t)


def on_grid_share(notes: Notes, steps_per_quarter: int, ticks_per_beat: int) -> tuple:
    """Share of onsets exactly on the grid, and within a quarter of a cell of it.

    Sequencers that place triplets by hand land a tick or two off the grid; a human performance
    lands anywhere, so the second figure tells quantised MIDI from a performance.
    """
    if not len(notes):
        return 1.0, 1.0
    ticks = np.floor(notes.start * ticks_per_beat + 0.5).astype(np.int64)
    exact = (ticks * steps_per_quarter) % ticks_per_beat == 0
    offset = np.abs(notes.start * steps_per_quarter - np.floor(notes.start * steps_per_quarter + 0.5))
    return float(exact.mean()), float((offset <= 0.25 + 1e-9).mean())


def reading_warnings(stats: dict) -> list:
    """What a user should hear about a file read into frames (its `Piece.stats`): a performance
    rather than a score, and the notes the drum channel took away."""
    warnings = []
    near = stats["onsets_near_grid"]
    if near < QUANTISED_SHARE:
        warnings.append(f"a performance, not a score: only {math.floor(100 * near + 1e-9)}% of its onsets lie near "
                        "the beat grid (quantise it first)")
    if stats.get("drum_notes"):
        drums = f"{stats['drum_notes']} note{'s' * (stats['drum_notes'] != 1)} on the drum channel (10) left out"
        if stats.get("melodic_drum_notes"):
            drums += (f", {stats['melodic_drum_notes']} of them in a track with a melodic program: a part put on "
                      "channel 10 by mistake? Move it to another channel to keep it")
        warnings.append(drums)
    return warnings


def score_to_piece(score: Score, grid: FrameGrid = FrameGrid()) -> Piece:
    """Cut a score into frames, recording what the conversion had to change in `stats`."""
    T = grid.steps_per_quarter
    notes, out_of_range = fit_to_keyboard(score.notes, grid.out_of_range)
    end_beat = float(notes.end.max(initial=0.0))
    if end_beat > MAX_BEATS:
        raise MidiError(score.source, f"lasts {end_beat:.0f} beats, more than the limit of {MAX_BEATS}")
    lead_in = lead_in_beats(score.time_signatures, end_beat, T)
    exact, near = on_grid_share(notes, T, score.ticks_per_beat)
    roll = notes_to_roll(notes.shifted(lead_in), T)
    frames = roll_to_frames(roll, T)
    kept = len(notes)
    stats = {"notes": len(score.notes), "keyboard_notes": int(roll[ONSET].sum()),
             "merged": kept - int(roll[ONSET].sum()),
             "out_of_range": out_of_range, "out_of_range_mode": grid.out_of_range,
             "drum_notes": score.drum_notes, "melodic_drum_notes": score.melodic_drum_notes, "onsets_on_grid": exact, "onsets_near_grid": near,
             "ticks_per_beat": score.ticks_per_beat}
    return Piece(frames, grid, lead_in, list(score.tempos), list(score.time_signatures), score.source, stats)
