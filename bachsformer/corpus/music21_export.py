"""music21's bundled corpus, exported offline as quantised MIDI through our own writer.

music21 ships its corpus inside the package (Bach chorales, Palestrina, Monteverdi madrigals,
quartets of Haydn, Mozart and Beethoven, ...), one folder per composer. Its durations are exact
fractions of a quarter, so building `Notes` in beats and writing them with `score_to_midi` gives
files whose every onset lies on the grid, with the meter (pickup included) and a tempo. All parts
are merged into one keyboard part. music21 is an optional extra: nothing else in the project
imports it.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

import ludovico_vae.midi
from ludovico_vae.files import atomic_write, sha256_file
from ludovico_vae.midi import Notes, Score, score_to_midi

from ..cli import progress
from ..errors import CommandError, ExportError
from .split import HELD_OUT_FILE, held_out_names

INSTALL_HINT = "music21 is not installed: pip install 'bachsformer[corpus]'"
CHORALE_QPM = 72.0  # the chorales, and most of the corpus, carry no tempo marking: a moderate pace
RESOLUTION = 480   # ticks per beat: exact for duplets and triplets down to 1/32 notes
MAX_PICKUP_DENOMINATOR = 64
TIE_TOLERANCE = 1e-6  # beats; offsets of triplets are floats of fractions
# RomanText files are harmonic analyses (Bach's riemenschneider*, Monteverdi's madrigal.*), not music.
ANALYSIS_SUFFIXES = (".rntxt",)
# A work stored in several formats (bwv277.krn and bwv277.mxl) is exported once, from the first
# of these: the MusicXML editions are those of the rest of the corpus and carry tempo marks.
SUFFIX_PREFERENCE = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
RECORD_FILE = ".music21-export.json"
EXISTS = "exists"


@dataclass(frozen=True)
class Work:
    """One piece of music21's corpus: its file, and the name its MIDI file gets (no suffix)."""

    composer: str
    name: str  # unique within the composer: `opus18no1/movement1` becomes `opus18no1-movement1`
    path: Path
    source: str  # the file as music21's corpus names it, e.g. `bach/bwv269.mxl`


@dataclass
class ExportRow:
    """What became of one work: `written`, `exists` (same content already there) or `failed`."""

    composer: str
    file: str
    source: str
    status: str = ""
    notes: int | None = None
    meters: list | None = None
    error: str | None = None


@dataclass
class PartExport:
    """One composer's folder after an export, and its held-out names (see `split`)."""

    composer: str
    folder: Path
    rows: list = field(default_factory=list)
    held_out: list = field(default_factory=list)

    def usable(self) -> int:
        return sum(r.status != "failed" for r in self.rows)


# ---------------------------------------------------------------- the corpus listing

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


def corpus_root() -> Path:
    return Path(import_music21().common.getCorpusFilePath())


def composers() -> list:
    """music21's composer folders (bach, palestrina, ...), without its folk-tune collections."""
    music21 = import_music21()
    folders = music21.corpus.corpora.CoreCorpus().directoryInformation
    return sorted(d.directoryName for d in folders if d.isComposer)


def check_composers(names) -> list:
    """`names` each once, in order; an unknown one is an error listing the known ones."""
    known = composers()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CommandError(f"--composer {unknown[0]}: not in music21's corpus; known composers: {', '.join(known)}")
    return list(dict.fromkeys(names))


def _preference(path: Path) -> int:
    suffix = path.suffix.lower()
    return SUFFIX_PREFERENCE.index(suffix) if suffix in SUFFIX_PREFERENCE else len(SUFFIX_PREFERENCE)


def composer_works(composer: str, limit: int | None = None) -> list:
    """The works in `composer`'s folder sorted by name, each once, analyses left out."""
    music21 = import_music21()
    root = corpus_root()
    folder = root / composer
    best = {}
    for path in music21.corpus.getComposer(composer):
        path = Path(path)
        if path.suffix.lower() in ANALYSIS_SUFFIXES or not path.is_relative_to(folder):
            continue
        name = path.relative_to(folder).with_suffix("").as_posix().replace("/", "-")
        if name not in best or _preference(path) < _preference(best[name]):
            best[name] = path
    works = [Work(composer, name, best[name], best[name].relative_to(root).as_posix()) for name in sorted(best)]
    return works if limit is None else works[:limit]


def chorale_names(limit: int | None = None) -> list:
    """Corpus names (`bach/bwv269`) of the chorales in Riemenschneider order, each once."""
    music21 = import_music21()
    names = list(dict.fromkeys(music21.corpus.chorales.Iterator(returnType="filename")))
    return names if limit is None else names[:limit]


def chorale_works(limit: int | None = None) -> list:
    """The chorales of `chorale_names` as `Work`s. A name the chorale list spells otherwise than its
    file (music21 10 lists `bach/bwv18.5-l` for `bwv18.5-lz.mxl`) is found as music21 finds it."""
    works = composer_works("bach")
    by_name, by_path = {w.name: w for w in works}, {w.path.resolve(): w for w in works}
    music21 = import_music21()
    out = []
    for name in chorale_names(limit):
        work = by_name.get(Path(name).name)
        if work is None:
            found = music21.corpus.getWork(name)
            found = found[0] if isinstance(found, list) else found
            work = by_path[Path(found).resolve()]
        out.append(work)
    return out


