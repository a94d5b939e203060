"""The Ludovico VQ-VAE: one quarter-note piano-roll frame <-> a small grid of codebook indices.

Owns the model config, the convolutional encoder and decoder, and the reconstruction loss.
A frame `(C, 88, T)` becomes `latent_keys x latent_steps` indices (8 x 2 = 16 by default), the
tokens the stage-2 transformer learns to continue.

Shapes with the defaults (C=2, T=24, patch (4, 4), latent grid (8, 2), widths (W1, W2)):
    frames (B, 2, 88, 24) -patch conv, keys padded 4 + 88 + 4-> (B, W1, 24, 6)
    -res blocks, conv 3x3 stride 3-> (B, W2, 8, 2) -res blocks, 1x1-> z (B, D, 8, 2)
    -quantize-> (B, D, 8, 2) and indices (B, 16); the decoder mirrors this back to logits
    (B, 2, 96, 24) and crops them to (B, 2, 88, 24).

All the work is done on the two coarse grids: the first layer is a non-overlapping patch
convolution and the last a 1x1 convolution unfolded into patches, so nothing but those two and
the loss touches the 88 x 24 cells. That is what makes it fast on a small CPU: about 2,500
frames/s of training at batch 256 on 2 idle cores (benchmarks/vae_training.py), against some
350 for the original.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .decoding import NoteDecoder
from .frames import FrameGrid
from .quantizer import RESTARTS, VectorQuantizer
from .search import search_indices


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


MIXES = ("local", "global", "patch")
DISTINCT_LOGITS_BYTES = 64 * 2**20  # what `decode_pieces` may hold to decode each distinct frame once
INDEX_ORDERS = ("band", "time")


@dataclass
class VQVAEConfig:
    """Every size and loss setting of the model; checkpoints keep `to_dict()` to rebuild it."""

    latent_keys: int = 4  # key bands of two octaves...
    latent_steps: int = 4  # ...by sixteenth notes: 16 indices a frame
    patch: tuple[int, int] = (4, 2)  # (keys, steps) cut by the first, non-overlapping convolution
    codebook_size: int = 512
    code_dim: int = 32
    widths: tuple[int, int] = (32, 64)  # channels at the patch grid and at the latent grid
    n_res_blocks: int = 2  # per resolution, in the encoder and again in the decoder
    commitment_weight: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0  # EMA count (vectors per batch) under which a code restarts
    # which encoder output a dead code restarts at: "uniform" at random, "error" in proportion
    # to its squared distance from its code (ludovico_vae.quantizer)
    dead_code_restart: str = "uniform"
    # compare encoder outputs and codes by angle, on the unit sphere (Yu et al. 2022, improved VQGAN)
    normalize_codes: bool = False
    # weight of the codebook-usage penalty (`VectorQuantizer.usage_loss`); 0 turns it off: it
    # spreads codes, but the transformer writes less tonal music on them (docs/results.md)
    usage_weight: float = 0.0
    usage_temperature: float = 0.1  # in squared distance between an encoder output and a code
    # BCE weight of "on" cells, one per channel or one for all: onsets are the sparser channel
    pos_weight: float | tuple[float, ...] = (4.0, 2.0)
    focal_gamma: float = 0.0  # > 0 multiplies each cell's BCE by (1 - p_true) ** gamma
    # "local": each index codes its own patch of the frame (a 1x1 / 3x3 convolution next to the
    # quantizer); "global": one linear layer over the whole latent grid on each side of the
    # quantizer, so the 16 indices share out the frame's content wherever it lies; "patch": each
    # index sees and draws its own patch of the frame and nothing else.
    mix: str = "local"
    # nats a decoded note pays on top of what its cells say: pieces are decoded note by note
    # (ludovico_vae.decoding), which rebuilds more notes than deciding each cell on its own;
    # null decides each cell on its own, as `decode_indices(binary=True)` does
    note_cost: float | None = 2.0
    # the order of a frame's indices, which the transformer writes them in: "time" gives every key
    # band of the first time step, then the next step; "band" every step of one band, then the next
    index_order: str = "time"
    # codes tried at each latent cell when encoding (ludovico_vae.search): 0 or 1 writes each cell
    # with its nearest code; more chooses, cell by cell, the code the decoder rebuilds the frame from best
    search_candidates: int = 0
    search_sweeps: int = 1  # passes of that search over the latent grid
    # decode the search's trials in bfloat16: twice as fast on a CPU with bf16 units, and as good
    # (docs/results.md); which code wins a close trial may differ from fp32
    search_bf16: bool = False

    def __post_init__(self):
        for name in ("latent_keys", "latent_steps", "codebook_size", "code_dim"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("search_candidates", "search_sweeps"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if type(self.n_res_blocks) is not int or self.n_res_blocks < 0:
            raise ValueError(f"n_res_blocks must be a non-negative integer, got {self.n_res_blocks!r}")
        for name in ("patch", "widths"):
            value = getattr(self, name)
            if (not isinstance(value, (tuple, list)) or len(value) != 2
                    or not all(type(v) is int and v > 0 for v in value)):
                raise ValueError(f"{name} must be two positive integers, got {value!r}")
            setattr(self, name, tuple(value))
        weights = (self.pos_weight,) if _is_number(self.pos_weight) else self.pos_weight
        if (not isinstance(weights, (tuple, list)) or not weights
                or not all(_is_number(w) and w > 0 for w in weights)):
            raise ValueError(f"pos_weight must be one positive number or one per channel, got {self.pos_weight!r}")
        self.pos_weight = float(weights[0]) if _is_number(self.pos_weight) else tuple(float(w) for w in weights)
        for name in ("ema_decay", "commitment_weight", "dead_code_threshold", "focal_gamma", "usage_weight",
                     "usage_temperature"):
            if not _is_number(getattr(self, name)):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}")
        for name in ("normalize_codes", "search_bf16"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.dead_code_restart not in RESTARTS:
            raise ValueError(f"dead_code_restart must be one of {', '.join(RESTARTS)}, "
                             f"got {self.dead_code_restart!r}")
        if self.note_cost is not None and not (_is_number(self.note_cost) and self.note_cost >= 0):
            raise ValueError(f"note_cost must be a non-negative number or null, got {self.note_cost!r}")
        if self.index_order not in INDEX_ORDERS:
            raise ValueError(f"index_order must be one of {', '.join(INDEX_ORDERS)}, "
                             f"got {self.index_order!r}")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}, got {self.mix!r}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be at least 2, got {self.codebook_size}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")
        for name in ("commitment_weight", "dead_code_threshold", "focal_gamma", "usage_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.usage_temperature <= 0:
            raise ValueError(f"usage_temperature must be positive, got {self.usage_temperature}")

    def check_frame(self, frame_shape: tuple) -> None:
        """Refuse a frame `(C, K, T)` this model cannot cut into its latent grid."""
        channels, keys, steps = frame_shape
        for name, value in zip(("channels", "keys", "steps"), frame_shape):
            if type(value) is not int or value <= 0:
                raise ValueError(f"the frame's {name} must be a positive integer, got {value!r}")
        if self.latent_keys > keys:
            raise ValueError(f"latent_keys={self.latent_keys} is more than the frame's {keys} keys")
        if steps % (self.latent_steps * self.patch[1]):
            raise ValueError(f"the frame's {steps} steps must be divisible by latent_steps * patch[1] = "
                             f"{self.latent_steps} * {self.patch[1]} (frames are not padded in time; "
                             "change patch or latent_steps)")
        if not _is_number(self.pos_weight) and len(self.pos_weight) != channels:
            raise ValueError(f"pos_weight must be one positive number or one per channel ({channels}), "
                             f"got {self.pos_weight!r}")

    @property
    def latent_shape(self) -> tuple:
        return (self.latent_keys, self.latent_steps)

    @property
    def n_indices(self) -> int:
        return self.latent_keys * self.latent_steps

    def index_of(self, band: int, step: int) -> int:
        """Where the code of latent cell (band, step) lies among a frame's indices."""
        if self.index_order == "time":
            return step * self.latent_keys + band
        return band * self.latent_steps + step

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VQVAEConfig":
        """Build from a dict (a checkpoint, YAML); an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown VQVAEConfig key(s): {', '.join(unknown)}")
        return cls(**d)


class ResBlock(nn.Module):
    """x + 1x1(relu(3x3(relu(x)))), as in the VQ-VAE paper: the bottleneck halves the 3x3 cost."""

    def __init__(self, width: int):
        super().__init__()
        self.conv3 = nn.Conv2d(width, width // 2 or 1, 3, padding=1)
        self.conv1 = nn.Conv2d(width // 2 or 1, width, 1)

    def forward(self, x):
        return x + self.conv1(F.relu(self.conv3(F.relu(x))))


class Unpatch(nn.Module):
    """Transposed convolution with kernel == stride, written as a 1x1 conv and a reshape.

    The same function as `nn.ConvTranspose2d(w, c, p, stride=p)`, but it runs on the fast 1x1
    convolution path: on the CPU the transposed one took 23 ms of a 105 ms training step.
    (B, W, H, T) -> (B, C * ph * pw, H, T) -> (B, C, H * ph, T * pw)
    """

    def __init__(self, in_channels: int, out_channels: int, patch: tuple):
        super().__init__()
        self.out_channels, self.patch = out_channels, tuple(patch)
        self.proj = nn.Conv2d(in_channels, out_channels * self.patch[0] * self.patch[1], 1)

    def forward(self, x):
        (ph, pw), (b, _, h, w) = self.patch, x.shape
        x = self.proj(x).view(b, self.out_channels, ph, pw, h, w)
        return x.permute(0, 1, 4, 2, 5, 3).reshape(b, self.out_channels, h * ph, w * pw)


class GridMix(nn.Module):
    """One linear layer over a whole (B, C, H, W) grid: every output cell sees every input cell."""

    def __init__(self, in_channels: int, out_channels: int, shape: tuple):
        super().__init__()
        self.out_channels, self.shape = out_channels, tuple(shape)
        cells = self.shape[0] * self.shape[1]
        self.proj = nn.Linear(in_channels * cells, out_channels * cells)

    def forward(self, x):
        return self.proj(x.flatten(1)).view(x.shape[0], self.out_channels, *self.shape)


def _padded_keys(cfg: VQVAEConfig, keys: int) -> int:
    """Keys after padding: the next multiple of latent_keys * patch[0] (88 -> 96).

    88 = 8 x 11 has no factor to split over two strided stages, 96 = 8 x 4 x 3 does, and a
    latent row then covers 12 keys, about one octave.
    """
    unit = cfg.latent_keys * cfg.patch[0]
    return math.ceil(keys / unit) * unit


def _key_padding(cfg: VQVAEConfig, keys: int) -> int:
    """Rows of padding below the lowest key (and at least as many above the highest)."""
    return math.ceil((_padded_keys(cfg, keys) - keys) / 2)


def _down(cfg: VQVAEConfig, frame_shape: tuple) -> tuple:
    """Stride of the second stage, from the patch grid to the latent grid: (3, 3) by default."""
    _, keys, steps = frame_shape
    return (_padded_keys(cfg, keys) // cfg.patch[0] // cfg.latent_keys,
            steps // cfg.patch[1] // cfg.latent_steps)


def _to_patches(x: torch.Tensor, latent_shape: tuple) -> torch.Tensor:
    """(B, C, H, W) -> (B * h * w, C, H / h, W / w): each latent cell's patch as its own image."""
    (h, w), (b, c, H, W) = latent_shape, x.shape
    x = x.view(b, c, h, H // h, w, W // w).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * h * w, c, H // h, W // w)


def _from_patches(x: torch.Tensor, latent_shape: tuple) -> torch.Tensor:
    """The inverse of `_to_patches`: (B * h * w, C, P, Q) -> (B, C, h * P, w * Q)."""
    (h, w), (n, c, P, Q) = latent_shape, x.shape
    x = x.view(n // (h * w), h, w, c, P, Q).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n // (h * w), c, h * P, w * Q)


class Encoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig, frame_shape: tuple):
        super().__init__()
        w1, w2 = cfg.widths
        channels, keys, _ = frame_shape
        self.cfg, self.patches = cfg, cfg.mix == "patch"
        pad = _key_padding(cfg, keys)
        self.key_padding = (0, 0, pad, _padded_keys(cfg, keys) - keys - pad)  # F.pad order: T, then keys
        self.net = nn.Sequential(
            # the convolution pads the keys itself (88 + 2 * 4 = 96); an odd remainder falls off
            # the end of the strided grid, so only padding is ever dropped
            nn.Conv2d(channels, w1, cfg.patch, stride=cfg.patch,
                      padding=(0 if self.patches else pad, 0)),  # (B, C, 88, 24) -> (B, W1, 24, 6)
            *[ResBlock(w1) for _ in range(cfg.n_res_blocks)],
            nn.ReLU(),
            nn.Conv2d(w1, w2, _down(cfg, frame_shape), stride=_down(cfg, frame_shape)),  # (B, W1, 24, 6) -> (B, W2, 8, 2)
            *[ResBlock(w2) for _ in range(cfg.n_res_blocks)],
            nn.ReLU(),
            # (B, W2, 8, 2) -> (B, D, 8, 2)
            GridMix(w2, cfg.code_dim, cfg.latent_shape) if cfg.mix == "global"
            else nn.Conv2d(w2, cfg.code_dim, 1),
        )

    def forward(self, frames):
        if not self.patches:
            return self.net(frames)
        z = self.net(_to_patches(F.pad(frames, self.key_padding), self.cfg.latent_shape))  # (B*16, D, 1, 1)
        return _from_patches(z, self.cfg.latent_shape)


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig, frame_shape: tuple):
        super().__init__()
        w1, w2 = cfg.widths
        channels, keys, _ = frame_shape
        self.cfg, self.patches = cfg, cfg.mix == "patch"
        self.keys = slice(_key_padding(cfg, keys), _key_padding(cfg, keys) + keys)
        self.padded_keys = _padded_keys(cfg, keys)  # rows drawn before the keys are cut out
        if cfg.mix == "global":
            first = GridMix(cfg.code_dim, w2, cfg.latent_shape)
        else:  # a patch sees only its own code
            first = nn.Conv2d(cfg.code_dim, w2, 1 if self.patches else 3, padding=0 if self.patches else 1)
        self.net = nn.Sequential(
            first,  # (B, D, 8, 2) -> (B, W2, 8, 2)
            *[ResBlock(w2) for _ in range(cfg.n_res_blocks)],
            nn.ReLU(),
            Unpatch(w2, w1, _down(cfg, frame_shape)),  # (B, W2, 8, 2) -> (B, W1, 24, 6)
            *[ResBlock(w1) for _ in range(cfg.n_res_blocks)],
            nn.ReLU(),
            Unpatch(w1, channels, cfg.patch),  # (B, W1, 24, 6) -> (B, C, 96, 24)
        )

    def forward(self, z):
        if self.patches:
            z = _to_patches(z, self.cfg.latent_shape)  # (B*16, D, 1, 1)
            return _from_patches(self.net(z), self.cfg.latent_shape)[:, :, self.keys]
        return self.net(z)[:, :, self.keys]  # (B, C, 96, T) -> (B, C, 88, T)


