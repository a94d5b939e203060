"""From the decoder's logits to notes: each key's likeliest sequence of whole notes.

The decoder scores every cell on its own, and a note is a run of cells: one doubtful cell in
the middle of a held note splits it in two, and one stray cell writes a note of a 24th of a
beat. Both cost note F1 twice. So each key's row is decoded as a whole (Viterbi): its cells are
silent, strike a note (the onset cell and the sounding cell on) or hold one (sounding on, onset
off); a note starts only where one is struck, and every note struck pays `note_cost` nats on
top of what the cells say. This is the onset-and-frame decoding of piano transcription (Hawthorne
et al. 2018) made exact. Measured on the bundled VQ-VAE (docs/results.md): held-out note
F1 0.613 cell by cell, 0.665 with notes costing 2 nats, the cost that rebuilds its training
pieces best.

The decoder runs a chunk of frames at a time, so `NoteDecoder` takes the log-odds in time order
and keeps only two bytes a cell of backpointers (two booleans) until `finish`.
"""
from __future__ import annotations

import numpy as np

SILENT, STRUCK, HELD = 0, 1, 2


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-x))), stable both ways; log sigmoid(-x) is this minus x."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


class NoteDecoder:
    """Viterbi over rows of cells, fed in chunks of time; each row (a key) is decoded on its own.

    `carry`: (rows,) bool, the rows whose note may go on from before the first cell (a prompt's
    last held notes); every other row starts silent.
    """

    def __init__(self, n_rows: int, note_cost: float, carry: np.ndarray | None = None):
        if not note_cost >= 0:
            raise ValueError(f"note_cost must be a non-negative number, got {note_cost!r}")
        self.note_cost = float(note_cost)
        self.n_rows = n_rows
        # best log-probability of each row ending in each state, before the first cell
        self.score = np.full((3, n_rows), -np.inf)
        self.score[SILENT] = 0.0
        if carry is not None:
            self.score[HELD, np.asarray(carry, dtype=bool)] = 0.0
        # per chunk, (cells, rows): whether the best way into a silent or struck cell came from
        # silence, and whether the best sounding state before the cell was a held one
        self.from_silent, self.held_before = [], []

    def push(self, onset: np.ndarray, sounding: np.ndarray) -> None:
        """Log-odds `(cells, rows)` of the next cells' onset and sounding, time first."""
        onset, sounding = np.asarray(onset, np.float32), np.asarray(sounding, np.float32)
        if onset.shape != sounding.shape or onset.ndim != 2 or onset.shape[1] != self.n_rows:
            raise ValueError(f"onset and sounding must both be (cells, {self.n_rows}), "
                             f"got {onset.shape} and {sounding.shape}")
        on_o, on_s = _log_sigmoid(onset), _log_sigmoid(sounding)
        off_o, off_s = on_o - onset, on_s - sounding
        emit_silent, emit_struck, emit_held = off_s + off_o, on_s + on_o - self.note_cost, on_s + off_o
        n = onset.shape[0]
        from_silent = np.empty((n, self.n_rows), dtype=bool)
        held_before = np.empty((n, self.n_rows), dtype=bool)
        silent, struck, held = self.score
        sounding_best, best = np.empty(self.n_rows), np.empty(self.n_rows)
        for t in range(n):
            np.greater(held, struck, out=held_before[t])  # ties go to a new note, deterministically
            np.maximum(held, struck, out=sounding_best)
            np.greater_equal(silent, sounding_best, out=from_silent[t])
            np.maximum(silent, sounding_best, out=best)
            # any state may fall silent or strike; only a sounding one may be held
            silent, struck, held = (best + emit_silent[t], best + emit_struck[t],
                                    sounding_best + emit_held[t])
        self.from_silent.append(from_silent)
        self.held_before.append(held_before)
        self.score = np.stack([silent, struck, held])

    def finish(self) -> tuple:
        """(onset, sounding) bool `(cells, rows)`: the likeliest states of every cell pushed."""
        nothing = [np.zeros((0, self.n_rows), dtype=bool)]
        from_silent = np.concatenate(self.from_silent or nothing)
        held_before = np.concatenate(self.held_before or nothing)
        n = len(from_silent)
        onset = np.empty((n, self.n_rows), dtype=bool)
        sounding = np.empty((n, self.n_rows), dtype=bool)
        state = self.score.argmax(0)
        for t in range(n - 1, -1, -1):
            np.equal(state, STRUCK, out=onset[t])
            np.not_equal(state, SILENT, out=sounding[t])
            # the state before cell t: the arrays were stored on the way in to cell t
            before_sounding = np.where(held_before[t], HELD, STRUCK)
            state = np.where((state != HELD) & from_silent[t], SILENT, before_sounding)
        return onset, sounding


def decode_notes(onset: np.ndarray, sounding: np.ndarray, note_cost: float,
                 carry: np.ndarray | None = None) -> tuple:
    """Log-odds `(cells, rows)` -> (onset, sounding) bool: the whole of `NoteDecoder` at once."""
    decoder = NoteDecoder(onset.shape[1], note_cost, carry)
    decoder.push(onset, sounding)
    return decoder.finish()
