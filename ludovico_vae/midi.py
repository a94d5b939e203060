"""Quantised MIDI as notes measured in beats, read and written through pretty_midi.

Everything downstream works in beats (quarter notes), never seconds: a beat is the file's ticks
divided by its own ticks per beat, so tempo changes cannot blur the grid. This module owns the
boundary with MIDI files: every failure to read one becomes a `MidiError` naming the file.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
import pretty_midi

from .files import file_head

LOWEST_PITCH = 21   # A0, the lowest key of a piano
HIGHEST_PITCH = 108  # C8, the highest
HARPSICHORD = 6      # General MIDI program (zero-based) of the Goldberg files and our default
DEFAULT_VELOCITY = 80
DEFAULT_QPM = 120.0
MAX_NOTES = 2_000_000  # a file with more notes than this is refused rather than exhausting memory
MAX_DENOMINATOR = 64  # a larger time-signature denominator only comes from a corrupt file
META_TYPES = ("set_tempo", "time_signature", "key_signature")


class MidiError(ValueError):
    """A MIDI file that cannot be used, with the file and the reason in one line."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class Notes:
    """Parallel arrays of notes: MIDI pitch, start and end in beats."""

    pitch: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __post_init__(self):
        self.pitch = np.asarray(self.pitch, dtype=np.int64)
        self.start = np.asarray(self.start, dtype=np.float64)
        self.end = np.asarray(self.end, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.pitch)

    def select(self, mask) -> "Notes":
        return Notes(self.pitch[mask], self.start[mask], self.end[mask])

    def shifted(self, beats: float) -> "Notes":
        return Notes(self.pitch, self.start + beats, self.end + beats)

    def sorted(self) -> "Notes":
        order = np.lexsort((self.pitch, self.start))
        return self.select(order)


@dataclass
class Score:
    """The notes of one MIDI file with what is needed to write it back: tempo and meter."""

    notes: Notes
    ticks_per_beat: int = 480
    tempos: list = field(default_factory=lambda: [(0.0, DEFAULT_QPM)])  # (beat, quarter notes per minute)
    time_signatures: list = field(default_factory=lambda: [(0.0, 4, 4)])  # (beat, numerator, denominator)
    source: str = ""
    drum_notes: int = 0
    # notes on the drum channel (10) whose track names a melodic program: a part put there by
    # mistake (a viola in some Brandenburg files), dropped with the drums but worth saying
    melodic_drum_notes: int = 0


def keyboard_reference(notes: Notes) -> Notes:
    """What a keyboard can play of `notes`: one note per key at a time.

    Notes of the same pitch and onset merge (the longer is kept), and a note still sounding when
    its key is struck again ends at that new onset. A piano roll holds exactly this much, so it is
    the reference that conversions are measured against. Zero-length notes are dropped.
    """
    notes = notes.select(notes.end > notes.start)
    order = np.lexsort((-notes.end, notes.start, notes.pitch))  # by pitch, onset, longest first
    notes = notes.select(order)
    p, s = notes.pitch, notes.start
    first_at_onset = np.ones(len(p), dtype=bool)
    first_at_onset[1:] = (p[1:] != p[:-1]) | (s[1:] != s[:-1])
    notes = notes.select(first_at_onset)
    p, s, e = notes.pitch, notes.start, notes.end.copy()
    same_key_next = np.zeros(len(p), dtype=bool)
    same_key_next[:-1] = p[1:] == p[:-1]
    e[same_key_next] = np.minimum(e[same_key_next], s[1:][same_key_next[:-1]])
    return Notes(p, s, e)


def _beats_of_seconds(pm: pretty_midi.PrettyMIDI, seconds: np.ndarray) -> np.ndarray:
    """Map times in seconds back to beats through the file's tempo map (piecewise linear)."""
    change_times, qpms = pm.get_tempo_changes()
    change_beats = np.concatenate([[0.0], np.cumsum(np.diff(change_times) * qpms[:-1] / 60.0)])
    seg = np.clip(np.searchsorted(change_times, seconds, side="right") - 1, 0, len(change_times) - 1)
    return change_beats[seg] + (seconds - change_times[seg]) * qpms[seg] / 60.0


def beats_of_seconds(pm: pretty_midi.PrettyMIDI, seconds) -> np.ndarray:
    """Times in seconds of `pm` as beats on its own ticks, as `read_midi` gives them."""
    return _on_ticks(_beats_of_seconds(pm, np.asarray(seconds, dtype=np.float64)), int(pm.resolution))


