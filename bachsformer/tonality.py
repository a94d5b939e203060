"""Keys: the 12 major and 12 minor scales as pitch-class sets, and the local key of each frame.

Generation tells the transformer its key and the evaluation measures tonality with the same
tables, so they live here, on the inference path, where both can import them.
"""
from __future__ import annotations

import numpy as np

from ludovico_vae.midi import LOWEST_PITCH

PITCH_CLASSES = 12
MAJOR = (0, 2, 4, 5, 7, 9, 11)


# The harmonic-minor scale with the natural 7th admitted beside the raised one: in Bach's minor
# the 7th is raised on the way up to the tonic and natural on the way down, so both belong to the
# key. With it, the scale consistency of each Goldberg file against the other 30 is 0.949
# [0.82-0.98], as docs/evaluation.md gives it; the strict seven-note scale gives 0.929 [0.75-0.96].
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 10, 11)


def _scale_masks() -> np.ndarray:
    """(24, 12) membership of each pitch class in the 12 major and 12 harmonic-minor scales."""
    masks = np.zeros((2 * PITCH_CLASSES, PITCH_CLASSES), dtype=bool)
    for k, scale in enumerate((MAJOR, HARMONIC_MINOR)):
        for tonic in range(PITCH_CLASSES):
            masks[k * PITCH_CLASSES + tonic, [(tonic + step) % PITCH_CLASSES for step in scale]] = True
    return masks


SCALES = _scale_masks()


# A frame's local key is the best of the 24 scales over the notes struck in the KEY_WINDOW frames
# centred on it (four bars of 4/4): long enough to outvote passing chromatic notes, short enough
# to follow a modulation.
KEY_WINDOW = 16
NO_KEY = len(SCALES)  # the local key of a frame with no note struck near it


def local_keys(frames: np.ndarray) -> np.ndarray:
    """(N,) the local key of each frame `(N, 2, 88, T)`: an index into `SCALES`, or
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


# Key profiles: how much each scale degree sounds in a major and in a minor key. Correlated with a
# piece's duration-weighted pitch classes they give its key (the Krumhansl-Schmuckler method). The
# Bellman-Budge profiles (Bellman 2005, from Budge's chord statistics) name the key of all 31
# Goldberg files and of 91% of 99 Bach chorales (final bass against key signature), where
# Krumhansl and Kessler's ratings get 28 and 82% (docs/evaluation.md). Keys are numbered as SCALES:
# major 0-11, minor 12-23, each by its tonic's pitch class.
MAJOR_PROFILE = np.array([16.80, 0.86, 12.95, 1.41, 13.49, 11.93, 1.25, 20.28, 1.80, 8.04, 0.62, 10.57])
MINOR_PROFILE = np.array([18.16, 0.69, 12.99, 13.34, 1.07, 11.15, 1.38, 21.07, 7.49, 1.53, 0.92, 10.21])
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
_SPELLINGS = {"C#": 1, "DB": 1, "D#": 3, "EB": 3, "FB": 4, "E#": 5, "F#": 6, "GB": 6, "G#": 8, "AB": 8,
              "A#": 10, "BB": 10, "CB": 11, "B#": 0, "C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _profiles() -> np.ndarray:
    """(24, 12) each key's profile, rotated to its tonic."""
    return np.stack([np.roll(profile, tonic) for profile in (MAJOR_PROFILE, MINOR_PROFILE)
                     for tonic in range(PITCH_CLASSES)])


KEY_PROFILES = _profiles()


def pitch_class_weights(pitch: np.ndarray, start: np.ndarray, end: np.ndarray,
                        window: tuple | None = None) -> np.ndarray:
    """(12,) beats each pitch class sounds, inside `window` (from, to) in beats if given."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    if window is not None:
        start, end = np.maximum(start, window[0]), np.minimum(end, window[1])
    weights = np.clip(end - start, 0, None)
    return np.bincount(np.asarray(pitch, dtype=np.int64) % PITCH_CLASSES, weights=weights, minlength=PITCH_CLASSES)


def key_of_weights(weights: np.ndarray) -> int | None:
    """The key (0-23) whose profile best correlates with pitch-class `weights`; None if silent."""
    if not np.any(weights > 0) or np.ptp(weights) == 0:
        return None
    centred = weights - weights.mean()
    profiles = KEY_PROFILES - KEY_PROFILES.mean(axis=1, keepdims=True)
    scores = profiles @ centred / (np.linalg.norm(profiles, axis=1) * np.linalg.norm(centred))
    return int(np.argmax(scores))


def estimate_key(pitch, start, end, window: tuple | None = None) -> int | None:
    """The key (0-23) of notes given as arrays (pitch, start and end in beats), by key profiles."""
    return key_of_weights(pitch_class_weights(pitch, start, end, window))


def tonic(key: int) -> int:
    """The pitch class (0 = C) of a key's tonic."""
    return key % PITCH_CLASSES


def is_minor(key: int) -> bool:
    """Keys 12-23 are minor."""
    return key >= PITCH_CLASSES


def key_name(key: int | None) -> str:
    """12 -> "C minor"; None -> "-"."""
    return "-" if key is None else f"{NOTE_NAMES[tonic(key)]} {MODES[is_minor(key)]}"