def parse_work(work: Work):
    """The music21 score of `work`, read from its file (never from music21's pickle cache).

    An ABC file is an Opus: one piece in parts (Josquin's chansons) is merged into one score,
    a collection of tunes is refused.
    """
    music21 = import_music21()
    parsed = music21.corpus.parse(str(work.path), forceSource=True)
    if "Opus" not in parsed.classes:
        return parsed
    scores = list(parsed.scores)
    if len(scores) == 1:
        return scores[0]
    if len({s.metadata.title if s.metadata else None for s in scores}) == 1:
        return parsed.mergeScores()
    raise ExportError(f"{work.source}: a collection of {len(scores)} pieces, not one work")


# ---------------------------------------------------------------- a score in beats

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


def _part_notes(part) -> list:
    """[pitch, start, end] of one part's notes, tied notes joined into one; grace notes left out.

    Joined in one pass rather than with music21's `stripTies`, which rebuilds the score: about
    6 s for one movement of a Beethoven quartet, against a tenth of that here.
    """
    joined, open_ties = [], {}  # open_ties: pitch -> index in `joined` of a note tied onwards
    for element in part.flatten().notes.getElementsNotOfClass("Harmony"):  # chord symbols are no notes
        length = float(element.quarterLength)
        if length <= 0:
            continue  # grace notes take no time of their own in the score
        start = float(element.offset)
        for note in (element.notes if element.isChord else (element,)):
            if not hasattr(note, "pitch"):
                continue  # unpitched percussion
            tie = note.tie.type if note.tie is not None else None
            index = open_ties.pop(note.pitch.midi, None)
            if index is not None and tie in ("stop", "continue") and abs(joined[index][2] - start) < TIE_TOLERANCE:
                joined[index][2] = start + length
            else:
                joined.append([note.pitch.midi, start, start + length])
                index = len(joined) - 1
            if tie in ("start", "continue"):
                open_ties[note.pitch.midi] = index
    return joined


def _tempos(m21_score, shift: float) -> list:
    """(beat, quarter notes per minute), one per beat: every part repeats the score's marks."""
    by_beat = {}
    for mark in m21_score.flatten().getElementsByClass("MetronomeMark"):
        qpm = mark.getQuarterBPM()
        if qpm:
            by_beat.setdefault(float(mark.offset) + shift, float(qpm))
    tempos = sorted(by_beat.items())
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0.0, tempos[0][1] if tempos else CHORALE_QPM))
    return tempos


def music21_to_score(m21_score, source: str = "") -> Score:
    """A music21 score (changed in place to sounding pitch) as one `Score` in beats, all parts merged."""
    m21_score.toSoundingPitch(inPlace=True)
    parts = list(m21_score.parts) or [m21_score]
    rows = [row for part in parts for row in _part_notes(part)]
    if not rows:
        raise ExportError(f"{source}: no notes")
    signatures, shift = _time_signatures(parts[0])
    pitch, start, end = np.array(rows).T
    order = np.lexsort((end, pitch, start))  # a canonical order, so the file never depends on part order
    notes = Notes(pitch[order], start[order] + shift, end[order] + shift)
    return Score(notes, RESOLUTION, _tempos(m21_score, shift), signatures, source)


