"""How much of the gap in pitch-class overlap is a bias the whole model shares, and how much is
piece-to-piece variety? Corrects the first and scores what is left.

The correction is a logit bias per (index in frame, code): lam * sum over pitch classes of the
notes the code strikes there (on average, over the training pieces rebuilt through the VAE in
every transposition) times log(corpus share / sample share). The sample shares come from 20
pieces at the calibration seed; the scores from other seeds, so the correction is never judged
on the samples it was fitted to.

    python experiments/pitch_calibration.py --lams 0 1 2 --calibrate-seed 10 --seeds 0 1 2
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import mingpt.model as gpt
from bachsformer.evaluate import DEFAULT_HELD_OUT
from bachsformer.generation import Bachsformer
from bachsformer.music_stats import PITCH_CLASSES, compare, pitch_class_counts
from bachsformer.reconstruction import reconstruct
from ludovico_vae.dataset import find_midi_files, load_piece
from ludovico_vae.frames import shift_keys
from ludovico_vae.midi import LOWEST_PITCH, read_midi

TRANSPOSITIONS = range(-5, 7)  # those the bundled transformer was trained on


def code_pitch_classes(model: Bachsformer, paths: list) -> np.ndarray:
    """(indices_per_frame, codebook_size, 12): mean notes of each pitch class struck in the patch of
    latent cell p while it holds code c, in the VAE's rebuilding of the training pieces."""
    vae, (cells_k, cells_t) = model.vae, model.vae.config.latent_shape
    n_keys, steps = model.grid.frame_shape[1:]
    keys_per_cell, steps_per_cell = -(-n_keys // cells_k), steps // cells_t
    classes = (LOWEST_PITCH + np.arange(n_keys)) % PITCH_CLASSES
    notes = np.zeros((cells_k * cells_t, vae.config.codebook_size, PITCH_CLASSES))
    seen = np.zeros((cells_k * cells_t, vae.config.codebook_size))
    for path in paths:
        piece = load_piece(path, model.grid)
        for semitones in TRANSPOSITIONS:
            recon, codes = reconstruct(vae, shift_keys(piece.frames, semitones), "cpu")
            for k in range(cells_k):
                keys = slice(k * keys_per_cell, min((k + 1) * keys_per_cell, n_keys))
                for t in range(cells_t):
                    cell = vae.config.index_of(k, t)
                    struck = recon[:, 0, keys, t * steps_per_cell:(t + 1) * steps_per_cell].sum(-1)  # (N, keys)
                    np.add.at(seen[cell], codes[:, cell], 1)
                    for j, key in enumerate(range(keys.start, keys.stop)):
                        np.add.at(notes[cell, :, classes[key]], codes[:, cell], struck[:, j])
    return notes / np.maximum(seen, 1)[..., None]


def with_logit_bias(bias: dict):
    """Patch the cached decoder so that every logit row gets bias["rows"][position % period]."""
    prefill, fast_step = gpt.KVCacheDecoder.prefill, gpt.KVCacheDecoder.fast_step

    def biased(logits, decoder):
        rows = bias.get("rows")
        return logits if rows is None else logits + rows[decoder.pos % len(rows)]

    gpt.KVCacheDecoder.prefill = lambda self, idx, extras=None: biased(prefill(self, idx, extras), self)
    gpt.KVCacheDecoder.fast_step = lambda self, idx, extra=None: biased(fast_step(self, idx, extra), self)


def sample_notes(model: Bachsformer, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        notes = {}
        # the setting this study measured: top-p 0.9, unguided (the default before key guidance)
        for i, piece in enumerate(model.generate(bars=32, seed=seed, num_samples=20, top_p=0.9, key_guidance=0.0)):
            piece.midi.write(f"{tmp}/{i}.mid")
            notes[i] = read_midi(f"{tmp}/{i}.mid").notes
    return notes


def shares(notes) -> np.ndarray:
    counts = sum(pitch_class_counts(n) for n in notes).astype(np.float64)
    return counts / counts.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--reference", default="../shared/corpora/goldberg", help="held-out pieces are set aside")
    parser.add_argument("--lams", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--calibrate-seed", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)

    paths = [p for p in find_midi_files(Path(args.reference)) if p.stem not in DEFAULT_HELD_OUT]
    reference = {p.stem: read_midi(p).notes for p in paths}
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, device="cpu")
    bias = {}
    with_logit_bias(bias)
    corpus, samples = shares(reference.values()), shares(sample_notes(model, args.calibrate_seed).values())
    weights = np.log(corpus / samples)
    names = "C C# D D# E F F# G G# A A# B".split()
    print("corpus share    " + " ".join(f"{n}:{x:.3f}" for n, x in zip(names, corpus)))
    print("samples' share  " + " ".join(f"{n}:{x:.3f}" for n, x in zip(names, samples)))
    per_code = torch.tensor(code_pitch_classes(model, paths) @ weights, dtype=torch.float32)  # (16, V)
    print("lam   pitch-class overlap per seed   pooled  scale  duration  copied")
    for lam in args.lams:
        bias["rows"] = lam * per_code if lam else None
        rows = []
        for seed in args.seeds:
            notes = sample_notes(model, seed)
            s = compare(notes, reference)["summary"]
            pooled = np.minimum(shares(notes.values()), corpus).sum()
            rows.append([s["pitch_class_overlap"], pooled, s["scale_consistency"], s["duration_overlap"],
                         s["copied_4beat_share"]])
        rows = np.array(rows)
        print(f"{lam:<4g}  " + " / ".join(f"{x:.3f}" for x in rows[:, 0])
              + "         {:.3f}   {:.3f}  {:.3f}     {:.3f}".format(*rows[:, 1:].mean(0)), flush=True)


if __name__ == "__main__":
    main()
