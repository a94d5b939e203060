"""How faithfully the VQ-VAE rebuilds pieces: note F1, cell F1 and codebook use, per piece."""
from __future__ import annotations

import numpy as np
import torch

from ludovico_vae.frames import Piece, frames_to_roll, roll_to_notes
from ludovico_vae.model import VQVAE

from ..tokens import encode
from .metrics import cell_f1, note_f1


@torch.no_grad()
def reconstruct(model: VQVAE, frames: np.ndarray, device, batch_size: int = 1024) -> tuple:
    """Frames `(N, 2, 88, T)` of one piece -> (reconstruction, the same shape in uint8; indices `(N, 16)`).

    The piece is rebuilt as `generate.py` writes one: decoded note by note (`VQVAE.decode_pieces`).
    """
    indices = encode(model, frames, device, batch_size)
    if not len(indices):
        return np.zeros_like(frames), indices
    was_training = model.training
    model.eval()
    recon = model.decode_pieces(torch.from_numpy(indices).to(device)[None], chunk=batch_size)[0]
    model.train(was_training)
    return recon, indices


def codebook_stats(indices: np.ndarray, codebook_size: int) -> dict:
    """Codes used and perplexity (exp of the entropy of code frequencies) of a set of indices."""
    counts = np.bincount(indices.ravel(), minlength=codebook_size).astype(np.float64)
    if counts.sum() == 0:
        return {"codes_used": 0, "perplexity": 0.0}
    p = counts / counts.sum()
    entropy = -(p[p > 0] * np.log(p[p > 0])).sum()
    return {"codes_used": int((counts > 0).sum()), "perplexity": float(np.exp(entropy))}


def piece_metrics(piece: Piece, recon: np.ndarray, reference=None) -> dict:
    """F1s of a reconstruction against `reference` notes (default: the notes of the piece's frames)."""
    T = piece.grid.steps_per_quarter
    if reference is None:
        reference = roll_to_notes(frames_to_roll(piece.frames), T)
    else:
        reference = reference.shifted(piece.lead_in)
    estimate = roll_to_notes(frames_to_roll(recon), T)
    scores = note_f1(reference, estimate)
    scores["cell_f1"] = cell_f1(piece.frames, recon)
    return scores


def evaluate_piece(model: VQVAE, piece: Piece, device, reference=None) -> tuple:
    """(metrics row, indices) of one piece's reconstruction."""
    recon, indices = reconstruct(model, piece.frames, device)
    row = {"piece": piece.name, **piece_metrics(piece, recon, reference)}
    row.update(codebook_stats(indices, model.config.codebook_size))
    return row, indices


def evaluate_pieces(model: VQVAE, pieces: list, device, references=None, map_fn=map) -> tuple:
    """Per-piece metrics and a summary (means, minimum note F1, codebook use over all pieces).

    `map_fn(fn, items)` runs the per-piece work: a distributed run passes `World.map`, which shares
    the pieces out among its ranks and hands every rank all the results.
    """
    references = [None] * len(pieces) if references is None else references
    results = list(map_fn(lambda i: evaluate_piece(model, pieces[i], device, references[i]), range(len(pieces))))
    rows, all_indices = [row for row, _ in results], [indices for _, indices in results]
    summary = {}
    if rows:
        for key in ("note_f1", "onset_f1", "cell_f1"):
            summary[key] = float(np.mean([r[key] for r in rows]))
        summary["min_note_f1"] = float(min(r["note_f1"] for r in rows))
        summary.update(codebook_stats(np.concatenate(all_indices), model.config.codebook_size))
    return rows, summary
