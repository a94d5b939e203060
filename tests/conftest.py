"""Shared fixtures: the Goldberg corpus and synthetic MIDI files written to a temporary folder.

Synthetic files are the ground truth of the reading and round-trip tests: every note is placed on
an exact tick, so what `read_midi` returns can be compared with what was written note by note.
`write_midi` goes through mido to control what pretty_midi cannot (type 0, several tracks and
channels, tempo and meter changes on any tick, drums); `write_pretty_midi` builds a file the way
most users would, one pretty_midi instrument per voice.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import mido
import numpy as np
import pretty_midi
import pytest

# The Goldberg corpus is data, never in the repository: BACHSFORMER_GOLDBERG names it, else the
# folder `python -m bachsformer.corpus goldberg` fills, else the shared copy beside the checkout.
REPOSITORY = Path(__file__).resolve().parents[1]
GOLDBERG_DIR = next((d for d in (Path(os.environ.get("BACHSFORMER_GOLDBERG", REPOSITORY / "data/midi/goldberg")),
                                 REPOSITORY.parent / "shared" / "corpora" / "goldberg") if any(d.glob("*.mid"))),
                    REPOSITORY / "data" / "midi" / "goldberg")
DRUMS = 9  # zero-based MIDI channel of General MIDI percussion


class N(NamedTuple):
    """A note to write: pitch, start and end in beats, and where it goes in the file."""

    pitch: int
    start: float
    end: float
    channel: int = 0
    track: int = 0  # index among the note tracks of a type-1 file


@pytest.fixture
def goldberg_dir() -> Path:
    """The 31 Goldberg files, next to the repository; skipped, saying where, when absent."""
    files = sorted(GOLDBERG_DIR.glob("*.mid"))
    if not files:
        reason = "no such directory" if not GOLDBERG_DIR.is_dir() else "no .mid files in it"
        pytest.skip(f"Goldberg corpus not found at {GOLDBERG_DIR}: {reason}")
    return GOLDBERG_DIR


def goldberg_files() -> list:
    """File names for parametrising (empty when the corpus is absent; the fixture then skips)."""
    return sorted(p.name for p in GOLDBERG_DIR.glob("*.mid"))


def _tick(beats: float, ticks_per_beat: int) -> int:
    tick = beats * ticks_per_beat
    assert abs(tick - round(tick)) < 1e-6, f"{beats} beats is not a whole tick at {ticks_per_beat} per beat"
    return int(round(tick))


def write_midi(path, notes, *, ticks_per_beat: int = 480, tempos=((0.0, 120.0),),
               time_signatures=((0.0, 4, 4),), midi_type: int = 1, meta_track: int = 0) -> Path:
    """Write `notes` (`N` or (pitch, start, end) in beats) as a type 0 or type 1 file.

    `tempos` are (beat, quarter notes per minute), `time_signatures` (beat, numerator,
    denominator). In a type-1 file the meta events go on track `meta_track` (0, the conductor
    track, as the standard says; -1 for the last track) and note track k on track k + 1.
    """
    notes = [N(*n) for n in notes]
    n_tracks = 1 if midi_type == 0 else 1 + max([n.track for n in notes], default=0) + 1
    events = [[] for _ in range(n_tracks)]  # (tick, order, message); at one tick: meta, note-off, note-on
    meta = events[0 if midi_type == 0 else meta_track]
    for beat, qpm in tempos:
        meta.append((_tick(beat, ticks_per_beat), 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm))))
    for beat, num, den in time_signatures:
        meta.append((_tick(beat, ticks_per_beat), 0,
                     mido.MetaMessage("time_signature", numerator=num, denominator=den)))
    for n in notes:
        track = events[0 if midi_type == 0 else n.track + 1]
        track.append((_tick(n.start, ticks_per_beat), 2,
                      mido.Message("note_on", note=n.pitch, velocity=80, channel=n.channel)))
        track.append((_tick(n.end, ticks_per_beat), 1,
                      mido.Message("note_off", note=n.pitch, velocity=0, channel=n.channel)))
    mid = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for track_events in events:
        track, now = mido.MidiTrack(), 0
        for tick, _, message in sorted(track_events, key=lambda e: e[:2]):
            track.append(message.copy(time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    mid.save(str(path))
    return Path(path)


def write_pretty_midi(path, voices, *, resolution: int = 480, qpm: float = 120.0) -> Path:
    """Write one pretty_midi instrument per voice, each a list of (pitch, start, end) in beats."""
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=qpm)
    for voice in voices:
        instrument = pretty_midi.Instrument(program=6)
        instrument.notes = [pretty_midi.Note(80, int(p), s * 60.0 / qpm, e * 60.0 / qpm) for p, s, e in voice]
        pm.instruments.append(instrument)
    pm.write(str(path))
    return Path(path)


def split_voices(notes) -> list:
    """Spread notes over voices so that no voice overlaps itself on a key.

    A MIDI file cannot hold two overlapping notes of one key on one channel (the first note-off
    ends both), so a note list with such overlaps is written on separate tracks.
    """
    voices, busy_until = [], []  # busy_until[v][pitch]: where voice v is free again on that key
    for p, s, e in sorted(notes, key=lambda n: (n[1], n[0])):
        for v, free in enumerate(busy_until):
            if free.get(p, -np.inf) <= s:
                break
        else:
            voices.append([])
            busy_until.append({})
            v = len(voices) - 1
        voices[v].append((p, s, e))
        busy_until[v][p] = e
    return voices


def note_list(notes) -> list:
    """`Notes` as a sorted list of (pitch, start, end), for comparing note by note."""
    return sorted(zip(notes.pitch.tolist(), notes.start.tolist(), notes.end.tolist()))


TINY_VAE = ["--model.widths=[8, 16]", "--model.code_dim=8", "--model.codebook_size=8", "--model.n_res_blocks=1"]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Four short seeded pieces (scales and chords in 4/4), enough to train and hold one out."""
    folder = tmp_path_factory.mktemp("tiny-corpus")
    rng = np.random.default_rng(0)
    for k in range(4):
        notes = []
        for beat in range(32):
            root = int(rng.integers(48, 72))
            notes += [N(root + step, beat + i / 4, beat + (i + 1) / 4) for i, step in enumerate((0, 2, 4, 7))]
            notes.append(N(root - 12, beat, beat + 1))
        write_midi(folder / f"p{k}.mid", notes)
    return folder


