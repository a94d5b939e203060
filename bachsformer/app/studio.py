"""What the page asks for, turned into pieces: checked requests, the models loaded once per style,
and each piece rendered for the page (MIDI, WAV, MusicXML, engraved score, notes for the roll).
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ludovico_vae.frames import QUANTISED_SHARE, score_to_piece
from ludovico_vae.midi import MidiError, bar_lines, beats_of_seconds, read_midi

from ..editing import NEW_TRACK
from ..errors import BachsformerError, MissingExtraError
from ..generation import MAX_SEED, Bachsformer, fresh_seed
from ..paths import BUNDLED_CHECKPOINTS, DEFAULT_STYLE, available_styles
from ..plots import describe
from ..tonality import NOTE_NAMES, estimate_key, key_name

KEYS = [f"{name} {mode}" for mode in ("major", "minor") for name in NOTE_NAMES]
FORMS = ("binary", "through")
MAX_BARS = 64  # a request writes at most this many bars
MAX_UPLOAD_BYTES = 2_000_000
INSTRUMENTS = {"Harpsichord": 6, "Piano": 0, "Organ": 19, "Strings": 48, "Guitar": 24, "Marimba": 12, "Flute": 73}
TEMPERATURES = (0.1, 2.0)
APP_SAMPLE_RATE = 22050  # the page's audio: half the rendering and the transfer of CD rate
BPMS = (20.0, 300.0)


class RequestError(ValueError):
    """A request the page should correct: the message is shown to the user as it is."""


@dataclass
class Upload:
    """A MIDI file a user sent, checked, kept in memory by the id the server gave it."""

    path: Path
    name: str
    summary: dict


@dataclass
class Rendered:
    """A finished piece, as the page shows and downloads it."""

    seed: int
    title: str
    files: dict  # kind -> path in the server's output folder: midi, wav, musicxml
    svg: list = field(default_factory=list)  # engraved pages, when verovio is installed
    timemap: list = field(default_factory=list)
    roll: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # what could not be rendered, said to the user


class Studio:
    """The models of each style, loaded once and shared by the server's one worker thread."""

    def __init__(self, checkpoint_dir=BUNDLED_CHECKPOINTS, device: str = "auto"):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.device = device
        self.styles = available_styles(self.checkpoint_dir)
        if not self.styles:
            raise BachsformerError(f"{self.checkpoint_dir}: no model to compose with (no transformer.pt)")
        self._models, self._lock = {}, threading.Lock()

    def model(self, style: str) -> Bachsformer:
        with self._lock:
            if style not in self._models:
                self._models[style] = Bachsformer.from_checkpoints(self.checkpoint_dir, self.device, style)
            return self._models[style]

    def warm_up(self, folder: Path) -> None:
        """Compose and render one bar in the default style and remove its files: what the first
        Compose would load (the engraver, the SoundFont, the models' first run) is loaded before
        anyone asks, so the first piece takes as long as any other."""
        rendered = self.compose(self.options({"bars": 1, "form": "through", "seed": 0}), out_base=Path(folder) / "warm-up")
        for path in rendered.files.values():
            Path(path).unlink(missing_ok=True)

    def info(self) -> dict:
        """What the page offers: styles, keys, forms, instruments and the limits it must respect."""
        model = self.model(self.styles[0])
        return {"styles": self.styles, "default_style": DEFAULT_STYLE if DEFAULT_STYLE in self.styles else self.styles[0],
                "default_forms": {style: self.model(style).pair.style.form for style in self.styles},
                "keys": KEYS, "forms": list(FORMS), "instruments": INSTRUMENTS, "max_bars": MAX_BARS,
                "temperature": list(TEMPERATURES), "bpm": list(BPMS), "default_bpm": round(model.bpm),
                "max_upload_bytes": MAX_UPLOAD_BYTES, "max_seed": MAX_SEED - 1}

    def options(self, request: dict) -> dict:
        """The checked options of a compose request; RequestError names the first bad field."""
        if not isinstance(request, dict):
            raise RequestError("the request must be a JSON object")
        style = request.get("style") or self.styles[0]
        if style not in self.styles:
            raise RequestError(f"style: choose one of {', '.join(self.styles)}")
        key = request.get("key") or None
        if key is not None and key not in KEYS:
            raise RequestError("key: choose one of the 24 keys, such as 'G major' or 'D minor'")
        form = request.get("form") or None
        if form is not None and form not in FORMS:
            raise RequestError("form: binary or through")
        options = {"style": style, "key": key, "form": form,
                   "bars": _number(request, "bars", 16, 1, MAX_BARS, int),
                   "temperature": _number(request, "temperature", 1.0, *TEMPERATURES, float),
                   "bpm": _number(request, "bpm", None, *BPMS, float),
                   "program": _number(request, "program", INSTRUMENTS["Harpsichord"], 0, 127, int),
                   "seed": _number(request, "seed", None, 0, MAX_SEED - 1, int)}
        if options["seed"] is None:
            options["seed"] = fresh_seed()
        return options

    def read_upload(self, data: bytes, name: str, folder: Path, upload_id: str) -> Upload:
        """Check an uploaded MIDI file (size, MIDI, notes, quantised) and keep it under `folder`."""
        if not data:
            raise RequestError(f"{name}: the file is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise RequestError(f"{name}: {len(data) / 1e6:.1f} MB, more than the {MAX_UPLOAD_BYTES / 1e6:.0f} MB allowed")
        path = folder / f"upload-{upload_id}.mid"  # the server's name, never the user's
        path.write_bytes(data)
        try:
            score = read_midi(path)
            piece = score_to_piece(score, self.model(self.styles[0]).grid)
        except MidiError as e:
            path.unlink(missing_ok=True)
            raise RequestError(f"{name}: {e.reason}") from None
        if piece.stats["onsets_near_grid"] < QUANTISED_SHARE:
            path.unlink(missing_ok=True)
            raise RequestError(f"{name}: a performance, not a score: only {100 * piece.stats['onsets_near_grid']:.0f}% "
                               "of its onsets lie on the beat grid (quantise it in your editor first)")
        import pretty_midi
        midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
        roll = piano_roll(midi)
        return Upload(path, name, {"name": name, "bars": len(roll["bars"]), "key": roll["key"], "roll": roll})

    def compose(self, options: dict, upload: Upload | None = None, regenerate=None, out_base: Path | None = None,
                mode: str = "continue") -> Rendered:
        """A new piece, or with an upload: it continued, its bars `regenerate` written anew, its
        melody harmonised (`mode` "harmonise") or its rhythm varied ("variation"); rendered."""
        model = self.model(options["style"])
        try:
            if upload is not None and mode == "harmonise":
                piece = model.harmonise(upload.path, "top", seed=options["seed"], temperature=options["temperature"])[0]
            elif upload is not None and mode == "variation":
                piece = model.variation(upload.path, "rhythm", seed=options["seed"], temperature=options["temperature"])[0]
            elif regenerate:
                piece = model.regenerate(upload.path, regenerate, seed=options["seed"],
                                         temperature=options["temperature"])[0]
            else:
                prompt = upload.path if upload is not None else None
                form = "through" if prompt is not None else options["form"]
                piece = model.generate(bars=options["bars"], seed=options["seed"], temperature=options["temperature"],
                                       bpm=options["bpm"], program=options["program"], key=options["key"],
                                       form=form, prompt=prompt)[0]
        except (BachsformerError, MidiError) as e:  # said in the user's own file name, not the server's
            raise RequestError(str(e).replace(str(upload.path), upload.name) if upload else str(e)) from None
        return render(piece, out_base, describe(piece.midi, f"{options['style']} seed {piece.seed}"))


def render(piece, out_base: Path, title: str) -> Rendered:
    """Write the piece's MIDI, WAV and MusicXML beside `out_base` and engrave its score; the audio is
    rendered while the score is engraved."""
    from ..score import engrave_svg, written_score
    files, notes, failures = {}, [], []
    files["midi"] = out_base.with_suffix(".mid")
    piece.write(files["midi"])
    files["wav"] = out_base.with_suffix(".wav")

    def audio():
        try:
            piece.to_wav(files["wav"], sample_rate=APP_SAMPLE_RATE)
        except BachsformerError as e:
            failures.append(str(e))

    rendering = threading.Thread(target=audio, name="audio")
    rendering.start()
    score = written_score(piece.midi, title)
    files["musicxml"] = out_base.with_suffix(".musicxml")
    files["musicxml"].write_text(score.musicxml)
    svg, timemap = [], []
    try:
        svg, timemap = engrave_svg(score.musicxml), score.timemap
    except MissingExtraError as e:
        notes.append(str(e))
    rendering.join()
    if failures:
        files.pop("wav")
        notes += failures
    new_from = piece.midi.tick_to_time(int(round(piece.prompt_beats * piece.midi.resolution))) if piece.prompt_beats else None
    return Rendered(piece.seed, title, files, svg, timemap, piano_roll(piece.midi, new_from, len(piece.frames)), notes)


def piano_roll(midi, new_from: float | None = None, length_beats: float = 0.0) -> dict:
    """The notes, bar lines and key of a piece for the page's piano roll, in seconds. A note is
    marked new (1) if it starts at `new_from` or later (a continuation after its prompt), or lies
    in the model's own track beside the tracks of a user's file (`NEW_TRACK`: regenerated bars). The bars run
    to the last note or to `length_beats`, whichever is later (a piece may end in silence)."""
    notes = [(n.pitch, n.start, n.end, number) for number, inst in enumerate(midi.instruments) if not inst.is_drum
             for n in inst.notes]
    pitch = np.array([n[0] for n in notes], dtype=np.int64)
    start_s = np.array([n[1] for n in notes])
    end_s = np.array([n[2] for n in notes])
    start, end = beats_of_seconds(midi, start_s), beats_of_seconds(midi, end_s)
    signatures = [(float(beats_of_seconds(midi, [ts.time])[0]), ts.numerator, ts.denominator)
                  for ts in midi.time_signature_changes] or [(0.0, 4, 4)]
    last_beat = max(float(end.max(initial=1.0)), length_beats)
    bars_beats = bar_lines(signatures, last_beat)
    tracks = [inst.name for inst in midi.instruments if not inst.is_drum]
    new_track = [i for i, inst in enumerate(midi.instruments) if inst.name == NEW_TRACK]
    return {"notes": [[int(p), round(float(s), 4), round(float(e), 4),
                       int(n in new_track or (new_from is not None and s >= new_from - 1e-6))]
                      for p, s, e, n in zip(pitch.tolist(), start_s.tolist(), end_s.tolist(), [x[3] for x in notes])],
            "bars": [round(float(midi.tick_to_time(int(round(b * midi.resolution)))), 4) for b in bars_beats],
            "duration": round(max(float(midi.get_end_time()), midi.tick_to_time(int(last_beat * midi.resolution))), 4),
            "tracks": tracks,
            "key": key_name(estimate_key(pitch, start, end)) if len(pitch) else "-"}


def _number(request: dict, name: str, default, low, high, kind):
    value = request.get(name)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise RequestError(f"{name}: expected a{'n integer' if kind is int else ' number'}, got {value!r}") from None
    if not low <= number <= high:
        raise RequestError(f"{name}: must lie between {low:g} and {high:g}, got {number:g}")
    return number
