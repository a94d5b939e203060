"""Corpus -> frames -> MIDI: how long a corpus takes to become frames, cold and from the cache.

- cold: every MIDI file parsed, cut into frames and written to an empty cache, in a fresh Python
  process pinned to one core (`taskset -c 0` where available; OMP/MKL/OpenBLAS threads 1) so that
  no import or file state is shared between runs. `convert_s` is timed inside that process around
  `load_pieces`; `process_wall_s` is the whole process, interpreter start and imports included.
- warm: the same files loaded again from the filled cache.
- round_trip: corpus -> frames (no cache) -> MIDI, each piece written back with
  `score_to_midi(...).write`, comparable with the original's figure in EVALUATION.md.
Warm and round-trip run in this process, pinned to one core, after one untimed run. Times are
medians over `repeats`; peak RSS is `ru_maxrss` of the process that did the work.

    python benchmarks/frames.py [--corpus DIR] [--repeats N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ludovico_vae.dataset import find_midi_files, load_pieces  # noqa: E402
from ludovico_vae.midi import score_to_midi  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "goldberg"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def write_back(pieces, out_dir) -> float:
    """Write every piece as MIDI into `out_dir`; returns the seconds it took."""
    t0 = time.perf_counter()
    for i, piece in enumerate(pieces):
        score_to_midi(piece.score()).write(str(Path(out_dir) / f"{i:04d}-{Path(piece.source).stem}.mid"))
    return time.perf_counter() - t0


def cold_child(corpus_dir, cache_dir) -> dict:
    """What the fresh process does: corpus -> frames with an empty cache, timed from inside."""
    paths = find_midi_files(corpus_dir)
    t0 = time.perf_counter()
    pieces, failures = load_pieces(paths, cache_dir=cache_dir)
    convert_s = time.perf_counter() - t0
    return {"convert_s": convert_s, "files": len(paths), "pieces": len(pieces),
            "failures": [str(f) for f in failures], "frames": sum(len(p) for p in pieces),
            "keyboard_notes": sum(p.stats["keyboard_notes"] for p in pieces), "peak_rss_mb": _peak_rss_mb()}


def _pin_command() -> list:
    return ["taskset", "-c", "0"] if shutil.which("taskset") else []


def _run_cold(corpus_dir, cache_dir) -> dict:
    command = _pin_command() + [sys.executable, str(Path(__file__).resolve()), "--cold-child",
                                str(corpus_dir), str(cache_dir)]
    env = {**os.environ, **SINGLE_THREAD}
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"cold run failed ({done.returncode}): {done.stderr.strip()}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": wall}


def _round_trip(paths, out_dir) -> tuple:
    """Corpus -> frames (no cache) -> MIDI files; returns (seconds to frames, seconds to MIDI)."""
    t0 = time.perf_counter()
    pieces, _ = load_pieces(paths, use_cache=False)
    return time.perf_counter() - t0, write_back(pieces, out_dir)


def _pin_this_process():
    """Pin this process to one core; returns how to undo it (a no-op where unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        return lambda: None
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    return lambda: os.sched_setaffinity(0, allowed)


def bench_frames(corpus_dir=DEFAULT_CORPUS, repeats: int = 5) -> dict:
    corpus_dir = Path(corpus_dir)
    paths = find_midi_files(corpus_dir)
    if not paths:
        raise SystemExit(f"no MIDI files in {corpus_dir}")
    median = statistics.median
    with tempfile.TemporaryDirectory(prefix="bench-frames-") as tmp:
        tmp = Path(tmp)
        cold = [_run_cold(corpus_dir, tmp / f"cache-{i}") for i in range(repeats + 1)][1:]  # first: OS file cache
        filled = tmp / f"cache-{repeats}"
        unpin = _pin_this_process()
        try:
            load_pieces(paths, cache_dir=filled)  # untimed: imports and first reads of the entries
            warm = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                pieces, failures = load_pieces(paths, cache_dir=filled)
                warm.append(time.perf_counter() - t0)
            out_dir = tmp / "midi"
            out_dir.mkdir()
            trips = [_round_trip(paths, out_dir) for _ in range(repeats + 1)][1:]
        finally:
            unpin()
    first = cold[0]
    return {
        "corpus": str(corpus_dir),
        "files": first["files"],
        "pieces": first["pieces"],
        "failures": first["failures"] + [str(f) for f in failures],
        "frames": first["frames"],
        "keyboard_notes": first["keyboard_notes"],
        "repeats": repeats,
        "cold": {
            "convert_s": median(run["convert_s"] for run in cold),
            "process_wall_s": median(run["process_wall_s"] for run in cold),
            "convert_s_runs": [round(run["convert_s"], 4) for run in cold],
            "peak_rss_mb": max(run["peak_rss_mb"] for run in cold),
            "pinned": " ".join(_pin_command()) or "not pinned (no taskset)",
            "threads": SINGLE_THREAD,
        },
        "warm": {
            "load_s": median(warm),
            "load_s_runs": [round(t, 4) for t in warm],
        },
        "round_trip": {
            "to_frames_s": median(t for t, _ in trips),
            "to_midi_s": median(t for _, t in trips),
            "total_s": median(a + b for a, b in trips),
        },
        "peak_rss_mb_this_process": _peak_rss_mb(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of MIDI files")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold-child", nargs=2, metavar=("CORPUS", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cold_child:
        print(json.dumps(cold_child(*args.cold_child)))
        return
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    print(json.dumps(bench_frames(args.corpus, args.repeats), indent=2))


if __name__ == "__main__":
    main()
