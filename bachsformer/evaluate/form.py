"""The tonal plan and form of a piece, as docs/evaluation.md defines them: its key and the key of
every four bars, how it ends (the last chord's root and lowest note against the tonic, the length
of the final note), the chord that closes its first half, and how many of its bars are written
repeats. Bars come from the file's time signatures; times are in beats.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from ludovico_vae.midi import Notes, Score, bar_lines

from ..tonality import CADENCE_BEATS, PITCH_CLASSES, estimate_key, is_minor, key_name, tonic
from ..tonality import chord_root as tonality_chord_root
from ..tonality import lowest_sounding as tonality_lowest

BARS_PER_KEY = 4  # the key path gives one key for every this many bars
REPEAT_DISTANCE = 4  # a written repeat recurs at least this many bars away
CELLS_PER_BEAT = 12  # positions in a bar are compared on this grid


@dataclass
class Form:
    """One piece's tonal plan and form."""

    key: int | None  # 0-23 as `tonality.SCALES`: major 0-11, minor 12-23
    key_path: list  # the key of every BARS_PER_KEY bars, None where they are silent
    final_root: int | None  # pitch class of the last beat's chord root
    final_bass: int | None  # pitch class of the last beat's lowest note
    ends_on_tonic: bool  # root and lowest note of the last beat are the tonic
    half_root: int | None  # root of the chord on the downbeat of the bar that ends the first half
    half_cadence: bool  # that root is the tonic or the dominant
    final_note_beats: float  # from the last onset to the end
    repeated_bar_share: float  # non-empty bars that recur note for note REPEAT_DISTANCE or more bars away
    bars: int

    def row(self) -> dict:
        """The figures as a flat dict, key names spelt out (for tables and JSON)."""
        row = asdict(self)
        row.update(key=key_name(self.key), key_path=" ".join(_short(k) for k in self.key_path),
                   final_root=_pitch_name(self.final_root), final_bass=_pitch_name(self.final_bass),
                   half_root=_pitch_name(self.half_root))
        return row


def _pitch_name(pc: int | None) -> str:
    return "-" if pc is None else key_name(pc).split()[0]


def _short(key: int | None) -> str:
    """G, e (minor in lower case), or - for silence: a key path a musician reads at a glance."""
    if key is None:
        return "-"
    name = key_name(key).split()[0]
    return name.lower() if is_minor(key) else name


def chord_root(notes: Notes, window: tuple) -> int | None:
    return tonality_chord_root(notes.pitch, notes.start, notes.end, window)


def lowest_sounding(notes: Notes, window: tuple) -> int | None:
    return tonality_lowest(notes.pitch, notes.start, notes.end, window)


def bar_starts(score: Score) -> np.ndarray:
    """Beats where the piece's bars begin, up to its last note's end."""
    end = float(score.notes.end.max()) if len(score.notes) else 0.0
    return bar_lines(score.time_signatures, end)


def repeated_bar_share(notes: Notes, starts: np.ndarray, end: float) -> float:
    """Share of non-empty bars whose notes (position in the bar, pitch) recur exactly in a bar at
    least REPEAT_DISTANCE bars away."""
    bounds = np.append(starts, max(end, starts[-1] + 1e-9))
    bar_of = np.searchsorted(bounds, notes.start, side="right") - 1
    contents = defaultdict(set)
    for bar, start, pitch in zip(bar_of, notes.start, notes.pitch):
        if 0 <= bar < len(starts):
            contents[int(bar)].add((int(round((start - starts[bar]) * CELLS_PER_BEAT)), int(pitch)))
    seen = defaultdict(list)  # content -> the bars that hold it
    for bar, content in contents.items():
        seen[frozenset(content)].append(bar)
    repeated = sum(1 for bars in seen.values() for bar in bars
                   if any(abs(bar - other) >= REPEAT_DISTANCE for other in bars))
    return repeated / len(contents) if contents else 0.0


def form_of(score: Score) -> Form:
    """The tonal plan and form of one piece."""
    notes = score.notes
    if not len(notes):
        return Form(None, [], None, None, False, None, False, 0.0, 0.0, 0)
    starts = bar_starts(score)
    end = float(notes.end.max())
    key = estimate_key(notes.pitch, notes.start, notes.end)
    bounds = np.append(starts, end)
    path = [estimate_key(notes.pitch, notes.start, notes.end, (bounds[i], bounds[min(i + BARS_PER_KEY, len(starts))]))
            for i in range(0, len(starts), BARS_PER_KEY)]
    last_onset = float(notes.start.max())
    last_beat = (np.floor(last_onset + 1e-9), max(np.floor(last_onset + 1e-9) + 1, end))
    root, bass = chord_root(notes, last_beat), lowest_sounding(notes, last_beat)
    home = None if key is None else tonic(key)
    half = len(starts) // 2 - 1  # the bar that ends the first half
    # the cadence arrives on the downbeat; later beats of the bar run on into the second half
    half_root = chord_root(notes, (bounds[half], bounds[half] + CADENCE_BEATS)) if half >= 0 else None
    cadences = set() if home is None else {home, (home + 7) % PITCH_CLASSES}
    return Form(key, path, root, None if bass is None else bass % PITCH_CLASSES,
                home is not None and root == home and bass is not None and bass % PITCH_CLASSES == home,
                half_root, half_root in cadences, end - last_onset,
                repeated_bar_share(notes, starts, end), len(starts))


SUMMARY = ("ends_on_tonic", "half_cadence", "final_note_beats", "repeated_bar_share")


def summarise(forms: list) -> dict:
    """Shares of pieces that end on the tonic and close their first half on I or V, and medians
    of the final note and the repeated bars."""
    if not forms:
        return {}
    return {"ends_on_tonic": float(np.mean([f.ends_on_tonic for f in forms])),
            "half_cadence": float(np.mean([f.half_cadence for f in forms])),
            "final_note_beats": float(np.median([f.final_note_beats for f in forms])),
            "repeated_bar_share": float(np.median([f.repeated_bar_share for f in forms])),
            "keys": {name: sum(key_name(f.key) == name for f in forms) for name in sorted({key_name(f.key) for f in forms})}}
