"""The Bach chorales bundled with music21, exported as quantised MIDI through our own writer.

music21 ships some 350 four-part chorales as MusicXML, offline; its durations are exact
fractions of a quarter, so building `Notes` in beats and writing them with `score_to_midi` gives
files whose every onset lies on the grid, with the meter (pickup included) and a tempo.
music21 is an optional extra: nothing else in the project imports it.
"""
from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np

from ludovico_vae.files import atomic_write
from ludovico_vae.midi import Notes, Score, score_to_midi

from ..errors import CommandError, ExportError

INSTALL_HINT = "music21 is not installed: pip install 'bachsformer[corpus]'"
CHORALE_QPM = 72.0  # the chorales carry no tempo marking; a moderate hymn tempo
RESOLUTION = 480   # ticks per beat: exact for duplets and triplets down to 1/32 notes
MAX_PICKUP_DENOMINATOR = 64


def import_music21():
    """music21 with downloads refused, so the export never touches the network.

    The preference is set on music21's in-memory environment only; the user's settings file is
    neither read for it nor written.
    """
    try:
        import music21
        from music21 import corpus, environment  # noqa: F401  (corpus registers the chorales)
    except ImportError:
        raise ExportError(INSTALL_HINT) from None
    environment.Environment()["autoDownload"] = "deny"
    return music21


def chorale_names(limit: int | None = None) -> list:
    """Corpus paths of the chorales in Riemenschneider order, each once (the catalogue repeats some)."""
    music21 = import_music21()
    names = list(dict.fromkeys(music21.corpus.chorales.Iterator(returnType="filename")))
    return names if limit is None else names[:limit]


def _pickup_signature(pickup: Fraction, denominator: int):
    """(numerator, denominator) of a bar `pickup` quarters long, or None if MIDI cannot say it."""
    while denominator <= MAX_PICKUP_DENOMINATOR:
        numerator = pickup * denominator / 4
        if numerator.denominator == 1 and 1 <= numerator <= 255:
            return int(numerator), denominator
        denominator *= 2
    return None


def _time_signatures(part) -> tuple:
    """(time signatures as (beat, num, den), beats of silence to put first).

    A pickup bar becomes a short bar of its own meter, as in the Goldberg files (988-v30 opens
    with 1/8 then 4/4), so bar lines after it fall where they are written; if no MIDI meter can
    express the pickup, the piece is shifted to start on a full bar instead.
    """
    signatures = []
    for ts in part.flatten().getElementsByClass("TimeSignature"):
        beat = float(ts.offset)
        if signatures and signatures[-1][0] == beat:
            signatures.pop()
        signatures.append((beat, int(ts.numerator), int(ts.denominator)))
    if not signatures or signatures[0][0] > 0:
        signatures.insert(0, (0.0, 4, 4))
    first = part.getElementsByClass("Measure").first()
    padding = Fraction(first.paddingLeft).limit_denominator(10_000) if first is not None else 0
    if padding <= 0:
        return signatures, 0.0
    pickup = Fraction(first.duration.quarterLength).limit_denominator(10_000)
    meter = _pickup_signature(pickup, signatures[0][2])
    if meter is None:
        return [signatures[0]] + [(b + float(padding), n, d) for b, n, d in signatures[1:]], float(padding)
    result = [(0.0, *meter), (float(pickup), *signatures[0][1:])]
    for beat, num, den in signatures[1:]:
        if beat == float(pickup):
            result.pop()  # the first full bar states its own meter
        if beat >= float(pickup):
            result.append((beat, num, den))
    return result, 0.0


def chorale_to_score(m21_score, source: str = "") -> Score:
    """A music21 score as a `Score` in beats: ties joined, sounding pitches, grace notes left out."""
    stripped = m21_score.stripTies(inPlace=False).toSoundingPitch(inPlace=False)
    pitch, start, end = [], [], []
    for element in stripped.flatten().notes:
        length = float(element.quarterLength)
        if length <= 0:
            continue  # grace notes take no time of their own in the score
        offset = float(element.offset)
        for p in getattr(element, "pitches", ()):
            pitch.append(p.midi)
            start.append(offset)
            end.append(offset + length)
    if not pitch:
        raise ExportError(f"{source}: no notes")
    parts = list(stripped.parts) or [stripped]
    signatures, shift = _time_signatures(parts[0])
    marks = stripped.flatten().getElementsByClass("MetronomeMark")
    tempos = [(float(m.offset) + shift, float(m.getQuarterBPM())) for m in marks if m.getQuarterBPM()]
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0.0, tempos[0][1] if tempos else CHORALE_QPM))
    notes = Notes(np.array(pitch), np.array(start) + shift, np.array(end) + shift)
    return Score(notes.sorted(), RESOLUTION, tempos, signatures, source)


def midi_bytes(score: Score) -> bytes:
    buffer = io.BytesIO()
    score_to_midi(score, resolution=RESOLUTION, name=Path(score.source).name or "chorale").write(buffer)
    return buffer.getvalue()


def export_chorales(dest, limit: int | None = None, force: bool = False) -> list:
    """Write chorales as `<bwv>.mid` into `dest`; one result dict per chorale.

    The export is deterministic, so a file already there with the same bytes is left alone; a
    different file of the same name is kept unless `force` (it may be someone's own edit).
    """
    music21 = import_music21()
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise CommandError(f"{dest}: exists and is not a directory")
    dest.mkdir(parents=True, exist_ok=True)
    results = []
    for name in chorale_names(limit):
        target = dest / f"{Path(name).name}.mid"
        row = {"file": target.name, "source": name, "status": "", "notes": None, "meters": None, "error": None}
        results.append(row)
        try:
            score = chorale_to_score(music21.corpus.parse(name, forceSource=True), name)
            data = midi_bytes(score)
        except ExportError as e:
            row.update(status="failed", error=str(e))
            continue
        except Exception as e:  # music21 raises many types on a score it cannot read
            row.update(status="failed", error=f"{name}: music21 cannot convert it ({type(e).__name__}: {e})")
            continue
        row.update(notes=len(score.notes), meters=[f"{n}/{d}" for _, n, d in score.time_signatures])
        if target.is_file() and target.read_bytes() == data:
            row["status"] = "present"
            continue
        if target.exists() and not force:
            row.update(status="failed", error=f"{target}: exists with other content; not replaced without --force")
            continue
        try:
            with atomic_write(target) as f:
                f.write(data)
        except OSError as e:
            row.update(status="failed", error=f"cannot write {target} ({e.strerror or e})")
            continue
        row["status"] = "written"
    return results
