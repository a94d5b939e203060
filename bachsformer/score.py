"""A piece as a score a musician reads: MusicXML for a keyboard (two staves, bars, key and time
signature, voices, durations spelled as notes, dots, triplets and ties), and the score engraved
as SVG by verovio (the optional `[score]` extra). MuseScore, Finale, Sibelius and Dorico open the
MusicXML.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pretty_midi

from ludovico_vae.files import atomic_write
from ludovico_vae.midi import bar_lines, beats_of_seconds, seconds_of_beats

from .errors import MissingExtraError
from .tonality import estimate_key, fifths, is_minor

SPLIT_PITCH = 60  # middle C and above on the upper staff, the rest on the lower
DIVISIONS = 48  # per quarter note: the frame grid's 24 steps, and 64th-note triplets, are whole numbers
# (divisions, type, dots, triplet) of every written value, longest first; any even number of
# divisions is a sum of them, so every grid duration can be written with ties
VALUES = [(192, "whole", 0, False), (144, "half", 1, False), (96, "half", 0, False), (72, "quarter", 1, False),
          (64, "half", 0, True), (48, "quarter", 0, False), (36, "eighth", 1, False), (32, "quarter", 0, True),
          (24, "eighth", 0, False), (18, "16th", 1, False), (16, "eighth", 0, True), (12, "16th", 0, False),
          (8, "16th", 0, True), (6, "32nd", 0, False), (4, "32nd", 0, True), (3, "64th", 0, False),
          (2, "64th", 0, True)]
STEPS = ("C", "C", "D", "D", "E", "F", "F", "G", "G", "A", "A", "B")
SHARP_NAMES = [(s, 1 if i in (1, 3, 6, 8, 10) else 0) for i, s in enumerate(STEPS)]
FLAT_NAMES = [("C", 0), ("D", -1), ("D", 0), ("E", -1), ("E", 0), ("F", 0), ("G", -1), ("G", 0), ("A", -1), ("A", 0),
              ("B", -1), ("B", 0)]
MODE_NAMES = ("major", "minor")
TRIPLET = "<time-modification>"
MIN_REPEAT_BARS, MAX_REPEAT_BARS = 8, 64  # a section written out twice, written once with repeat signs
REPEAT_START = '<barline location="left"><bar-style>heavy-light</bar-style><repeat direction="forward"/></barline>'
REPEAT_END = '<barline location="right"><bar-style>light-heavy</bar-style><repeat direction="backward"/></barline>'
ENDING_START = '<barline location="left"><ending number="{0}" type="start"/></barline>'
ENDING_REPEAT = ('<barline location="right"><bar-style>light-heavy</bar-style><ending number="{0}" type="stop"/>'
                 '<repeat direction="backward"/></barline>')
ENDING_OPEN = '<barline location="right"><ending number="{0}" type="discontinue"/></barline>'
ENDING_FINAL = '<barline location="right"><bar-style>light-heavy</bar-style><ending number="{0}" type="stop"/></barline>'


def piece_notes(midi: pretty_midi.PrettyMIDI) -> tuple:
    """(pitch, start, end) arrays in divisions of every note but drums, on a grid of two divisions
    (1/24 beat, the frame grid), the shortest written value."""
    notes = [(n.pitch, n.start, n.end) for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    pitch = np.array([n[0] for n in notes], dtype=np.int64)
    start = np.round(beats_of_seconds(midi, [n[1] for n in notes]) * DIVISIONS / 2).astype(np.int64) * 2
    end = np.round(beats_of_seconds(midi, [n[2] for n in notes]) * DIVISIONS / 2).astype(np.int64) * 2
    return pitch, start, np.maximum(end, start + 2)


@dataclass
class WrittenScore:
    """A piece's score, and when each of its written notes sounds."""

    musicxml: str
    timemap: list  # [{"ms", "on", "off"}]: ids of the written notes that start and stop sounding, in time order


def musicxml_text(midi: pretty_midi.PrettyMIDI, title: str | None = None) -> str:
    """The MusicXML of `midi`: one keyboard part of two staves in the key its notes are in."""
    return written_score(midi, title).musicxml


