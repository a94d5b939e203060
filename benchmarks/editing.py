"""Working on a musician's own music, in process with the bundled pair loaded once: regenerating 4
bars of a 32-bar piece, and harmonising the top line of a 16-bar one (issue "Your own music":
at most 0.5 s and 1 s on a 2-core CPU).

The pieces are the pair's own: through-composed pieces of 32 and of 16 bars, seed 0, written to
MIDI, so the benchmark needs no corpus. After one untimed warm-up, each figure is the
median of `repeats` timed calls (seeds 1, 2, ...).

    python -m benchmarks --only editing
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGENERATED = (13, 16)  # 4 bars inside a 32-bar piece: a past and a future on both sides
PIECE_BARS, TUNE_BARS, TINY_BARS = 32, 16, 4


def write_pieces(folder: Path, tiny: bool = False) -> tuple:
    """(piece.mid, tune.mid): the pair's pieces of 32 and 16 bars, seed 0 (4 and 2 at tiny size)."""
    from bachsformer.generation import Bachsformer

    model = Bachsformer.from_checkpoints(device="cpu")
    piece = model.generate(bars=TINY_BARS if tiny else PIECE_BARS, seed=0, form="through")[0]
    tune = model.generate(bars=TINY_BARS // 2 if tiny else TUNE_BARS, seed=0, form="through")[0]
    paths = folder / "piece.mid", folder / "tune.mid"
    piece.write(paths[0])
    tune.write(paths[1])
    return paths


def _median_seconds(call, repeats: int) -> tuple:
    call(0)  # warm-up: first calls pay for lazy imports and allocation
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        call(seed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def measure(tiny: bool = False, threads=None, repeats: int = 3) -> dict:
    from bachsformer.generation import Bachsformer

    with tempfile.TemporaryDirectory(prefix="bench-editing-") as tmp:
        piece, tune = write_pieces(Path(tmp), tiny)
        model = Bachsformer.from_checkpoints(device="cpu")
        span = (2, 2) if tiny else REGENERATED
        regenerate_s, regenerate_runs = _median_seconds(lambda s: model.regenerate(piece, [span], seed=s), repeats)
        harmonise_s, harmonise_runs = _median_seconds(lambda s: model.harmonise(tune, "top", seed=s), repeats)
    return {"figures": {"regenerate_4_bars_s": regenerate_s, "harmonise_16_bars_s": harmonise_s},
            "info": {"torch_threads": threads or "the commands' own", "regenerate_runs_s": regenerate_runs,
                     "harmonise_runs_s": harmonise_runs, "regenerated": f"bars {span[0]}-{span[1]} of "
                     f"{TINY_BARS if tiny else PIECE_BARS}"}}


if __name__ == "__main__":
    import json

    print(json.dumps(measure()))
