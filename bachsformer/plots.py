"""Pictures a musician reads: a piece's piano roll laid out like a score, in systems of bars with
bar lines and numbers, octaves named on the side (C4 is middle C), and a title that says what it is.
"""
from __future__ import annotations

import numpy as np

from ludovico_vae.files import atomic_write
from ludovico_vae.midi import bar_lines

from .tonality import estimate_key, key_name

BARS_PER_SYSTEM = 16
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
PROMPT_COLOUR, MODEL_COLOUR = "#2659cc", "#c4382b"


def _in_beats(midi) -> tuple:
    """(pitch, start, end) of every note in beats, and the time signatures as (beat, num, den)."""
    to_beats = lambda seconds: midi.time_to_tick(seconds) / midi.resolution  # noqa: E731
    notes = [n for instrument in midi.instruments if not instrument.is_drum for n in instrument.notes]
    return (*_arrays(notes, to_beats), [(to_beats(ts.time), ts.numerator, ts.denominator)
                                        for ts in midi.time_signature_changes] or [(0.0, 4, 4)])


def _given(midi) -> np.ndarray:
    """Per note (in `_in_beats` order): whether it came from the user's file, beside bachsformer's own
    track (regenerated bars, a harmonisation)."""
    from .editing import NEW_TRACK
    tracks = [i for i in midi.instruments if not i.is_drum]
    mixed = any(i.name == NEW_TRACK for i in tracks)
    return np.array([mixed and i.name != NEW_TRACK for i in tracks for _ in i.notes], dtype=bool)


def _arrays(notes, to_beats) -> tuple:
    pitch = np.array([n.pitch for n in notes], dtype=np.int64)
    start = np.array([to_beats(n.start) for n in notes])
    end = np.array([to_beats(n.end) for n in notes])
    return pitch, start, end


def piano_roll_png(midi, path, title: str = "", prompt_beats: float = 0.0) -> None:
    """Draw `midi` (a PrettyMIDI) to `path`: the given notes (a prompt's, before `prompt_beats`, or
    those kept from a user's file) in blue, the model's in red, BARS_PER_SYSTEM bars to a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pitch, start, end, meters = _in_beats(midi)
    given = _given(midi) | (start < prompt_beats)
    last = float(end.max()) if len(end) else 1.0
    bars = bar_lines(meters, last)
    systems = [bars[i:i + BARS_PER_SYSTEM + 1] for i in range(0, len(bars), BARS_PER_SYSTEM)]
    low, high = (int(pitch.min()) - 1, int(pitch.max()) + 1) if len(pitch) else (59, 73)
    fig, axes = plt.subplots(len(systems), 1, figsize=(14, 1.2 + 2.0 * len(systems)), squeeze=False)
    for number, (ax, lines) in enumerate(zip(axes[:, 0], systems)):
        left = lines[0]
        right = lines[-1] if len(lines) > BARS_PER_SYSTEM else max(last, lines[-1] + (lines[-1] - lines[-2] if len(lines) > 1 else 4))
        shown = (end > left) & (start < right)
        for colour, part in ((PROMPT_COLOUR, given), (MODEL_COLOUR, ~given)):
            keep = shown & part
            ax.barh(pitch[keep], end[keep] - start[keep], left=start[keep], height=0.8, color=colour,
                    edgecolor="black", linewidth=0.3)
        for i, beat in enumerate(lines[:BARS_PER_SYSTEM]):
            ax.axvline(beat, color="0.55", linewidth=0.8)
            ax.text(beat, high + 0.6, str(number * BARS_PER_SYSTEM + i + 1), fontsize=7, va="bottom", ha="left")
        octaves = [p for p in range(low, high + 1) if p % 12 == 0]
        for p in octaves:
            ax.axhline(p - 0.5, color="0.85", linewidth=0.5, zorder=0)
        ax.set_yticks(octaves, [f"C{p // 12 - 1}" for p in octaves])
        ax.set_xlim(left, right)
        ax.set_ylim(low - 0.5, high + 2.5)
        ax.set_xticks([])
        if prompt_beats and left <= prompt_beats <= right:
            ax.axvline(prompt_beats, color=PROMPT_COLOUR, linewidth=2)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, dpi=90, format="png")
    plt.close(fig)


def describe(midi, name: str) -> str:
    """A picture's title: what the piece is called, and its key, meter and tempo as found in it."""

    pitch, start, end, meters = _in_beats(midi)
    meter = "/".join(map(str, meters[-1][1:]))
    qpm = float(midi.get_tempo_changes()[1][0]) if len(midi.get_tempo_changes()[1]) else 120.0
    return f"{name}    {key_name(estimate_key(pitch, start, end))}, {meter}, {qpm:g} bpm"
