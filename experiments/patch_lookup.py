"""What a purely local code of the frame could reach: no network, just a table of patches.

Cuts every frame into the patches of a latent grid (8 x 2 by default: 12 keys by an eighth note,
as the VQ-VAE's indices are laid out), counts the patches of the training pieces in all twelve
transpositions, keeps the K most common as the "codebook", and rebuilds each held-out piece
with the nearest entry (Hamming distance) for each of its patches. It prints the held-out note
F1 and the code use that the VQ-VAE's evaluation prints, for comparison with a trained model:

    python experiments/patch_lookup.py --midi-dir ../shared/corpora/goldberg [--size 1024] [--grid 8x2 4x4]
"""
import argparse
import collections
from pathlib import Path

import numpy as np
import torch

from bachsformer.reconstruction import codebook_stats, piece_metrics
from bachsformer.vae_training import GOLDBERG_HELD_OUT
from ludovico_vae.dataset import find_midi_files, load_pieces
from ludovico_vae.frames import FrameGrid, shift_keys

PADDED_KEYS, LOW_PAD = 96, 4  # the VQ-VAE pads 88 keys to 96, four below


def to_patches(frames: np.ndarray, grid: tuple) -> np.ndarray:
    """(N, C, 88, T) -> (N * h * w, C * 96/h * T/w) flattened patches, row-major over the grid."""
    (h, w), (n, c, _, t) = grid, frames.shape
    padded = np.zeros((n, c, PADDED_KEYS, t), dtype=np.uint8)
    padded[:, :, LOW_PAD:LOW_PAD + frames.shape[2]] = frames
    patches = padded.reshape(n, c, h, PADDED_KEYS // h, w, t // w).transpose(0, 2, 4, 1, 3, 5)
    return patches.reshape(n * h * w, -1)


def from_patches(patches: np.ndarray, grid: tuple, shape: tuple) -> np.ndarray:
    """The inverse of `to_patches`, back to frames of `shape` (N, C, 88, T)."""
    (h, w), (n, c, keys, t) = grid, shape
    frames = patches.reshape(n, h, w, c, PADDED_KEYS // h, t // w).transpose(0, 3, 1, 4, 2, 5)
    return frames.reshape(n, c, PADDED_KEYS, t)[:, :, LOW_PAD:LOW_PAD + keys]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--midi-dir", type=Path, required=True)
    parser.add_argument("--size", type=int, nargs="+", default=[1024], help="table sizes to try")
    parser.add_argument("--grid", nargs="+", default=["8x2"], help="latent grids (keys x steps) to try")
    args = parser.parse_args()
    files = find_midi_files(args.midi_dir)
    held = [f for f in files if f.stem in GOLDBERG_HELD_OUT]
    train_pieces, _ = load_pieces([f for f in files if f not in held], FrameGrid(steps_per_quarter=24))
    held_pieces, _ = load_pieces(held, FrameGrid(steps_per_quarter=24))
    train = np.concatenate([p.frames for p in train_pieces])
    for spec in args.grid:
        grid = tuple(int(v) for v in spec.split("x"))
        seen = np.concatenate([to_patches(shift_keys(train, s), grid) for s in range(-5, 7)])
        counts = collections.Counter(map(bytes, seen))
        empty_share = counts[bytes(seen.shape[1])] / len(seen)
        print(f"grid {spec}: {len(counts)} distinct training patches, {empty_share:.0%} of them empty")
        for size in args.size:
            table = np.stack([np.frombuffer(p, dtype=np.uint8) for p, _ in counts.most_common(size)])
            table_t = torch.from_numpy(table).float()
            f1s, indices = [], []
            for piece in held_pieces:
                x = torch.from_numpy(to_patches(piece.frames, grid)).float()
                hamming = x.sum(1, keepdim=True) + table_t.sum(1) - 2 * x @ table_t.t()
                nearest = hamming.argmin(1).numpy()
                indices.append(nearest)
                recon = from_patches(table[nearest], grid, piece.frames.shape)
                row = piece_metrics(piece, recon)
                f1s.append(row["note_f1"])
                print(f"  {size:>5} entries, {piece.name}: note F1 {row['note_f1']:.3f}, "
                      f"onset F1 {row['onset_f1']:.3f}, cell F1 {row['cell_f1']:.3f}")
            use = codebook_stats(np.concatenate(indices), len(table))
            print(f"  {size:>5} entries: mean note F1 {np.mean(f1s):.3f}, held-out perplexity "
                  f"{use['perplexity']:.1f} ({use['perplexity'] / size:.1%} of the table), "
                  f"{use['codes_used']} entries used")


if __name__ == "__main__":
    main()