def midi_bytes(score: Score) -> bytes:
    buffer = io.BytesIO()
    score_to_midi(score, resolution=RESOLUTION, name=Path(score.source).name or "music21").write(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- writing, with a record

def _exporter_fingerprint() -> str:
    """What decides the bytes of an export: music21's version and the code of this module and
    of the MIDI writer. A change to any of them makes the record stale (the works are converted
    again and compared), so the record never has to be invalidated by hand."""
    digest = hashlib.sha256(import_music21().__version__.encode())
    for module_file in (__file__, ludovico_vae.midi.__file__):
        digest.update(Path(module_file).read_bytes())
    return digest.hexdigest()


class ExportRecord:
    """What an earlier export wrote into one folder, so a re-run need not parse unchanged works.

    Parsing is nearly all the time of an export (minutes for Palestrina); a work whose source,
    exporter and written file are all unchanged is reported as existing without opening it.
    It is only a shortcut: without it a work is converted and compared byte for byte.
    """

    def __init__(self, folder: Path):
        self.path = folder / RECORD_FILE
        self.fingerprint = _exporter_fingerprint()
        self.files = self._load()
        self._saved = json.dumps(self.files, sort_keys=True)

    def _load(self) -> dict:
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or damaged: convert everything again
        if not isinstance(record, dict) or record.get("exporter") != self.fingerprint:
            return {}
        return record.get("files", {}) if isinstance(record.get("files"), dict) else {}

    def lookup(self, work: Work, target: Path):
        """The recorded entry of `target` if it still holds this exporter's output of `work`."""
        entry = self.files.get(target.name)
        if not (isinstance(entry, dict) and entry.get("source") == work.source and target.is_file()):
            return None
        if entry.get("source_sha256") != sha256_file(work.path) or entry.get("midi_sha256") != sha256_file(target):
            return None
        return entry

    def remember(self, work: Work, target: Path, row: ExportRow) -> None:
        self.files[target.name] = {"source": work.source, "source_sha256": sha256_file(work.path),
                                   "midi_sha256": sha256_file(target), "notes": row.notes, "meters": row.meters}

    def save(self) -> None:
        """Written only when something changed, so a re-run that exports nothing writes nothing."""
        if json.dumps(self.files, sort_keys=True) == self._saved:
            return
        with atomic_write(self.path) as f:
            f.write(json.dumps({"exporter": self.fingerprint, "files": self.files}, indent=1, sort_keys=True).encode())
        self._saved = json.dumps(self.files, sort_keys=True)


def _convert(work: Work, row: ExportRow):
    """The MIDI bytes of `work`, or None with the reason in `row`: one bad score never stops an export."""
    try:
        score = music21_to_score(parse_work(work), work.source)
        data = midi_bytes(score)
    except ExportError as e:
        row.status, row.error = "failed", str(e)
        return None
    except Exception as e:  # music21 raises many types on a score it cannot read
        reason = " ".join(str(e).split()) or "no message"
        row.status, row.error = "failed", f"{work.source}: music21 cannot convert it ({type(e).__name__}: {reason})"
        return None
    row.notes, row.meters = len(score.notes), [f"{n}/{d}" for _, n, d in score.time_signatures]
    return data


def _write(target: Path, data: bytes, force: bool, row: ExportRow) -> bool:
    """Write `data` unless the same bytes are there; another file of that name is kept without
    `force` (it may be someone's own edit). True when `target` now holds `data`."""
    if target.is_file() and target.read_bytes() == data:
        row.status = EXISTS
        return True
    if target.exists() and not force:
        row.status, row.error = "failed", f"{target}: exists with other content; not replaced without --force"
        return False
    try:
        with atomic_write(target) as f:
            f.write(data)
    except OSError as e:
        row.status, row.error = "failed", f"cannot write {target} ({e.strerror or e})"
        return False
    row.status = "written"
    return True


def export_work(work: Work, folder: Path, force: bool, record: ExportRecord) -> ExportRow:
    """Export one work to `folder/<name>.mid`; the row says what happened, it never raises for the score."""
    target = folder / f"{work.name}.mid"
    row = ExportRow(work.composer, target.name, work.source)
    entry = record.lookup(work, target)
    if entry is not None:
        row.status, row.notes, row.meters = EXISTS, entry.get("notes"), entry.get("meters")
        return row
    data = _convert(work, row)
    if data is not None and _write(target, data, force, row):
        record.remember(work, target, row)
    return row


def _folder(dest) -> Path:
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise CommandError(f"{dest}: exists and is not a directory")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def export_works(works: list, folder, force: bool = False, desc: str = "export") -> list:
    """Export `works` into `folder` with a progress bar; one `ExportRow` per work, in order."""
    folder = _folder(folder)
    record = ExportRecord(folder)
    rows = []
    try:
        for work in progress(works, desc):
            rows.append(export_work(work, folder, force, record))
    finally:
        record.save()  # an interrupted export keeps what it did
    return rows


def write_held_out(folder: Path) -> list:
    """Write `held_out.txt` for the MIDI files in `folder` (not only this run's); returns its names.

    Taking the whole folder means a run with --limit never shrinks the list that training reads;
    the file is rewritten only when its content changes.
    """
    present = [p.stem for p in folder.glob("*.mid")]
    if not present:
        return []
    names = held_out_names(present)
    text = "".join(f"{name}\n" for name in names)
    path = folder / HELD_OUT_FILE
    if not (path.is_file() and path.read_text() == text):
        with atomic_write(path) as f:
            f.write(text.encode())
    return names


def export_music21(dest, composer_names=(), limit: int | None = None, force: bool = False) -> list:
    """Export each composer's works into `dest/<composer>/` (all composers if none named).

    `limit` takes the first N works of each composer. Returns one `PartExport` per composer.
    """
    import_music21()
    names = check_composers(composer_names) if composer_names else composers()
    dest = _folder(dest)
    parts = []
    for composer in names:
        folder = dest / composer
        rows = export_works(composer_works(composer, limit), folder, force, composer)
        parts.append(PartExport(composer, folder, rows, write_held_out(folder)))
    return parts


def export_chorales(dest, limit: int | None = None, force: bool = False) -> list:
    """The chorales only, as `<bwv>.mid` into `dest`, in Riemenschneider order; one dict per chorale.

    Kept for `python -m bachsformer.corpus chorales`, whose table calls an unchanged file "present".
    """
    import_music21()
    rows = export_works(chorale_works(limit), dest, force, "chorales")
    write_held_out(Path(dest))
    return [{**asdict(r), "status": "present" if r.status == EXISTS else r.status} for r in rows]
