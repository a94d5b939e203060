"""Where the time of `python generate.py` goes: each phase of one process, in order.

    python benchmarks/generate_phases.py [--seeds 0 1 2]

Times `import torch`, the rest of the imports, loading the bundled pair, then for each seed the
piece `generate.py --seed S` writes: each sampling call (its prompt, new frames and rows, rows
counting key guidance's contrasts), the cadence and key checks (VQ-VAE decoding of candidates),
the final decoding, and writing the MIDI. One thread, as generate.py samples. The whole-process
figure is `python -m benchmarks --only generate`; this says what it is made of.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@contextmanager
def timed(owner, name: str, totals: dict, log=None):
    """Within the block, calls of method `name` of class `owner` add to totals[name] (and are logged)."""
    original = getattr(owner, name)

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        result = original(self, *args, **kwargs)
        seconds = time.perf_counter() - start
        totals[name] += seconds
        if log is not None:
            log(self, args, seconds)
        return result
    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    import torch
    torch_s = time.perf_counter() - start
    start = time.perf_counter()
    from bachsformer.generation import Bachsformer
    rest_s = time.perf_counter() - start
    start = time.perf_counter()
    model = Bachsformer.from_checkpoints(device="cpu")
    print(f"import torch {torch_s:.2f} s, other imports {rest_s:.2f} s, loading the pair {time.perf_counter() - start:.2f} s")
    torch.set_num_threads(1)
    per = model.indices_per_frame

    def log_sample(self, args, seconds):
        prompt, frames, extras, seeds = args[:4]
        copies = 1 + (2 if not self.unkeyed else 1) * bool(args[4]["key_guidance"] and "key" in self.extra_inputs)
        print(f"  sampling: {prompt.shape[1] // per} frames of context, {frames} new frames, "
              f"{len(seeds)} x {copies} rows: {seconds:.3f} s ({len(seeds) * frames * per / seconds:,.0f} tokens/s)")

    totals = defaultdict(float)
    with timed(Bachsformer, "_sample", totals, log_sample), timed(Bachsformer, "_scores", totals), \
            timed(Bachsformer, "_decode", totals):
        for seed in args.seeds:
            phases(model, seed, totals)
    return 0


def phases(model, seed: int, totals: dict) -> None:
    """Write the piece of `seed` and print where its time went."""
    totals.clear()
    print(f"seed {seed}:")
    start = time.perf_counter()
    piece = model.generate(seed=seed)[0]
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    piece.midi.write(io.BytesIO())
    midi_s = time.perf_counter() - start
    print(f"  total {generate_s:.2f} s: sampling {totals['_sample']:.2f}, cadence and key checks "
          f"{totals['_scores']:.2f}, decoding {totals['_decode']:.2f}, the rest "
          f"{generate_s - sum(totals.values()):.2f}; writing the MIDI {midi_s:.3f} s")


if __name__ == "__main__":
    sys.exit(main())
