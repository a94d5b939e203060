"""Statistics of generated music against a reference corpus, as docs/evaluation.md defines them.

This module owns the "Generated music" figures: per-piece statistics of a note list (density,
polyphony, pitch range, scale consistency, empty and repeated beats), histogram overlaps with the
pooled reference (pitch class, duration, notes per beat), and copying (how much of a piece occurs
verbatim in one reference piece). The same figures for real pieces scored against the rest of the
corpus (`real_music_yardstick`) give the range a model's figures should be read against.

Everything is in beats (quarter notes) and pure numpy. Two grids of 12 cells per beat (enough for
sixteenths and triplets) are used: onsets are snapped to the nearest cell before a note is given
a beat, so that an onset a tick early does not fall into the previous beat, and polyphony is
counted per cell.
"""
from __future__ import annotations

import numpy as np

from ludovico_vae.midi import Notes

from ..errors import MeasureError
from ..tonality import PITCH_CLASSES, SCALES

CELLS_PER_BEAT = 12
WINDOW_BEATS = 4  # the copied share counts windows of this many consecutive beats
PITCH_RANGE_PERCENTILES = (5, 95)  # the outer 5% at each end are ornaments, not the register
# Bin edges in beats; np.histogram closes the last bin, and durations beyond the last edge are
# put into it too (`_histogram` clips), so every note is counted: a 4.01-beat edge would otherwise
# drop the long pedal notes a generator might hold.
DURATION_EDGES = np.array([0, .13, .2, .26, .35, .51, .76, 1.01, 1.6, 2.1, 4.01])
# Notes starting in one beat: 0-6 one by one, then ever wider bins; counts of 100 or more are put
# into the last bin.
DENSITY_EDGES = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 12, 16, 100])
PITCHES = 128  # MIDI pitches 0-127: an onset cell and a pitch pack into one integer
EMPTY_BEAT = 0  # the id of a beat in which no note starts, in every beat vocabulary

SUMMARY_KEYS = ("copied_4beat_share", "longest_copied_run", "pitch_class_overlap", "duration_overlap",
                "density_overlap", "scale_consistency", "empty_beat_rate", "repeated_beat_rate",
                "notes_per_beat", "polyphony", "pitch_range", "pitch_low", "pitch_high")


# ---------------------------------------------------------------- cutting a piece into beats

def onset_cells(notes: Notes) -> np.ndarray:
    """Onsets snapped to the nearest of 12 cells per beat (halves round up, never to even)."""
    return np.floor(notes.start * CELLS_PER_BEAT + 0.5).astype(np.int64)


def beat_of_notes(notes: Notes) -> np.ndarray:
    """The beat each note starts in, after snapping its onset to the grid."""
    return onset_cells(notes) // CELLS_PER_BEAT


def beat_count(notes: Notes) -> int:
    """Beats from the file's beat 0 through the last beat in which a note starts.

    Counting from beat 0 keeps silence a generator puts before its first note; stopping at the
    last onset keeps a final held chord from counting as empty beats.
    """
    if len(notes) == 0:
        return 0
    return int(max(beat_of_notes(notes).max(), 0)) + 1


def beat_codes(notes: Notes) -> list:
    """Each beat as a sorted tuple of `cell * 128 + pitch` for the notes starting in it.

    A beat is the set of (onset cell within the beat, pitch): two beats are equal when the same
    keys are struck at the same moments, whatever the durations. Notes before beat 0 are ignored.
    """
    n = beat_count(notes)
    beats = [()] * n
    if n == 0:
        return beats
    cells = onset_cells(notes)
    keep = cells >= 0
    cells, pitch = cells[keep], notes.pitch[keep]
    if pitch.size and (pitch.min() < 0 or pitch.max() >= PITCHES):
        raise ValueError(f"pitches must be MIDI pitches 0-{PITCHES - 1}, got {pitch.min()}-{pitch.max()}")
    beat = cells // CELLS_PER_BEAT
    keys = np.unique(beat * (CELLS_PER_BEAT * PITCHES) + (cells % CELLS_PER_BEAT) * PITCHES + pitch)
    beat_of_key, codes = np.divmod(keys, CELLS_PER_BEAT * PITCHES)
    starts = np.flatnonzero(np.r_[True, beat_of_key[1:] != beat_of_key[:-1]])
    for a, b in zip(starts.tolist(), np.r_[starts[1:], len(keys)].tolist()):
        beats[int(beat_of_key[a])] = tuple(codes[a:b].tolist())
    return beats