# the earlier inputs (transposition, not the plan), so the tests of through-composed pieces,
# key guidance and key plans run on a model that has them; `tiny_plan_pair` has the plan
TINY_GPT = ["--model.n_layer=1", "--model.n_head=2", "--model.n_embd=16", "--data.frames_per_window=4",
            "--data.transpositions=[0, 2]", "--data.extra_inputs=[frame_index, beat, key]"]


@pytest.fixture(scope="session")
def tiny_vae(tiny_corpus, tmp_path_factory) -> Path:
    """A VQ-VAE trained for one epoch on the tiny corpus, exported as a bundled checkpoint would be."""
    from bachsformer.train.config import build_config
    from bachsformer.train.run_folder import export_weights
    from bachsformer.train.vae import VAERecipe, train_vae

    folder = tmp_path_factory.mktemp("tiny-vae")
    config = build_config(VAERecipe, overrides=[
        f"--data.midi_dir={tiny_corpus}", "--data.held_out=[p3]", f"--data.cache_dir={folder / 'cache'}",
        f"--train.out_dir={folder / 'run'}", "--train.epochs=1", "--train.batch_size=16", "--train.threads=1",
        "--train.monitor_pieces=0", *TINY_VAE])
    train_vae(config, log=lambda *_: None, progress=False)
    export_weights(folder / "run" / "best.pt", folder / "vae.pt", "vae")
    return folder / "vae.pt"


def _tiny_pair(folder: Path, corpus: Path, vae: Path, *overrides) -> Path:
    """Train a tiny transformer on `vae`'s codes and lay the pair out in `folder` as checkpoints/ is."""
    import shutil

    from bachsformer.train.config import build_config
    from bachsformer.train.run_folder import export_weights
    from bachsformer.train.transformer import TransformerRecipe, train_transformer

    config = build_config(TransformerRecipe, overrides=[
        f"--data.midi_dir={corpus}", f"--data.vae={vae}", "--data.held_out=[p3]",
        f"--data.cache_dir={folder / 'cache'}", f"--train.out_dir={folder / 'run'}", "--train.max_steps=4",
        "--train.eval_every=4", "--train.batch_size=8", "--train.threads=1", *TINY_GPT, *overrides])
    train_transformer(config, log=lambda *_: None, progress=False)
    shutil.copy(vae, folder / "vae.pt")
    export_weights(folder / "run" / "best.pt", folder / "transformer.pt", "transformer")
    return folder


@pytest.fixture(scope="session")
def tiny_pair(tiny_corpus, tiny_vae, tmp_path_factory) -> Path:
    """A checkpoint folder (vae.pt, transformer.pt) of tiny models, laid out as checkpoints/ is."""
    return _tiny_pair(tmp_path_factory.mktemp("tiny-pair"), tiny_corpus, tiny_vae)


PLAN_INPUTS = "--data.extra_inputs=[frame_index, beat, piece_key, section, bar_in_section, bars_left]"


@pytest.fixture(scope="session")
def tiny_plan_pair(tiny_corpus, tiny_vae, tmp_path_factory) -> Path:
    """A checkpoint folder whose tiny transformer knows the key and the form of what it writes."""
    return _tiny_pair(tmp_path_factory.mktemp("tiny-plan-pair"), tiny_corpus, tiny_vae, PLAN_INPUTS)


@pytest.fixture(scope="session")
def tiny_fill_pair(tiny_corpus, tiny_vae, tmp_path_factory) -> Path:
    """A checkpoint folder whose tiny transformer knows the plan and was trained to fill gaps."""
    inputs = "--data.extra_inputs=[frame_index, beat, piece_key, section, bar_in_section, bars_left, future]"
    return _tiny_pair(tmp_path_factory.mktemp("tiny-fill-pair"), tiny_corpus, tiny_vae, inputs,
                      "--data.fill_in_middle=0.5", "--data.max_future_frames=2")