def written_score(midi: pretty_midi.PrettyMIDI, title: str | None = None) -> WrittenScore:
    """The score of `midi` (see `musicxml_text`), a section written out twice written once between
    repeat signs (`_folded`); its timemap says, in the MIDI's own seconds, which written notes
    sound, so that a page playing the audio can mark them in the engraved score."""
    pitch, start, end = piece_notes(midi)
    key = estimate_key(pitch, start / DIVISIONS, end / DIVISIONS) if len(pitch) else None
    key_fifths = fifths(key) if key is not None else 0
    signatures = [(float(beats_of_seconds(midi, [ts.time])[0]), ts.numerator, ts.denominator)
                  for ts in midi.time_signature_changes] or [(0.0, 4, 4)]
    last = int(end.max(initial=DIVISIONS))
    bars = [int(round(b * DIVISIONS)) for b in bar_lines(signatures, last / DIVISIONS)] + [None]
    tempo = float(midi.get_tempo_changes()[1][0])
    heads, bodies, meters, sounding = [], [], [], []
    for number, (bar_start, bar_end) in enumerate(zip(bars[:-1], bars[1:]), 1):
        num, den = _signature_at(signatures, bar_start / DIVISIONS)
        bar_end = bar_end if bar_end is not None else max(last, bar_start + num * 4 * DIVISIONS // den)
        attributes = ""
        if number == 1 or _signature_at(signatures, bars[number - 2] / DIVISIONS) != (num, den):
            attributes = (f"<attributes><divisions>{DIVISIONS}</divisions>" if number == 1 else "<attributes>")
            if number == 1:
                mode = MODE_NAMES[is_minor(key)] if key is not None else "major"
                attributes += f"<key><fifths>{key_fifths}</fifths><mode>{mode}</mode></key>"
            attributes += f"<time><beats>{num}</beats><beat-type>{den}</beat-type></time>"
            if number == 1:
                attributes += ("<staves>2</staves><clef number=\"1\"><sign>G</sign><line>2</line></clef>"
                               "<clef number=\"2\"><sign>F</sign><line>4</line></clef>")
            attributes += "</attributes>"
            if number == 1:
                attributes += (f"<direction placement=\"above\"><direction-type><metronome><beat-unit>quarter</beat-unit>"
                               f"<per-minute>{tempo:g}</per-minute></metronome></direction-type>"
                               f"<sound tempo=\"{tempo:g}\"/></direction>")
        beat = 4 * DIVISIONS // den
        body, notes = [], []
        voice_number = 0
        for staff in (1, 2):
            on_staff = (pitch >= SPLIT_PITCH) if staff == 1 else (pitch < SPLIT_PITCH)
            inside = on_staff & (start < bar_end) & (end > bar_start)
            voices = _voices(pitch[inside], np.maximum(start[inside], bar_start) - bar_start,
                             np.minimum(end[inside], bar_end) - bar_start, start[inside] < bar_start,
                             end[inside] > bar_end)
            for v, events in enumerate(voices or [[]]):
                voice_number += 1
                if body:
                    body.append(f"<backup><duration>{bar_end - bar_start}</duration></backup>")
                body += _voice_xml(events, bar_end - bar_start, beat, voice_number, staff, key_fifths,
                                   visible_rests=v == 0, sounding=notes)
        heads.append(attributes)
        bodies.append("".join(body))
        meters.append((num, den, bar_end - bar_start))
        sounding.append([(k, bar_start + s, bar_start + e) for k, s, e in notes])
    written, shown_as = _folded(heads, bodies, meters)
    measures = []
    for number, (bar, left, right) in enumerate(written, 1):
        measures.append(f"<measure number=\"{number}\">{left}{heads[bar]}{bodies[bar].replace('{bar}', str(bar))}"
                        f"{right}</measure>")
    work = f"<work><work-title>{escape(title)}</work-title></work>" if title else ""
    musicxml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<!DOCTYPE score-partwise PUBLIC \"-//Recordare//DTD MusicXML 4.0 Partwise//EN\" "
                "\"http://www.musicxml.org/dtds/partwise.dtd\">\n"
                f"<score-partwise version=\"4.0\">{work}<identification><encoding><software>bachsformer</software>"
                "</encoding></identification><part-list><score-part id=\"P1\"><part-name>Keyboard</part-name>"
                f"</score-part></part-list><part id=\"P1\">{''.join(measures)}</part></score-partwise>\n")
    return WrittenScore(musicxml, _timemap(midi, sounding, shown_as))


def _timemap(midi: pretty_midi.PrettyMIDI, sounding: list, shown_as: list) -> list:
    """[{"ms", "on", "off"}] from each bar's notes [(K, start, end)] in divisions from the piece's
    start; a bar played again is marked where it is written (`shown_as`)."""
    events = {}
    for bar, notes in enumerate(sounding):
        for k, s, e in notes:
            name = f"n{shown_as[bar]}-{k}"
            events.setdefault(s, ([], []))[0].append(name)
            events.setdefault(e, ([], []))[1].append(name)
    times = sorted(events)
    seconds = seconds_of_beats(midi, np.array(times, dtype=np.float64) / DIVISIONS)
    return [{"ms": round(1000 * float(t), 1), "on": events[d][0], "off": events[d][1]} for d, t in zip(times, seconds)]


