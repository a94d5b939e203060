"""Encoding by search: a frame's codes chosen for what the decoder rebuilds from them.

The encoder proposes the nearest code at each latent cell, but the decoder reads every code
beside its neighbours, so the nearest code is often not the one the frame is rebuilt from best
(on held-out Goldberg variations another code rebuilds more notes at most cells). The search
starts from the nearest codes and visits the latent cells in turn: at each it tries the
`candidates` codes nearest to the encoder's output there and keeps the one whose decoded frame
has the lowest training loss. A frame the nearest codes already rebuild cell for cell is left as
it is, so music the VQ-VAE knows costs little. Codebook, encoder and decoder are unchanged: only
which codes a frame is written with.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TRIALS_PER_BATCH = 256  # decoded frames per network call: larger batches ran slower on the CPU (cache)


def frame_losses(model, logits: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """(B,) the weighted BCE of each frame, summed over its cells: the loss the decoder was trained on."""
    loss = F.binary_cross_entropy_with_logits(logits, frames, pos_weight=model.pos_weight, reduction="none")
    return loss.flatten(1).sum(1)


def cells_near_errors(model, logits: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """(B, latent cells) bool: the latent cells within one cell of a frame cell the decoding gets wrong.

    A code is read by the decoder's 3 x 3 convolutions, so it draws mostly its own patch of the
    frame and its neighbours'; a code far from every error has nothing to mend.
    """
    cfg = model.config
    wrong = ((logits > model.threshold) != (frames > 0.5)).any(1).float()  # (B, keys, T)
    padded = torch.zeros(len(frames), model.decoder.padded_keys, wrong.shape[2], dtype=wrong.dtype,
                         device=wrong.device)
    padded[:, model.decoder.keys] = wrong
    keys, steps = cfg.latent_shape
    regions = padded.view(len(frames), keys, -1, steps, wrong.shape[2] // steps).amax(dim=(2, 4))
    near = F.max_pool2d(regions[:, None], 3, stride=1, padding=1)[:, 0]
    return near.flatten(1) > 0


@torch.no_grad()
def search_indices(model, frames: torch.Tensor, candidates: int, sweeps: int = 1, bf16: bool = False) -> torch.Tensor:
    """frames (B, C, K, T) -> indices (B, n_indices) found by coordinate descent from the nearest codes.

    `candidates` codes are tried at each latent cell near a wrongly rebuilt cell of the frame
    (`cells_near_errors`; 1 gives the nearest codes back), `sweeps` times over the grid; a frame
    rebuilt exactly, or one a sweep leaves unchanged, is done. `bf16` decodes the trials in bfloat16.
    """
    cfg = model.config
    z = model.encoder(frames).permute(0, 2, 3, 1)  # (B, keys, steps, D)
    # (B, cells, codebook), the latent cells row-major
    scores = model.quantizer.code_scores(z.reshape(len(frames), -1, cfg.code_dim))
    k = min(candidates, cfg.codebook_size)
    nearest = scores.topk(k, dim=-1, largest=False).indices  # (B, cells, k)
    grid = scores.argmin(-1)  # (B, cells): the nearest codes, ties broken as `encode_indices` breaks them
    shape = (-1, *cfg.latent_shape)

    def decode(cells: torch.Tensor) -> torch.Tensor:
        q = model.quantizer.decode_indices(cells.reshape(shape))
        with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=bf16):
            return model.decoder(q.permute(0, 3, 1, 2)).float()

    todo = torch.arange(len(frames), device=frames.device)
    rows = max(1, TRIALS_PER_BATCH // k)
    for _ in range(sweeps if k > 1 else 0):
        logits = decode(grid[todo])
        near = cells_near_errors(model, logits, frames[todo])
        keep = near.any(1)  # frames rebuilt exactly are done
        todo, near, logits = todo[keep], near[keep], logits[keep]
        if not len(todo):
            break
        best = frame_losses(model, logits, frames[todo])
        changed = torch.zeros(len(todo), dtype=torch.bool, device=frames.device)
        for cell in range(grid.shape[1]):
            where = near[:, cell].nonzero().squeeze(1)  # positions in `todo`
            for start in range(0, len(where), rows):
                here = where[start:start + rows]
                part = todo[here]
                trial = grid[part].unsqueeze(1).repeat(1, k, 1)  # (n, k, cells)
                trial[:, :, cell] = nearest[part, cell]
                loss = frame_losses(model, decode(trial.reshape(-1, grid.shape[1])),
                                    frames[part].repeat_interleave(k, 0)).view(-1, k)
                low, choice = loss.min(1)
                better = low < best[here]
                grid[part[better], cell] = nearest[part[better], cell, choice[better]]
                best[here] = torch.where(better, low, best[here])
                changed[here] |= better
        todo = todo[changed]  # a frame no code of this sweep improved will not improve in the next
    return grid.reshape(shape)
