"""A variation of a piece: its rhythm kept (every note's onset and length, new pitches), or its bass
line kept (the other voices written anew, as `harmonise` does with the bottom line).

For the rhythm, the model writes a piece over the same bars, frame by frame choosing among
candidates the one whose onsets fall where the piece's do (`harmonise.search`); each note of the
piece then takes a pitch from what the model wrote at that moment: one of the notes it strikes
there (else one it holds), the nearest to the note's own pitch, so voices keep their registers.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ludovico_vae.frames import ONSET, frames_to_roll, notes_to_roll, roll_to_frames, roll_to_notes
from ludovico_vae.midi import Notes, beats_of_seconds, parse_midi

from .editing import piece_extras, read_own_piece
from .errors import GenerationError
from .generation import Generated, fresh_seed
from .harmonise import DEFAULT_CANDIDATES, harmonise, search

KEEPS = ("rhythm", "bass")
EXTRA_ONSET_COST = 0.25  # an onset where the piece has none costs a quarter of one it has


def variation(model, source, keep: str = "rhythm", seed: int | None = None, num_samples: int = 1,
              temperature: float = 1.0, candidates: int = DEFAULT_CANDIDATES) -> list:
    """`num_samples` variations of the MIDI file `source` keeping its `keep` ("rhythm" or "bass")."""
    if keep not in KEEPS:
        raise GenerationError(f"keep must be rhythm or bass, got {keep!r}")
    if keep == "bass":
        return harmonise(model, source, "bottom", seed, num_samples, temperature, candidates)
    path, score, piece = read_own_piece(model, source)
    steps = model.grid.steps_per_quarter
    onsets = roll_to_frames(notes_to_roll(score.notes.shifted(piece.lead_in), steps, len(piece) * steps),
                            steps)[:len(piece), ONSET].any(axis=1)  # (N, T): steps where the piece strikes
    extras = piece_extras(model, piece)
    seed = fresh_seed() if seed is None else int(seed)
    results, threads = [], torch.get_num_threads()
    for i in range(num_samples):
        torch.set_num_threads(1)
        try:
            tokens, frames = search(model, extras, lambda frame, decoded: _in_rhythm(decoded, onsets[frame]),
                                    len(piece), candidates, temperature, seed + i)
        finally:
            torch.set_num_threads(threads)
        written = roll_to_notes(frames_to_roll(frames), steps).shifted(-piece.lead_in)
        pitches = repitched(score.notes, written)
        results.append(Generated(_with_pitches(parse_midi(path), score.notes, pitches), frames, tokens.reshape(-1),
                                 0, seed + i))
    return results


def _in_rhythm(candidates: np.ndarray, onsets: np.ndarray) -> int:
    """The candidate frame (k, 1, 2, 88, T) whose onset steps best match `onsets` (T,) bool."""
    struck = candidates[:, 0, ONSET].any(axis=1)  # (k, T)
    score = (struck & onsets).sum(axis=1) - EXTRA_ONSET_COST * (struck & ~onsets).sum(axis=1)
    return int(np.argmax(score))


def repitched(notes: Notes, written: Notes) -> np.ndarray:
    """A new pitch for each of `notes`: of the `written` notes struck at its onset (else sounding
    then), the nearest to its own pitch that no other note holds while it sounds (two notes of one
    key at once would merge in MIDI and lose the rhythm); its own pitch, or the nearest free one,
    where the model wrote nothing then."""
    pitches = notes.pitch.copy()
    taken = []  # (pitch, start, end) already given
    for i in np.lexsort((-notes.pitch, notes.start)):  # by onset, the top voice first
        at, until = notes.start[i], notes.end[i]
        struck = written.pitch[np.abs(written.start - at) < 1e-6]
        choices = struck if len(struck) else written.pitch[(written.start <= at + 1e-6) & (written.end > at + 1e-6)]
        busy = {p for p, s, e in taken if s < until - 1e-9 and at < e - 1e-9}
        free = [p for p in sorted(set(choices.tolist()), key=lambda p: abs(p - notes.pitch[i])) if p not in busy]
        fallback = (int(notes.pitch[i]) + d for d in sorted(range(-12, 13), key=abs))
        pitches[i] = free[0] if free else next(p for p in fallback if p not in busy)
        taken.append((int(pitches[i]), at, until))
    return pitches


def _with_pitches(original, notes: Notes, pitches: np.ndarray):
    """`original` with each note's pitch replaced, times, tracks and velocities unchanged."""
    midi = copy.deepcopy(original)
    table = {}
    for (p, s), q in zip(zip(notes.pitch.tolist(), np.round(notes.start, 6).tolist()), pitches.tolist()):
        table.setdefault((p, s), []).append(q)
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        starts = beats_of_seconds(midi, [n.start for n in instrument.notes])
        for note, start in zip(instrument.notes, starts):
            options = table.get((note.pitch, round(float(start), 6)))
            if options:
                note.pitch = int(options.pop(0))
        instrument.name = instrument.name or "variation"
    return midi
