"""Small MIDI files built with pretty_midi, one instrument, notes given in beats: good ones, a
performance off the grid, and the bad files every reader must refuse by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi


def write_midi(path, notes, qpm=120.0, resolution=480, drums=False, meters=((0.0, 4, 4),)) -> Path:
    """A one-instrument MIDI file of (pitch, start beat, end beat) notes."""
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=qpm)
    seconds = 60.0 / qpm
    instrument = pretty_midi.Instrument(program=6, is_drum=drums)
    instrument.notes = [pretty_midi.Note(80, int(p), s * seconds, e * seconds) for p, s, e in notes]
    pm.instruments.append(instrument)
    pm.time_signature_changes = [pretty_midi.TimeSignature(n, d, b * seconds) for b, n, d in meters]
    pm.write(str(path))
    return Path(path)


CHORDS_AND_TRIPLETS = ([(60, 0, 1), (64, 0, 1), (67, 0, 2), (60, 1, 1.5), (60, 1.5, 2), (48, 0, 6)]
                       + [(72, 2 + k / 3, 2 + (k + 1) / 3) for k in range(3)]
                       + [(76, 3 + k / 4, 3 + (k + 1) / 4) for k in range(4)]
                       + [(79, 4 + k / 6, 4 + (k + 1) / 6) for k in range(6)])
PICKUP_IN_THREE = [(67, 0, 0.5)] + [(60 + (k % 7), 0.5 + k, 1.5 + k) for k in range(12)]


def good_midi(path) -> Path:
    return write_midi(path, CHORDS_AND_TRIPLETS)


def unquantised_midi(path, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0, 32, 200))
    pitches = rng.integers(40, 80, 200)
    return write_midi(path, [(p, s, s + 0.3) for p, s in zip(pitches, starts)])


def text_file(path) -> Path:
    Path(path).write_text("not a MIDI file\n")
    return Path(path)


def truncated_midi(path) -> Path:
    data = good_midi(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return Path(path)


def empty_midi(path) -> Path:
    return write_midi(path, [])


def drums_only_midi(path) -> Path:
    return write_midi(path, [(36, k, k + 0.5) for k in range(8)], drums=True)


BAD_FILES = {"text.mid": (text_file, "not a MIDI file"),
             "truncated.mid": (truncated_midi, "corrupt or truncated"),
             "empty.mid": (empty_midi, "no notes"),
             "drums.mid": (drums_only_midi, "only drum notes")}
