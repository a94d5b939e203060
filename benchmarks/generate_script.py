"""`python generate.py` as a whole process: interpreter start, imports, loading the bundled
weights, sampling, decoding and writing the MIDI, as a user meets it.

The runner (`python -m benchmarks --only generate`) times the process from outside and reads its
peak RSS; this module says what to run and what came out. The figure is comparable with the
original's 20.3 s and 335 MB for 64 s of music (docs/evaluation.md). `--device cpu` because that is
the machine the figures compare; at tiny size one bar is written straight on instead of the default piece.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command(out_dir, tiny: bool = False, seed: int = 0) -> list:
    """The command line of one run, writing into `out_dir`: the piece of `seed` (a piece costs
    more where its halves or closes are drawn again, so runs take seeds 0, 1, 2, ...)."""
    return ([sys.executable, str(REPO / "generate.py"), "--out", str(out_dir), "--force", "--device", "cpu",
             "--seed", str(seed)] + (["--form", "through", "--bars", "1"] if tiny else []))


def music_seconds(out_dir) -> dict:
    """Figures of what a run wrote: the seconds of music in its MIDI file(s)."""
    import pretty_midi

    files = sorted(Path(out_dir).glob("*.mid"))
    if not files:
        raise RuntimeError(f"generate.py wrote no MIDI file into {out_dir}")
    return {"music_s": sum(pretty_midi.PrettyMIDI(str(f)).get_end_time() for f in files)}