def seconds_of_beats(pm: pretty_midi.PrettyMIDI, beats) -> np.ndarray:
    """Beats of `pm` as times in seconds through its tempo map: `beats_of_seconds` turned round."""
    change_times, qpms = pm.get_tempo_changes()
    change_beats = np.concatenate([[0.0], np.cumsum(np.diff(change_times) * qpms[:-1] / 60.0)])
    beats = np.asarray(beats, dtype=np.float64)
    seg = np.clip(np.searchsorted(change_beats, beats, side="right") - 1, 0, len(change_beats) - 1)
    return change_times[seg] + (beats - change_beats[seg]) * 60.0 / qpms[seg]


def _on_ticks(beats: np.ndarray, ticks_per_beat: int) -> np.ndarray:
    """Snap beats computed from seconds back onto the file's exact ticks."""
    return np.floor(beats * ticks_per_beat + 0.5) / ticks_per_beat


def _absolute(track) -> list:
    tick, events = 0, []
    for message in track:
        tick += message.time
        events.append((tick, message))
    return events


def _track(events) -> mido.MidiTrack:
    track, last = mido.MidiTrack(), 0
    for tick, message in events:
        track.append(message.copy(time=tick - last))
        last = tick
    return track


def _gather_meta_events(midi: mido.MidiFile) -> None:
    """Move tempo, meter and key events of every track into the first one.

    pretty_midi reads them from the first track only, yet type-1 files keep them on any track.
    """
    if not any(m.type in META_TYPES for track in midi.tracks[1:] for m in track):
        return
    moved = []
    for i in range(1, len(midi.tracks)):
        events = _absolute(midi.tracks[i])
        if any(m.type in META_TYPES for _, m in events):
            moved += [(t, m) for t, m in events if m.type in META_TYPES]
            midi.tracks[i] = _track([(t, m) for t, m in events if m.type not in META_TYPES])
    first = [(t, m) for t, m in _absolute(midi.tracks[0]) if m.type != "end_of_track"]
    merged = sorted(first + moved, key=lambda event: event[0])  # stable: the first track's own come first
    end = max([t for t, _ in merged], default=0)
    midi.tracks[0] = _track(merged + [(end, mido.MetaMessage("end_of_track"))])


def parse_midi(path) -> pretty_midi.PrettyMIDI:
    """The file as pretty_midi reads it, with every track's tempo and meter events seen; MidiError
    naming the file if it is not MIDI or is corrupt."""
    path = Path(path)
    try:
        head = file_head(path, 4, "no such file", "a MIDI file")
    except ValueError as e:
        raise MidiError(path, str(e)) from None
    if head != b"MThd":
        raise MidiError(path, "not a MIDI file (no MThd header)")
    try:
        with warnings.catch_warnings():
            # type-1 files commonly keep tempo and meter events on tracks other than the first
            warnings.simplefilter("ignore", RuntimeWarning)
            midi = mido.MidiFile(str(path))
            _gather_meta_events(midi)
            return pretty_midi.PrettyMIDI(mido_object=midi)
    except MemoryError:
        raise MidiError(path, "too large to read") from None
    except Exception as e:  # mido and pretty_midi raise many types for corrupt data
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MidiError(path, f"corrupt or truncated MIDI ({reason})") from None


def read_midi(path) -> Score:
    """Read a MIDI file (type 0 or 1, any resolution, tracks, channels, tempo and meter changes)."""
    path = Path(path)
    pm = parse_midi(path)
    tpb = int(pm.resolution)
    if tpb <= 0:
        raise MidiError(path, f"invalid resolution of {tpb} ticks per beat")
    pitched = [inst for inst in pm.instruments if not inst.is_drum]
    drum_notes = sum(len(inst.notes) for inst in pm.instruments if inst.is_drum)
    melodic_drum_notes = sum(len(inst.notes) for inst in pm.instruments if inst.is_drum and inst.program != 0)
    count = sum(len(inst.notes) for inst in pitched)
    if count == 0:
        raise MidiError(path, "only drum notes, nothing to play on a keyboard" if drum_notes else "no notes")
    if count > MAX_NOTES:
        raise MidiError(path, f"{count} notes, more than the limit of {MAX_NOTES}")
    raw = np.array([(n.pitch, n.start, n.end) for inst in pitched for n in inst.notes], dtype=np.float64)
    start = _on_ticks(_beats_of_seconds(pm, raw[:, 1]), tpb)
    end = _on_ticks(_beats_of_seconds(pm, raw[:, 2]), tpb)
    change_times, qpms = pm.get_tempo_changes()
    tempo_beats = _on_ticks(_beats_of_seconds(pm, change_times), tpb)
    tempos = [(float(b), float(q)) for b, q in zip(tempo_beats, qpms)] or [(0.0, DEFAULT_QPM)]
    signatures = []
    for ts in pm.time_signature_changes:
        if ts.denominator > MAX_DENOMINATOR:
            raise MidiError(path, f"corrupt time signature {ts.numerator}/{ts.denominator}")
        beat = float(_on_ticks(_beats_of_seconds(pm, np.array([ts.time])), tpb)[0])
        if signatures and signatures[-1][0] == beat:
            signatures.pop()  # of two signatures at the same moment the later one holds
        signatures.append((beat, int(ts.numerator), int(ts.denominator)))
    if not signatures or signatures[0][0] > 0:
        signatures.insert(0, (0.0, 4, 4))  # the MIDI default before any time signature event
    return Score(Notes(raw[:, 0], start, end), tpb, tempos, signatures, str(path), drum_notes, melodic_drum_notes)


