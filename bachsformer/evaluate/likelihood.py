"""How well a transformer predicts music: bits per token of each piece, every token predicted from
a full sliding context, beside the unigram entropy of the piece's own codes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mingpt.model import GPT

from ..tokens import extras_of, select_extras


@torch.no_grad()
def piece_bits(model: GPT, piece, extra_inputs, device) -> tuple:
    """(summed bits, token count) of one piece, every token predicted from a full sliding context."""
    flat = torch.from_numpy(piece.tokens.reshape(1, -1)).to(device)
    extras = extras_of(piece)
    extras = torch.from_numpy(extras)[None].to(device)
    logits = model(flat[:, :-1], targets=flat[:, 1:], extras=select_extras(extras[:, :-1], extra_inputs))["logits"]
    nats = F.cross_entropy(logits[0], flat[0, 1:], reduction="sum")
    return float(nats) / math.log(2), flat.shape[1] - 1


def unigram_bits(pieces: list, vocab_size: int) -> float:
    """Entropy in bits of the pieces' own token frequencies: the cost of knowing only those."""
    counts = np.bincount(np.concatenate([p.tokens.reshape(-1)[1:] for p in pieces]), minlength=vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def likelihood(model: GPT, pieces: list, extra_inputs, device, map_fn=map) -> tuple:
    """Per-piece bits per token and the overall figure (weighted by tokens).

    `map_fn(fn, items)` runs the per-piece work: a distributed run passes `World.map`, which shares
    the pieces out among its ranks and hands every rank all the results.
    """
    was_training = model.training
    model.eval()
    scored = list(map_fn(lambda piece: piece_bits(model, piece, extra_inputs, device), pieces))
    rows, total_bits, total_tokens = [], 0.0, 0
    for piece, (bits, n) in zip(pieces, scored):
        rows.append({"piece": piece.name, "tokens": n, "bits_per_token": bits / n,
                     "unigram_bits_per_token": unigram_bits([piece], model.config.vocab_size)})
        total_bits, total_tokens = total_bits + bits, total_tokens + n
    model.train(was_training)
    return rows, (total_bits / total_tokens if total_tokens else float("nan"))
