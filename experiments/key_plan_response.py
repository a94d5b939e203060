"""Does a transformer trained with the local-key input follow the keys it is told? Samples 20
pieces under a plan of one key throughout, for several keys, and prints their pitch-class shares.

    python experiments/key_plan_response.py runs/ckpt-local-key --keys G D em Bb --bars 16 --seed 10
"""
import argparse
import tempfile

import numpy as np
import torch

from bachsformer.generation import Bachsformer
from bachsformer.music_stats import pitch_class_counts
from ludovico_vae.midi import read_midi

NAMES = "C C# D D# E F F# G G# A A# B".split()
KEYS = {**{n: i for i, n in enumerate(NAMES)}, **{n.lower() + "m": 12 + i for i, n in enumerate(NAMES)},
        "Bb": 10, "Eb": 3}  # the order of music_stats.SCALES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint_dir", help="a pair whose transformer has the local_key input")
    parser.add_argument("--keys", nargs="+", default=["G", "D", "em", "Bb"], help="e.g. G, D, em, Bb")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, device="cpu")
    print("plan  " + " ".join(f"{n:>5}" for n in NAMES))
    for key in args.keys:
        model.key_plans = [{"name": key, "meter": list(model.meter), "keys": [KEYS[key]]}]
        counts = np.zeros(len(NAMES))
        with tempfile.TemporaryDirectory() as tmp:
            pieces = model.generate(bars=args.bars, seed=args.seed, num_samples=20, top_p=0.9, key_guidance=0.0)
            for i, piece in enumerate(pieces):  # as measured: top-p 0.9, unguided
                piece.midi.write(f"{tmp}/{i}.mid")
                counts += pitch_class_counts(read_midi(f"{tmp}/{i}.mid").notes)
        print(f"{key:5} " + " ".join(f"{x:5.3f}" for x in counts / counts.sum()))


if __name__ == "__main__":
    main()
