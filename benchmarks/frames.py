"""Corpus -> frames -> MIDI: how long a corpus takes to become frames, cold and from the cache.

One run, meant for a fresh process (`python -m benchmarks --only frames` starts one per run):
- cold: every MIDI file parsed, cut into frames and written to an empty cache, the first work
  this process does (imports done, nothing else warmed);
- warm: the same files loaded again from the filled cache;
- to frames / to MIDI: corpus -> frames without the cache, then each piece written back as MIDI
  with `score_to_midi(...).write`; their sum is comparable with the original's figure in
  docs/evaluation.md (2.7 s for the 31 Goldberg files, 1.8 s of it to frames).

At tiny size the corpus is two short synthetic files written for the run.

    python benchmarks/frames.py [--corpus DIR] [--repeats N]   # python -m benchmarks --only frames
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(REPO))

from ludovico_vae.dataset import find_midi_files, load_pieces  # noqa: E402
from ludovico_vae.midi import score_to_midi  # noqa: E402

CORPORA = (REPO.parent / "shared" / "corpora" / "goldberg", REPO / "data" / "midi" / "goldberg")


def default_corpus() -> Path:
    """The Goldberg files beside the repository, else those fetched into data/midi/goldberg."""
    return next((c for c in CORPORA if find_midi_files(c)), CORPORA[0])


def write_back(pieces, out_dir) -> float:
    """Write every piece as MIDI into `out_dir`; returns the seconds it took."""
    t0 = time.perf_counter()
    for i, piece in enumerate(pieces):
        score_to_midi(piece.score()).write(str(Path(out_dir) / f"{i:04d}-{Path(piece.source).stem}.mid"))
    return time.perf_counter() - t0


def write_tiny_corpus(folder, files: int = 2, beats: int = 16) -> Path:
    """A few short two-voice MIDI files (a scale over a held bass), enough to exercise every step."""
    import pretty_midi

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(files):
        midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)  # 0.5 s per beat
        voice = pretty_midi.Instrument(program=6)
        for beat in range(beats):
            for half in range(2):
                start = 0.5 * beat + 0.25 * half
                voice.notes.append(pretty_midi.Note(90, 60 + k + (2 * beat + half) % 12, start, start + 0.25))
            if beat % 4 == 0:
                voice.notes.append(pretty_midi.Note(70, 43 + k, 0.5 * beat, 0.5 * beat + 2.0))
        midi.instruments.append(voice)
        midi.write(str(folder / f"tiny-{k}.mid"))
    return folder


def measure(tiny: bool = False, threads: int | None = None, corpus=None) -> dict:
    """One cold, warm and round-trip run over `corpus` (default: the Goldberg files).

    `threads` is not used: the conversion is single-threaded numpy and Python.
    """
    with tempfile.TemporaryDirectory(prefix="bench-frames-") as tmp:
        tmp = Path(tmp)
        if corpus is None:
            corpus = write_tiny_corpus(tmp / "corpus") if tiny else default_corpus()
            label = "synthetic, written for the run" if tiny else str(corpus)
        else:
            label = str(corpus)
        paths = find_midi_files(corpus)
        if not paths:
            raise ValueError(f"{corpus}: no MIDI files (python -m bachsformer.corpus goldberg fetches them)")
        t0 = time.perf_counter()
        pieces, failures = load_pieces(paths, cache_dir=tmp / "cache")
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_pieces(paths, cache_dir=tmp / "cache")
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        pieces, _ = load_pieces(paths, use_cache=False)
        to_frames = time.perf_counter() - t0
        (tmp / "midi").mkdir()
        to_midi = write_back(pieces, tmp / "midi")
    return {
        "figures": {"cold_s": cold, "warm_s": warm, "to_frames_s": to_frames, "to_midi_s": to_midi,
                    "round_trip_s": to_frames + to_midi},
        "info": {"corpus": label, "files": len(paths), "pieces": len(pieces),
                 "failures": [str(f) for f in failures], "frames": sum(len(p) for p in pieces),
                 "keyboard_notes": sum(p.stats["keyboard_notes"] for p in pieces)},
    }


if __name__ == "__main__":
    from benchmarks.__main__ import main

    sys.exit(main(["--only", "frames", *sys.argv[1:]]))