def bar_lines(time_signatures: list, end_beat: float) -> np.ndarray:
    """Beats where bars begin, from the time signature changes up to `end_beat`."""
    starts = []
    for i, (beat, num, den) in enumerate(time_signatures):
        until = time_signatures[i + 1][0] if i + 1 < len(time_signatures) else max(end_beat, beat)
        bar = num * 4.0 / den
        n = max(1, math.ceil((until - beat) / bar - 1e-9))
        starts.append(beat + bar * np.arange(n))
    lines = np.concatenate(starts)
    return lines[(lines < max(end_beat, 1e-9)) | (np.arange(len(lines)) == 0)]


def score_to_midi(score: Score, program: int = HARPSICHORD, velocity: int = DEFAULT_VELOCITY,
                  resolution: int | None = None, name: str = "bachsformer") -> pretty_midi.PrettyMIDI:
    """Build a MIDI file of one keyboard instrument with the score's tempo and meter changes.

    `resolution` (ticks per beat) defaults to the score's own.
    """
    resolution = resolution or score.ticks_per_beat
    if not 0 <= program <= 127:
        raise ValueError(f"program must be 0-127, got {program}")
    if not 1 <= velocity <= 127:
        raise ValueError(f"velocity must be 1-127, got {velocity}")
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=score.tempos[0][1])
    # pretty_midi has no public way to add tempo changes; its writer reads this list of
    # (tick, seconds per tick) and its tick/time conversions are rebuilt from it below.
    pm._tick_scales = [(int(round(beat * resolution)), 60.0 / (qpm * resolution)) for beat, qpm in score.tempos]
    last_tick = int(round(max([float(score.notes.end.max(initial=0.0))] + [b for b, _ in score.tempos]) * resolution))
    pm._update_tick_to_time(last_tick + 1)
    for beat, num, den in score.time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, pm.tick_to_time(int(round(beat * resolution)))))
    instrument = pretty_midi.Instrument(program=program, name=name)
    tick_times = pm.tick_to_time
    for p, s, e in zip(score.notes.pitch.tolist(), score.notes.start.tolist(), score.notes.end.tolist()):
        instrument.notes.append(pretty_midi.Note(velocity, p, tick_times(int(round(s * resolution))),
                                                 tick_times(int(round(e * resolution)))))
    pm.instruments.append(instrument)
    return pm


def _spans(events: list, start: float, end: float) -> list:
    """(value, beats in force within [start, end)) of each `(beat, *value)` event."""
    spans = []
    for i, (beat, *value) in enumerate(events):
        until = events[i + 1][0] if i + 1 < len(events) else end
        beats = min(until, end) - max(beat, start)
        if beats > 0:
            spans.append((tuple(value), beats))
    return spans


def body_meter(time_signatures: list, start: float, end: float) -> tuple:
    """(numerator, denominator) in force over the most beats of [start, end): the meter a piece is
    written in, not a short final bar."""
    totals = {}
    for meter, beats in _spans(time_signatures, start, end):
        totals[meter] = totals.get(meter, 0.0) + beats
    return max(totals, key=totals.get) if totals else tuple(time_signatures[-1][1:])


def median_tempo(tempos: list, start: float, end: float) -> float:
    """The tempo in force over the median beat of [start, end), in quarter notes a minute: a piece's
    tempo, not its closing ritardando."""
    spans = _spans(tempos, start, end)
    if not spans:
        return float(tempos[-1][1])
    qpm = np.array([value[0] for value, _ in spans])
    beats = np.array([b for _, b in spans])
    order = np.argsort(qpm)
    middle = np.searchsorted(np.cumsum(beats[order]), beats.sum() / 2)
    return float(qpm[order][min(middle, len(order) - 1)])