class VQVAE(nn.Module):
    """Encoder, EMA quantizer and decoder; `forward` trains, the index methods serve stage 2.

    `encode_indices` does not depend on train or eval mode (no dropout, no batch statistics, and
    only `forward` in training mode moves the codebook); `decode_indices(encode_indices(x))` is
    exactly `forward(x)["logits"]` in eval mode.
    """

    def __init__(self, config: VQVAEConfig | None = None, frame_shape: tuple | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else VQVAEConfig()
        # (channels, keys, steps): the grid's (`FrameGrid.frame_shape`), which owns it; never a config entry
        self.frame_shape = tuple(frame_shape) if frame_shape is not None else FrameGrid().frame_shape
        cfg.check_frame(self.frame_shape)
        self.encoder = Encoder(cfg, self.frame_shape)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, decay=cfg.ema_decay,
                                         commitment_weight=cfg.commitment_weight,
                                         dead_code_threshold=cfg.dead_code_threshold,
                                         restart=cfg.dead_code_restart,
                                         normalize=cfg.normalize_codes,
                                         usage_weight=cfg.usage_weight,
                                         usage_temperature=cfg.usage_temperature)
        self.decoder = Decoder(cfg, self.frame_shape)
        self.register_buffer("pos_weight", torch.tensor(cfg.pos_weight).view(-1, 1, 1), persistent=False)
        # The weighted loss trains logits towards log(w * p / (1 - p)), so a cell is on at p > 1/2
        # where its logit passes log(w): a doubtful onset would split a held note in two.
        self.register_buffer("threshold", self.pos_weight.log(), persistent=False)
        # where each latent cell's code goes among a frame's indices, cells taken row-major
        keys, steps = cfg.latent_shape
        self.register_buffer("index_positions", torch.tensor(
            [cfg.index_of(k, t) for k in range(keys) for t in range(steps)]), persistent=False)

    def _as_frames(self, frames: torch.Tensor) -> torch.Tensor:
        expected = self.frame_shape
        if frames.dim() != 4 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"frames must have shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(frames.shape)}")
        return frames if frames.is_floating_point() else frames.float()

    def _to_grid(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, 16) in `index_order` -> (B, 8, 2)"""
        if indices.dim() != 2 or indices.shape[1] != self.config.n_indices:
            raise ValueError(f"indices must have shape (B, {self.config.n_indices}), "
                             f"got {tuple(indices.shape)}")
        return indices[:, self.index_positions].reshape(-1, *self.config.latent_shape)

    def _from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, 8, 2) -> (B, 16) in `index_order`"""
        indices = torch.empty_like(grid.flatten(1))
        indices[:, self.index_positions] = grid.flatten(1)
        return indices

    def reconstruction_loss(self, logits: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Mean BCE over all cells, "on" cells weighted per channel, optionally focal.

        About 3% of cells are on; unweighted BCE is content to predict silence, and the weight w
        makes missing an "on" cell cost w times more while the model learns.
        """
        gamma = self.config.focal_gamma
        if gamma == 0:
            return F.binary_cross_entropy_with_logits(logits, frames, pos_weight=self.pos_weight)
        loss = F.binary_cross_entropy_with_logits(logits, frames, pos_weight=self.pos_weight,
                                                  reduction="none")
        p = torch.sigmoid(logits)
        p_wrong = frames * (1 - p) + (1 - frames) * p  # 1 - p_t
        return (loss * p_wrong.pow(gamma)).mean()

    def forward(self, frames: torch.Tensor) -> dict:
        """frames (B, C, 88, T) in {0, 1} -> logits of the same shape, losses and codebook stats."""
        frames = self._as_frames(frames)
        z = self.encoder(frames)  # (B, D, 8, 2)
        vq = self.quantizer(z.permute(0, 2, 3, 1))  # quantize over D: (B, 8, 2, D)
        logits = self.decoder(vq["quantized"].permute(0, 3, 1, 2))  # (B, D, 8, 2) -> (B, C, 88, T)
        recon_loss = self.reconstruction_loss(logits, frames)
        return {
            "logits": logits,
            "loss": recon_loss + vq["loss"],
            "recon_loss": recon_loss,
            "vq_loss": vq["loss"],
            "perplexity": vq["perplexity"],
            "codes_used": vq["codes_used"],
            "indices": self._from_grid(vq["indices"]),  # (B, 8, 2) -> (B, 16)
        }

    @torch.no_grad()
    def encode_indices(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, C, 88, T) -> indices (B, 16), over the (8, 2) latent grid in `index_order`:
        the nearest codes, or with `config.search_candidates` those found by `search_indices`."""
        frames = self._as_frames(frames)
        if self.config.search_candidates > 1:
            return self._from_grid(search_indices(self, frames, self.config.search_candidates,
                                                  self.config.search_sweeps, self.config.search_bf16))
        z = self.encoder(frames)  # (B, D, 8, 2)
        return self._from_grid(self.quantizer.encode_indices(z.permute(0, 2, 3, 1)))

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor, binary: bool = False) -> torch.Tensor:
        """indices (B, 16) -> logits (B, C, 88, T), or {0, 1} frames (p > 1/2, see threshold) if binary."""
        q = self.quantizer.decode_indices(self._to_grid(indices))  # (B, 8, 2, D)
        logits = self.decoder(q.permute(0, 3, 1, 2))
        return (logits > self.threshold).float() if binary else logits

    @torch.no_grad()
    def decode_pieces(self, indices: torch.Tensor, carry: np.ndarray | None = None,
                      chunk: int = 64) -> np.ndarray:
        """indices (S, N, 16), S pieces of N frames -> {0, 1} frames (S, N, C, 88, T) uint8.

        With `config.note_cost` set (and both channels), each key is decoded note by note across
        the frames of its piece (ludovico_vae.decoding); otherwise each cell on its own, as
        `decode_indices(binary=True)`. `carry` (S, 88) bool: keys whose note may go on from before
        the first frame, as a prompt's held notes do. The decoder runs `chunk` frames of every
        piece at a time, so memory grows by the output and two bytes a cell, however long the piece.
        A frame whose codes recur (a section played twice, silence) goes through the network once,
        as long as the distinct frames' logits fit in DISTINCT_LOGITS_BYTES.
        """
        cfg = self.config
        if indices.dim() != 3:
            raise ValueError(f"indices must have shape (S, N, {cfg.n_indices}), got {tuple(indices.shape)}")
        n_pieces, n_frames = indices.shape[:2]
        channels, keys, steps = self.frame_shape
        distinct, where = torch.unique(indices.reshape(-1, cfg.n_indices), dim=0, return_inverse=True)
        table = None  # logits of each distinct frame, when that saves work and fits
        if len(distinct) < n_pieces * n_frames and len(distinct) * channels * keys * steps * 4 <= DISTINCT_LOGITS_BYTES:
            rows = chunk * n_pieces
            table = torch.cat([self.decode_indices(distinct[i:i + rows]) for i in range(0, len(distinct), rows)])
            where = where.reshape(n_pieces, n_frames)
        out = np.empty((n_pieces, n_frames, channels, keys, steps), dtype=np.uint8)
        by_note = cfg.note_cost is not None and channels == 2
        if by_note:
            carry = None if carry is None else np.asarray(carry, dtype=bool).reshape(-1)
            decoder = NoteDecoder(n_pieces * keys, cfg.note_cost, carry)
        for start in range(0, n_frames, chunk):
            part = indices[:, start:start + chunk]
            n = part.shape[1]
            if table is None:
                logits = self.decode_indices(part.reshape(-1, cfg.n_indices))
            else:
                logits = table[where[:, start:start + n].reshape(-1)]
            if not by_note:
                cells = (logits > self.threshold).to("cpu", torch.uint8)
                out[:, start:start + n] = cells.reshape(n_pieces, n, *cells.shape[1:]).numpy()
                continue
            # (S*n, C, K, T) -> time first, then piece and key: (n*T, C, S*K)
            log_odds = (logits - self.threshold).reshape(n_pieces, n, channels, keys, steps)
            log_odds = log_odds.permute(1, 4, 2, 0, 3).reshape(n * steps, channels, -1)
            log_odds = log_odds.to("cpu", torch.float32).numpy()
            decoder.push(log_odds[:, 0], log_odds[:, 1])
        if by_note:
            for channel, cells in enumerate(decoder.finish()):  # onset, then sounding: (N*T, S*K)
                cells = cells.reshape(n_frames, steps, n_pieces, keys)
                out[:, :, channel] = cells.transpose(2, 0, 3, 1)
        return out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