def beat_ids(beats: list, vocabulary: dict) -> np.ndarray:
    """Beats as integer ids, shared through `vocabulary` (beat tuple -> id; the empty beat is 0).

    Hashing each beat once turns every later comparison of beats into a comparison of integers.
    """
    vocabulary.setdefault((), EMPTY_BEAT)
    return np.array([vocabulary.setdefault(b, len(vocabulary)) for b in beats], dtype=np.int64)


# ---------------------------------------------------------------- per-piece statistics

def notes_per_beat(notes: Notes) -> float:
    n = beat_count(notes)
    return len(notes) / n if n else float("nan")


def mean_polyphony(notes: Notes) -> float:
    """Notes sounding, averaged over the 12-per-beat cells in which any note sounds.

    Rests are left out so that a piece with long silences is not called thin. Every note covers at
    least one cell, so a grace note shorter than a cell still counts.
    """
    if len(notes) == 0:
        return float("nan")
    first = onset_cells(notes)
    last = np.maximum(np.floor(notes.end * CELLS_PER_BEAT + 0.5).astype(np.int64), first + 1)
    shift = min(int(first.min()), 0)
    first, last = first - shift, last - shift
    size = int(last.max()) + 1
    sounding = np.cumsum(np.bincount(first, minlength=size) - np.bincount(last, minlength=size))
    active = sounding[sounding > 0]
    return float(active.mean()) if active.size else float("nan")


def pitch_range(notes: Notes) -> tuple:
    """(5th percentile, 95th percentile, span) of the pitches: the register, without outliers."""
    if len(notes) == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = np.percentile(notes.pitch, PITCH_RANGE_PERCENTILES)
    return float(low), float(high), float(high - low)


def pitch_class_counts(notes: Notes) -> np.ndarray:
    return np.bincount(notes.pitch % PITCH_CLASSES, minlength=PITCH_CLASSES).astype(np.float64)


def scale_consistency(notes: Notes) -> float:
    """Largest share of notes inside one major or harmonic-minor scale, over the 24 keys.

    Weighted by notes, not durations. Bach modulates and uses chromatic passing notes, so real
    pieces sit near 0.95, not 1; pitches drawn at random give about 8/12 (the minor set has 8).
    """
    counts = pitch_class_counts(notes)
    total = counts.sum()
    return float((SCALES @ counts).max() / total) if total else float("nan")


def empty_beat_rate(notes: Notes) -> float:
    """Share of the piece's beats in which no note starts (a held note does not fill a beat)."""
    beats = beat_codes(notes)
    return sum(1 for b in beats if not b) / len(beats) if beats else float("nan")


def _repeated_beat_rate(ids: np.ndarray) -> float:
    nonempty = ids != EMPTY_BEAT
    if not nonempty.any():
        return float("nan")
    repeated = nonempty[1:] & (ids[1:] == ids[:-1])
    return float(repeated.sum() / nonempty.sum())


def repeated_beat_rate(notes: Notes) -> float:
    """Share of non-empty beats identical to the beat before: a stuck generator repeats itself."""
    return _repeated_beat_rate(beat_ids(beat_codes(notes), {}))


# ---------------------------------------------------------------- histograms and overlap

def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin; values beyond the last edge are counted in the last bin."""
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].astype(np.float64)


def duration_counts(notes: Notes) -> np.ndarray:
    return _histogram(notes.end - notes.start, DURATION_EDGES)


def density_counts(notes: Notes) -> np.ndarray:
    """Histogram of the number of notes starting in each beat, empty beats included."""
    beats = beat_of_notes(notes)
    per_beat = np.bincount(beats[beats >= 0], minlength=beat_count(notes))
    return _histogram(per_beat, DENSITY_EDGES)


def histograms(notes: Notes) -> dict:
    """Unnormalised counts, so that a pooled reference is the sum of its pieces' counts."""
    return {"pitch_class": pitch_class_counts(notes), "duration": duration_counts(notes),
            "density": density_counts(notes)}