def parse_key(text: str) -> int:
    """ "D minor", "F# major", "Bb" (major), "g minor" -> the key (0-23); ValueError names the text."""
    words = text.strip().split()
    mode = words[1].lower() if len(words) == 2 else "major"
    if not 1 <= len(words) <= 2 or words[0].upper() not in _SPELLINGS or mode not in MODES:
        raise ValueError(f"{text!r} is not a key: write a tonic and a mode, such as 'D minor' or 'F# major'")
    return _SPELLINGS[words[0].upper()] + PITCH_CLASSES * MODES.index(mode)


def fifths(key: int) -> int:
    """The key signature: sharps (positive) or flats (negative), -5 to 6; a minor key shares its
    relative major's."""
    major_tonic = (tonic(key) + 3 * is_minor(key)) % PITCH_CLASSES
    return (major_tonic * 7 + 5) % PITCH_CLASSES - 5


def closely_related(a: int, b: int) -> bool:
    """Keys whose signatures are at most one accidental apart (G major: C, D, E minor, A minor, B minor)."""
    return abs(fifths(a) - fifths(b)) <= 1 or abs(fifths(a) - fifths(b)) == 11


# chord templates by their intervals above the root: major, minor and diminished triads, dominant
# and minor sevenths
CHORDS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 7, 10), (0, 3, 7, 10))


def lowest_sounding(pitch, start, end, window: tuple) -> int | None:
    """The lowest pitch sounding in `window` (from, to), in beats; None if nothing does."""
    pitch, start, end = np.asarray(pitch), np.asarray(start), np.asarray(end)
    sounding = (start < window[1]) & (end > window[0])
    return int(pitch[sounding].min()) if sounding.any() else None


def chord_root(pitch, start, end, window: tuple) -> int | None:
    """The root (pitch class) of the chord sounding in `window`: the template whose chord tones
    hold the most duration, less what sounds outside them; among equals, the one whose root is the
    bass, then the one whose root sounds longest. None if nothing sounds."""
    weights = pitch_class_weights(pitch, start, end, window)
    if not weights.any():
        return None
    bass = lowest_sounding(pitch, start, end, window) % PITCH_CLASSES
    total, best, best_score = weights.sum(), None, None
    for shape in CHORDS:
        for root in range(PITCH_CLASSES):
            inside = weights[[(root + interval) % PITCH_CLASSES for interval in shape]].sum()
            score = (round(2 * inside - total, 9), root == bass, weights[root], -len(shape))
            if best_score is None or score > best_score:
                best, best_score = root, score
    return best


CADENCE_BEATS = 0.25  # a half's closing chord is the one sounding in its last bar's first sixteenth


def closes_on_i_or_v(pitch, start, end, key: int, last_bar: float) -> bool:
    """Whether the chord on the downbeat of the bar starting at `last_bar` has the tonic or the
    dominant as its root: the cadence arrives there, and the rest of the bar runs on."""
    root = chord_root(pitch, start, end, (last_bar, last_bar + CADENCE_BEATS))
    return root in (tonic(key), (tonic(key) + 7) % PITCH_CLASSES)


def on_tonic_chord(pitch, start, end, key: int, bar: float) -> bool:
    """Whether the chord on the downbeat of the bar starting at `bar` is the tonic in root position."""
    window = (bar, bar + CADENCE_BEATS)
    bass = lowest_sounding(pitch, start, end, window)
    return chord_root(pitch, start, end, window) == tonic(key) and bass is not None and bass % PITCH_CLASSES == tonic(key)


def ends_on_tonic(pitch, start, end, key: int, min_final_beats: float = 0.0) -> bool:
    """Whether the chord of the beat holding the last onset has the key's tonic as its root and
    lowest note, its last note lasting at least `min_final_beats`."""
    pitch, start, end = np.asarray(pitch), np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    if not len(pitch):
        return False
    last = float(start.max())
    window = (np.floor(last + 1e-9), max(np.floor(last + 1e-9) + 1, float(end.max())))
    bass = lowest_sounding(pitch, start, end, window)
    return (chord_root(pitch, start, end, window) == tonic(key) and bass is not None and bass % PITCH_CLASSES == tonic(key)
            and float(end.max()) - last >= min_final_beats)


PERFECT = (0, 7)  # unisons and octaves, fifths: interval classes in semitones modulo 12


def similar_motion(before: tuple, after: tuple) -> bool:
    """Whether two voices (top, bass), two keys apart at both ends, both move the same way; a pair
    on one key (the top alone sounding) is one voice, not two."""
    (top0, bass0), (top1, bass1) = before, after
    return top0 != bass0 and top1 != bass1 and top0 != top1 and bass0 != bass1 and (top1 > top0) == (bass1 > bass0)


def is_parallel_perfect(before: tuple, after: tuple) -> bool:
    """Whether outer voices (top, bass) move in similar motion (`similar_motion`) from a perfect
    fifth or octave (compound intervals included) to the same interval."""
    (top0, bass0), (top1, bass1) = before, after
    interval = (top0 - bass0) % 12
    return similar_motion(before, after) and interval == (top1 - bass1) % 12 and interval in PERFECT


def parallel_perfect(pairs: list) -> tuple:
    """(parallel fifths and octaves, steps in similar motion) along outer-voice pairs [(top, bass), ...]."""
    steps = list(zip(pairs, pairs[1:]))
    return sum(is_parallel_perfect(a, b) for a, b in steps), sum(similar_motion(a, b) for a, b in steps)
