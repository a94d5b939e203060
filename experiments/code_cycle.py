"""How many of a piece's codes come back when its decoded frames are encoded again?

A code whose notes another code would also write (a synonym) does not come back, so the share
measures how much of a VQ-VAE's codebook says the same thing twice; the README compares the
bundled VQ-VAE with one trained with the codebook-usage penalty ("The codebook-usage penalty").

    python experiments/code_cycle.py --vae checkpoints/vae.pt runs/other/vae.pt --midi-dir DIR
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from bachsformer.evaluate import DEFAULT_HELD_OUT
from bachsformer.vae_training import load_vae
from ludovico_vae.dataset import find_midi_files, load_pieces


def surviving_share(model, pieces) -> float:
    """Share of the pieces' codes that `encode(decode(codes))` gives back, frames decided cell by cell."""
    same = total = 0
    with torch.no_grad():
        for piece in pieces:
            codes = model.encode_indices(torch.from_numpy(np.asarray(piece.frames)).float())
            again = model.encode_indices(model.decode_indices(codes, binary=True))
            same += int((again == codes).sum())
            total += codes.numel()
    return same / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", nargs="+", default=["checkpoints/vae.pt"], help="VQ-VAE checkpoints")
    parser.add_argument("--midi-dir", default="../shared/corpora/goldberg")
    parser.add_argument("--pieces", nargs="+", default=list(DEFAULT_HELD_OUT), help="file stems (default: held out)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = [p for p in find_midi_files(Path(args.midi_dir)) if p.stem in args.pieces]
    if not paths:
        parser.error(f"none of {', '.join(args.pieces)} in {args.midi_dir}")
    for checkpoint in args.vae:
        model, grid = load_vae(checkpoint)[:2]
        share = surviving_share(model, load_pieces(paths, grid)[0])
        print(f"{checkpoint}: {share:.3f} of the codes come back after decode -> encode "
              f"({', '.join(p.stem for p in paths)})")


if __name__ == "__main__":
    main()
