"""Does a model write in the key it is asked for? `python -m bachsformer.evaluate keys` generates
pieces in each of the 24 keys and estimates the key of each, by the same key profiles as every
other key figure of the project.
"""
from __future__ import annotations

import numpy as np

from ..cli import format_table, positive_int, progress, write_json
from ..generation import Bachsformer
from ..tonality import PITCH_CLASSES, closely_related, estimate_key, key_name


def key_accuracy(model: Bachsformer, samples_per_key: int = 5, seed: int = 0, **options) -> list:
    """One row per asked key: the keys found in its `samples_per_key` pieces (seeds seed, seed + 1, ...)."""
    rows = []
    for key in progress(range(2 * PITCH_CLASSES), "keys"):
        found = []
        for piece in model.generate(seed=seed, num_samples=samples_per_key, key=key, **options):
            notes = piece.midi.instruments[0].notes
            pitch = np.array([n.pitch for n in notes])
            start, end = np.array([n.start for n in notes]), np.array([n.end for n in notes])
            found.append(estimate_key(pitch, start, end))  # seconds weigh notes alike at one tempo
        rows.append({"asked": key_name(key), "found": [key_name(k) for k in found],
                     "hits": sum(k == key for k in found),
                     "related": sum(k is not None and closely_related(k, key) for k in found)})
    return rows


def add_keys_command(commands, default_checkpoints) -> None:
    keys = commands.add_parser("keys", help="pieces asked for in each of the 24 keys, and the keys they are in")
    keys.add_argument("--checkpoint-dir", default=str(default_checkpoints), help="holds vae.pt and transformer.pt")
    keys.add_argument("--samples", type=positive_int, default=5, help="pieces per key (default: %(default)s)")
    keys.add_argument("--seed", type=int, default=0, help="pieces of seeds SEED, SEED + 1, ... in every key")
    keys.add_argument("--form", choices=("binary", "through"), help="as generate.py's --form")
    keys.add_argument("--bars", type=positive_int, default=16, help="bars of a through-composed piece")
    keys.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    keys.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    keys.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    keys.set_defaults(run=run_keys)


def run_keys(args) -> int:
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, args.device)
    rows = key_accuracy(model, args.samples, args.seed, form=args.form, bars=args.bars)
    n = sum(len(r["found"]) for r in rows)
    hits, related = sum(r["hits"] for r in rows), sum(r["related"] for r in rows)
    print(format_table(["asked", "found", "in the key", "related"],
                       [[r["asked"], ", ".join(r["found"]), f"{r['hits']}/{len(r['found'])}",
                         f"{r['related']}/{len(r['found'])}"] for r in rows], right={2, 3}))
    print(f"{n} pieces: in the key asked for {hits / n:.0%}, in it or a closely related key {related / n:.0%}")
    if args.json:
        write_json(args.json, {"command": "keys", "checkpoint_dir": str(args.checkpoint_dir), "pieces": n,
                               "accuracy": hits / n, "related": related / n, "keys": rows})
    return 0