def _folded(heads: list, bodies: list, meters: list) -> list:
    """([(bar, left barline XML, right barline XML)] of the bars to write, the written bar each bar
    is played from): a section written out twice note for note (MIN_REPEAT_BARS or more, as the
    halves of a binary piece are) is written once between repeat signs; where only its last bar
    differs, that bar is written twice, as first and second endings."""
    out, i, n = [], 0, len(bodies)
    shown_as = list(range(n))  # the written bar each bar is played from
    same = lambda a, b: bodies[a] == bodies[b] and meters[a] == meters[b]  # noqa: E731
    while i < n:
        for length in range(min(MAX_REPEAT_BARS, (n - i) // 2), MIN_REPEAT_BARS - 1, -1):
            if (all(same(i + k, i + length + k) for k in range(length - 1))
                    and not any(heads[i + 1:i + 2 * length])):  # no change of meter inside: a repeat restates none
                break
        else:
            out.append((i, "", ""))
            i += 1
            continue
        last, again, after = i + length - 1, i + 2 * length - 1, i + 2 * length < n
        out.append((i, REPEAT_START, ""))
        out += [(bar, "", "") for bar in range(i + 1, last)]
        shown_as[i + length:again] = range(i, last)
        if same(last, again):
            out.append((last, "", REPEAT_END))
            shown_as[again] = last
        else:
            out.append((last, ENDING_START.format(1), ENDING_REPEAT.format(1)))
            out.append((again, ENDING_START.format(2), (ENDING_OPEN if after else ENDING_FINAL).format(2)))
        i += 2 * length
    return out, shown_as


def write_musicxml(midi: pretty_midi.PrettyMIDI, path, title: str | None = None) -> None:
    """Write the score of `midi` as MusicXML to `path`, atomically."""
    with atomic_write(path) as f:
        f.write(musicxml_text(midi, title).encode())


_ENGRAVER = threading.Lock()  # verovio's fonts and resources are process-wide: one engraving at a time
_toolkits = []


def engrave_svg(musicxml: str, width: int = 2100, scale: int = 40) -> list:
    """The score engraved by verovio: one SVG text per page; each written note keeps its MusicXML
    id, which `WrittenScore.timemap` names."""
    try:
        import verovio
    except ImportError:
        raise MissingExtraError("an engraved score needs verovio: pip install -e \".[score]\"") from None
    with _ENGRAVER:
        if not _toolkits:  # one toolkit for the process, its resources loaded once
            toolkit = verovio.toolkit(False)
            if not toolkit.setResourcePath(str(Path(verovio.__file__).parent / "data")):
                raise MissingExtraError("verovio is installed without its fonts; reinstall verovio")
            _toolkits.append(toolkit)
        toolkit = _toolkits[0]
        toolkit.setOptions({"pageWidth": width, "scale": scale, "adjustPageHeight": True, "footer": "none",
                            "header": "auto"})
        if not toolkit.loadData(musicxml):
            raise ValueError("verovio could not read the MusicXML")
        return [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]


def _signature_at(signatures: list, beat: float) -> tuple:
    current = signatures[0][1:]
    for at, num, den in signatures:
        if at <= beat + 1e-9:
            current = (num, den)
    return current


def _voices(pitch, start, end, tied_in, tied_on) -> list:
    """Notes of one staff in one bar (times from the bar's start) as voices: lists of chords
    (start, end, pitches, tied_in, tied_on), none overlapping another in its voice."""
    chords = {}
    for p, s, e, a, b in zip(pitch.tolist(), start.tolist(), end.tolist(), tied_in.tolist(), tied_on.tolist()):
        chords.setdefault((s, e, a, b), []).append(p)
    voices = []
    for (s, e, a, b), pitches in sorted(chords.items(), key=lambda item: (item[0][0], -max(item[1]))):
        for voice in voices:
            if voice[-1][1] <= s:
                voice.append((s, e, sorted(pitches), a, b))
                break
        else:
            voices.append([(s, e, sorted(pitches), a, b)])
    return voices


def _voice_xml(events: list, bar_length: int, beat: int, voice: int, staff: int, key_fifths: int,
               visible_rests: bool, sounding: list) -> list:
    """MusicXML elements of one voice in one bar: its chords, rests (visible in a staff's first
    voice, skipped over in the others), ties where a note is written as several values, and
    brackets over triplets. Each written note gets the id "n{bar}-K" (the bar filled in when the
    bar is written) and its (K, start, end) in the bar is appended to `sounding`."""
    units, position = [], 0  # units: (divisions, triplet, [note XML with a {tuplet} slot]) or a <forward>
    for s, e, pitches, tied_in, tied_on in events + [(bar_length, bar_length, [], False, False)]:
        if s > position:
            if visible_rests:
                for length, value in _written(position, s, beat):
                    units.append((length, TRIPLET in value, [f"<note><rest/><duration>{length}</duration><voice>{voice}"
                                                             f"</voice>{value}<staff>{staff}</staff>{{tuplet}}</note>"]))
            else:
                units.append((s - position, False, [f"<forward><duration>{s - position}</duration><voice>{voice}</voice>"
                                                    f"<staff>{staff}</staff></forward>"]))
        if not pitches:
            break
        pieces, at = _written(s, e, beat), s
        for i, (length, value) in enumerate(pieces):
            tie_stop, tie_start = i > 0 or tied_in, i < len(pieces) - 1 or tied_on
            ties = ("<tie type=\"stop\"/>" if tie_stop else "") + ("<tie type=\"start\"/>" if tie_start else "")
            tied = ("<tied type=\"stop\"/>" if tie_stop else "") + ("<tied type=\"start\"/>" if tie_start else "")
            chord = []
            for j, p in enumerate(pitches):
                step, alter = _spelling(p, key_fifths)
                sounding.append((len(sounding), at, at + length))
                chord.append(f"<note id=\"n{{bar}}-{len(sounding) - 1}\">{'<chord/>' if j else ''}<pitch><step>{step}</step>"
                             + (f"<alter>{alter}</alter>" if alter else "")
                             + f"<octave>{(p - alter) // 12 - 1}</octave></pitch><duration>{length}</duration>{ties}"
                             f"<voice>{voice}</voice>{value}<staff>{staff}</staff>"
                             + ("{tuplet}" if j == 0 else "") + (f"<notations>{tied}</notations>" if tied else "") + "</note>")
            units.append((length, TRIPLET in value, chord))
            at += length
        position = e
    return _bracketed(units)


def _bracketed(units: list) -> list:
    """The units' XML with a bracket over each run of triplet values, closed where the run fills a
    plain value's time (its divisions a multiple of 6, a 32nd) or a plain value follows."""
    marks = [[] for _ in units]
    run_start, run = None, 0
    for i, (length, triplet, _) in enumerate(units + [(0, False, [])]):
        if triplet:
            if run_start is None:
                run_start, run = i, 0
                marks[i].append("<tuplet type=\"start\" bracket=\"yes\"/>")
            run += length
            if run % 6 == 0:
                marks[i].append("<tuplet type=\"stop\"/>")
                run_start = None
        elif run_start is not None:
            marks[i - 1].append("<tuplet type=\"stop\"/>")
            run_start = None
    out = []
    for (_, _, xml), mark in zip(units, marks):
        tuplet = f"<notations>{''.join(mark)}</notations>" if mark else ""
        out += [x.replace("{tuplet}", tuplet) for x in xml]
    return out


def _written(start: int, end: int, beat: int) -> list:
    """[(divisions, <type>/<dot>/<time-modification> XML)] writing start..end within a bar: split
    where an off-beat value would cross a beat, then each part as the longest values that fit."""
    cuts = [start]
    if start % beat and end > (start // beat + 1) * beat:
        cuts.append((start // beat + 1) * beat)
    out = []
    for a, b in zip(cuts, cuts[1:] + [end]):
        left = b - a
        while left > 0:
            length, kind, dots, triplet = next(v for v in VALUES if v[0] <= left)
            out.append((length, f"<type>{kind}</type>" + "<dot/>" * dots
                        + ("<time-modification><actual-notes>3</actual-notes><normal-notes>2</normal-notes>"
                           "</time-modification>" if triplet else "")))
            left -= length
    return out


def _spelling(midi_pitch: int, key_fifths: int) -> tuple:
    """(step, alter): a pitch named as a key of `key_fifths` spells it (sharps in sharp keys, flats
    in flat keys; the key's own notes, such as E# in C# major, as the key writes them)."""
    pc = midi_pitch % 12
    scale = _scale(key_fifths)
    if pc in scale:
        return scale[pc]
    return (SHARP_NAMES if key_fifths >= 0 else FLAT_NAMES)[pc]


def _scale(key_fifths: int) -> dict:
    """pitch class -> (step, alter) of the seven notes of the major key with `key_fifths`."""
    steps, naturals = "FCGDAEB", {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
    alters = {s: 0 for s in steps}
    for i in range(key_fifths):
        alters[steps[i % 7]] += 1
    for i in range(-key_fifths):
        alters[steps[6 - i % 7]] -= 1
    return {(naturals[s] + a) % 12: (s, a) for s, a in alters.items()}