def overlap(a, b) -> float:
    """Sum of bin-wise minima of the two histograms, each normalised to sum 1 (1 = identical)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.sum() <= 0 or b.sum() <= 0:
        return float("nan")
    return float(np.minimum(a / a.sum(), b / b.sum()).sum())


# ---------------------------------------------------------------- copying

class BeatIndex:
    """Reference pieces as one sequence of beat ids, with where each id occurs.

    The pieces are concatenated with a separator (-1, never a beat id) between them, so a copied
    run cannot span two pieces: "verbatim in a reference piece" means within one piece.
    """

    def __init__(self, names: list, sequences: list):
        self.names = list(names)
        parts, owners = [], []
        for k, ids in enumerate(sequences):
            parts += [ids, [-1]]
            owners += [np.full(len(ids), k), [-1]]
        self.ids = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        self.owner = np.concatenate(owners).astype(np.int64) if owners else np.zeros(0, np.int64)

    def positions(self, exclude: int | None = None) -> dict:
        """beat id -> positions in the concatenated sequence, leaving out piece `exclude`."""
        usable = (self.ids >= 0) & (self.owner != (-2 if exclude is None else exclude))
        where = np.flatnonzero(usable)
        order = np.argsort(self.ids[where], kind="stable")
        where, ids = where[order], self.ids[where[order]]
        if ids.size == 0:
            return {}
        cuts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
        return {int(ids[a]): where[a:b] for a, b in zip(cuts[:-1], cuts[1:])}


def copied_runs(ids: np.ndarray, index: BeatIndex, exclude: int | None = None) -> tuple:
    """Per generated beat, the longest run ending there that occurs verbatim in one reference
    piece, and the reference piece it is found in (-1 where there is none).

    A dynamic programme over (generated beat, reference beat) that only visits matching pairs:
    run[i, j] = run[i-1, j-1] + 1 where beat i equals reference beat j. Each generated beat costs
    as many steps as the reference has copies of that beat, not the length of the reference.
    """
    where = index.positions(exclude)
    run = np.zeros(len(index.ids) + 1, dtype=np.int64)  # run[j + 1]: run ending at reference beat j
    previous = nothing = np.zeros(0, dtype=np.int64)
    longest_here = np.zeros(len(ids), dtype=np.int64)
    source_here = np.full(len(ids), -1, dtype=np.int64)
    for i, beat in enumerate(ids.tolist()):
        found = where.get(beat, nothing)
        lengths = run[found] + 1  # run[found] is the run ending one beat earlier in both
        run[previous + 1] = 0
        run[found + 1] = lengths
        previous = found
        if lengths.size:
            best = int(lengths.argmax())
            longest_here[i], source_here[i] = lengths[best], index.owner[found[best]]
    return longest_here, source_here


def copying(ids: np.ndarray, index: BeatIndex, exclude: int | None = None) -> dict:
    """The copied 4-beat share and the longest copied run of one beat-id sequence.

    A window of 4 consecutive beats is copied when the run of verbatim beats ending at its last
    beat is at least 4 long. Windows of only empty beats are left out of the share (silence is not
    a quotation), and so are runs made only of empty beats from the longest run.
    """
    longest_here, source_here = copied_runs(ids, index, exclude)
    nonempty = ids != EMPTY_BEAT
    beat = np.arange(len(ids))
    last_nonempty = np.maximum.accumulate(np.where(nonempty, beat, -1)) if len(ids) else beat
    # the longest run ending at beat i holds a non-empty beat when it reaches back to the last one
    valid = (last_nonempty >= 0) & (longest_here > beat - last_nonempty)
    longest, source = 0, None
    if valid.any():
        at = int(np.flatnonzero(valid)[longest_here[valid].argmax()])
        longest, source = int(longest_here[at]), index.names[int(source_here[at])]
    windows, share = 0, float("nan")
    if len(ids) >= WINDOW_BEATS:
        window_nonempty = np.lib.stride_tricks.sliding_window_view(nonempty, WINDOW_BEATS).any(axis=1)
        window_copied = longest_here[WINDOW_BEATS - 1:] >= WINDOW_BEATS
        windows = int(window_nonempty.sum())
        if windows:
            share = float((window_copied & window_nonempty).sum() / windows)
    return {"copied_4beat_share": share, "windows": windows, "longest_copied_run": longest,
            "longest_copied_from": source}


# ---------------------------------------------------------------- whole comparisons

class _Piece:
    """Everything about one piece that does not depend on what it is compared with."""

    def __init__(self, notes: Notes, vocabulary: dict):
        self.notes = notes
        self.ids = beat_ids(beat_codes(notes), vocabulary)
        self.counts = histograms(notes)


def piece_stats(notes: Notes, ids: np.ndarray | None = None) -> dict:
    """The statistics of one piece on its own."""
    ids = beat_ids(beat_codes(notes), {}) if ids is None else ids
    low, high, span = pitch_range(notes)
    beats = len(ids)
    return {"notes": len(notes), "beats": beats,
            "notes_per_beat": len(notes) / beats if beats else float("nan"),
            "polyphony": mean_polyphony(notes), "pitch_low": low, "pitch_high": high, "pitch_range": span,
            "scale_consistency": scale_consistency(notes),
            "empty_beat_rate": float(np.mean(ids == EMPTY_BEAT)) if beats else float("nan"),
            "repeated_beat_rate": _repeated_beat_rate(ids)}


def _score(name: str, piece: _Piece, pooled: dict, index: BeatIndex, exclude: int | None) -> dict:
    row = {"piece": name, **piece_stats(piece.notes, piece.ids)}
    for key, reference_counts in pooled.items():
        row[f"{key}_overlap"] = overlap(piece.counts[key], reference_counts)
    row.update(copying(piece.ids, index, exclude))
    return row


def summarise(rows: list) -> dict:
    """Median, min and max over pieces of every summary figure (pieces without a value left out)."""
    summary, low, high = {}, {}, {}
    for key in SUMMARY_KEYS:
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
        values = values[~np.isnan(values)]
        summary[key] = float(np.median(values)) if values.size else None
        low[key] = float(values.min()) if values.size else None
        high[key] = float(values.max()) if values.size else None
    return {"pieces": len(rows), "summary": summary, "min": low, "max": high}


def _reference(reference: dict, vocabulary: dict) -> tuple:
    if not reference:
        raise MeasureError("the reference has no pieces")
    names = list(reference)
    pieces = [_Piece(reference[name], vocabulary) for name in names]
    pooled = {key: sum(p.counts[key] for p in pieces) for key in pieces[0].counts}
    return names, pieces, pooled, BeatIndex(names, [p.ids for p in pieces])


def compare(generated: dict, reference: dict) -> dict:
    """Each generated piece against the reference: its statistics, overlaps with the pooled
    reference histograms and copying from any one reference piece; then medians over pieces.

    `generated` and `reference` map names to `Notes`. Returns {"rows", "pieces", "summary" (medians),
    "min", "max"}.
    """
    vocabulary = {}
    _, _, pooled, index = _reference(reference, vocabulary)
    rows = [_score(name, _Piece(notes, vocabulary), pooled, index, None) for name, notes in generated.items()]
    return {"rows": rows, **summarise(rows)}


def real_music_yardstick(reference: dict, held_out_names) -> dict:
    """The same figures for real pieces: each named piece against the reference without itself.

    This is the range a generator's figures should be read against: real music is not 1 on every
    overlap, and it copies nothing.
    """
    missing = [name for name in held_out_names if name not in reference]
    if missing:
        raise KeyError(f"not in the reference: {', '.join(map(str, missing))}")
    vocabulary = {}
    names, pieces, pooled, index = _reference(reference, vocabulary)
    rows = []
    for name in held_out_names:
        k = names.index(name)
        if len(names) < 2:
            raise MeasureError(f"{name}: the reference has no other piece to compare it with")
        rest = {key: counts - pieces[k].counts[key] for key, counts in pooled.items()}
        rows.append(_score(name, pieces[k], rest, index, k))
    return {"rows": rows, **summarise(rows)}
