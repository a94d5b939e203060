"""Training the Ludovico VQ-VAE: a piece-level split, transposition, evaluation by note F1 on the
held-out pieces, atomic `last`/`best` checkpoints and exact resume, on one process or several
(torchrun, see `distributed`). `train_vq_vae.py` is its command line.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ludovico_vae.frames import FrameGrid
from ludovico_vae.model import VQVAE, VQVAEConfig
from mingpt.trainer import Trainer

from ..checkpoints import CHECKPOINT_FORMAT, check_matches, load_checkpoint
from ..errors import ConfigError
from ..evaluate.reconstruction import evaluate_pieces
from ..pair import VAE_KIND
from .config import RunConfig
from .data import DataConfig, load_corpus, monitor_subset, split_pieces
from .distributed import World, joined

# settings of how frames are written as codes and read back, not of the weights
ENCODING_AND_DECODING = ("search_candidates", "search_sweeps", "search_bf16", "note_cost")


# perplexity under this share of the codebook: most frames share a handful of codes
COLLAPSED_SHARE = 0.02


@dataclass
class VAETrainConfig(RunConfig):
    """The shipped recipe: 400 epochs at batch 64 (small batches help an under-fitted model)."""

    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    epochs: int = 400
    eval_every: int = 20  # epochs between evaluations (and checkpoints)
    out_dir: str = "runs/vae"
    transpose: int = 6  # random shift of each frame by up to this many semitones, kept on the keyboard
    # Share of training frames whose keys below a random split come from another frame of the
    # same piece: a bass and a treble that never sounded together. Off: on the Goldberg corpus it
    # rebuilt no more held-out notes (docs/results.md).
    register_mix: float = 0.0
    # Share of training frames read a random 1 to T-1 cells late, their end taken from the next
    # frame: notes off the corpus' beat grid. Off: it rebuilt fewer held-out notes (docs/results.md).
    time_shift: float = 0.0
    # a VQ-VAE checkpoint whose weights and codebook start this run (pretrained on a larger corpus,
    # then fine-tuned here); its grid and model must be the ones this run builds
    init_from: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        self.require(at_least_one=("epochs",), non_negative=("transpose",))
        for name in ("register_mix", "time_shift"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


@dataclass
class VAERecipe:
    """Everything a VQ-VAE run is made from; `configs/ludovico_vae.yaml` overrides it."""

    grid: FrameGrid = field(default_factory=FrameGrid)
    model: VQVAEConfig = field(default_factory=VQVAEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: VAETrainConfig = field(default_factory=VAETrainConfig)


def collapse_warning(perplexity: float, codebook_size: int) -> str | None:
    """A warning when the codes in use are too few for the VQ-VAE to tell frames apart."""
    if perplexity >= COLLAPSED_SHARE * codebook_size:
        return None
    return (f"warning: the codebook has collapsed: perplexity {perplexity:.1f} of {codebook_size} codes "
            "(try a smaller codebook, more data or a lower model.dead_code_threshold)")


def check_model_fits_grid(model: VQVAEConfig, grid: FrameGrid) -> None:
    """A latent grid that cannot divide the grid's frame stops the run before any work."""
    try:
        model.check_frame(grid.frame_shape)
    except ValueError as e:
        raise ConfigError(f"model: {e} (grid.steps_per_quarter={grid.steps_per_quarter})") from None


def transpose_frames(frames: torch.Tensor, max_shift: int, u: torch.Tensor) -> torch.Tensor:
    """Shift each frame `(B, C, K, T)` along the keys by a random amount that keeps it on the keyboard.

    `u (B,)` holds one uniform draw in [0, 1) per frame, which picks its shift among the allowed ones.
    """
    if max_shift == 0:
        return frames
    b, _, k, _ = frames.shape
    keys = torch.arange(k, device=frames.device)
    active = frames.amax(dim=(1, 3)) > 0  # (B, K)
    lowest = torch.where(active, keys, k).amin(dim=1)
    highest = torch.where(active, keys, -1).amax(dim=1)
    low = torch.clamp(-lowest, min=-max_shift)
    high = torch.clamp(k - 1 - highest, max=max_shift)
    u = u.to(frames.device)
    shift = low + torch.floor(u * (high - low + 1)).long()
    source = keys[None, :] - shift[:, None]  # (B, K): out[k] = in[k - shift]
    valid = (source >= 0) & (source < k)
    index = source.clamp(0, k - 1)[:, None, :, None].expand_as(frames)
    return torch.gather(frames, 2, index) * valid[:, None, :, None]


def mix_registers(frames: torch.Tensor, partners: torch.Tensor, splits: torch.Tensor) -> torch.Tensor:
    """Each frame `(B, C, K, T)` with its keys below `splits (B,)` taken from `partners`; a split
    of 0 leaves a frame as it is."""
    below = torch.arange(frames.shape[2], device=frames.device)[None, :] < splits[:, None]  # (B, K)
    return torch.where(below[:, None, :, None], partners, frames)


def register_mix_draws(u: np.ndarray, order: torch.Tensor, piece_start: torch.Tensor,
                       piece_length: torch.Tensor, share: float, n_keys: int) -> tuple:
    """For frames `order`, from three uniform draws `u (len(order), 3)` each: a partner frame of
    the same piece, and a split key (0 for the frames left unmixed), as `mix_registers` takes them."""
    u = torch.from_numpy(u)
    start, length = piece_start[order.cpu()], piece_length[order.cpu()]
    partners = start + torch.clamp((u[:, 0] * length).long(), max=length - 1)
    splits = n_keys // 4 + (u[:, 1] * (n_keys // 2)).long()
    return partners.to(order.device), torch.where(u[:, 2] < share, splits, 0).to(order.device)


def shift_in_time(frames: torch.Tensor, following: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each frame `(B, C, K, T)` read `offsets (B,)` cells late, its last cells from `following`."""
    steps = frames.shape[3]
    joined = torch.cat([frames, following], dim=3)  # (B, C, K, 2T)
    index = torch.arange(steps, device=frames.device)[None, :] + offsets[:, None]  # (B, T)
    return torch.gather(joined, 3, index[:, None, None, :].expand_as(frames))


def time_shift_draws(u: np.ndarray, share: float, steps: int) -> torch.Tensor:
    """Offsets in cells from two uniform draws a frame `u (B, 2)`: 1 to steps - 1 for a share of
    the frames, 0 for the rest."""
    u = torch.from_numpy(u)
    offsets = 1 + (u[:, 1] * (steps - 1)).long()
    return torch.where(u[:, 0] < share, offsets, 0)


def start_from(model: VQVAE, path, grid: FrameGrid, log=print) -> None:
    """Load a trained VQ-VAE's weights and codebook into `model`, built for the same grid and config.

    How frames are encoded (`search_candidates`, `search_sweeps`) and decoded (`note_cost`) may
    differ: they change no weight.
    """
    state = load_checkpoint(path, VAE_KIND)
    mine = model.config.to_dict()
    for name in ENCODING_AND_DECODING:
        mine[name] = state["model_config"].get(name, mine[name])
    check_matches(state, path, {"grid": grid.to_dict(), "model_config": mine})
    model.load_state_dict(state["model"])
    log(f"starting from {path} (epoch {state['epoch']})")


def train_vae(config: VAERecipe, resume: bool = False, log=print, progress: bool = True, on_step=None) -> dict:
    """Train (or resume) a VQ-VAE as `config` says; returns the last evaluation's metrics.

    Under torchrun every process runs this, joined in one run (see `distributed`).
    `on_step(trainer)` is called after every optimisation step (tests interrupt training with it).
    """
    with joined(config.train.device) as world:
        return _train_vae(config, world, resume, log, progress, on_step)


def _train_vae(config: VAERecipe, world: World, resume: bool, log, progress: bool, on_step) -> dict:
    grid, data, train, model_config = config.grid, config.data, config.train, config.model
    check_model_fits_grid(model_config, grid)
    run, log, local_batch = world.start_run(config, resume, log)
    device = world.device

    pieces, data_hash = load_corpus(data, grid, log)
    train_pieces, val_pieces = split_pieces(pieces, data.held_out)
    monitor = monitor_subset(train_pieces, train.monitor_pieces)
    frames = torch.from_numpy(np.concatenate([p.frames for p in train_pieces])).to(device)
    lengths = torch.tensor([len(p.frames) for p in train_pieces])
    piece_length = torch.repeat_interleave(lengths, lengths)  # of each frame's piece, and where it starts
    piece_start = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    # the frame after each one in its piece; the last frame of a piece is followed by silence
    is_last = torch.arange(len(frames)) == piece_start + piece_length - 1
    following = torch.where(is_last, -1, torch.arange(len(frames)) + 1).to(device)
    steps_per_epoch = math.ceil(len(frames) / train.batch_size)
    # each epoch's seeded permutation of the frames, dealt out: rank r takes positions r, r + size, ...
    sampler = DistributedSampler(range(len(frames)), world.size, world.rank, seed=train.seed * 1_000_003)
    log(f"{len(train_pieces)} training pieces ({len(frames)} frames), {len(val_pieces)} held out "
        f"({', '.join(p.name for p in val_pieces) or 'none'}); device {device}"
        + (f", {world.size} processes of {local_batch} frames a batch" if world.size > 1 else ""))

    model = VQVAE(model_config, grid.frame_shape).to(device)
    trainer = Trainer(world.wrap(model), train, train.epochs * steps_per_epoch, device)
    world.seed_ranks(train.seed)
    if on_step is not None:
        trainer.add_callback("on_batch_end", lambda t, **_: on_step(t))
    start_epoch, best = 0, -1.0
    metrics = run.metrics({"loss": ["train_loss", "recon_loss", "vq_loss"],
                                   "note F1": ["val_note_f1", "val_min_note_f1", "train_note_f1"],
                                   "perplexity": ["train_perplexity", "val_perplexity"],
                                   "codes used": ["train_codes_used", "val_codes_used"]})
    if resume:
        state = run.resume_state(VAE_KIND, {"grid": grid.to_dict(), "model_config": model_config.to_dict()})
        if state["corpus_hash"] != data_hash:
            raise ConfigError(f"{run.last}: the corpus in {data.midi_dir} changed since this run started")
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        world.restore_rng(state, train.seed)
        start_epoch, best = state["epoch"], state["best_metric"]
        if world.is_main:
            metrics.truncate_after(trainer.step)
        log(f"resumed {run.last} at epoch {start_epoch}, step {trainer.step}")
    elif train.init_from:
        start_from(model, train.init_from, grid, log)

    def checkpoint(epoch: int, row: dict, rng: dict) -> dict:
        return {"kind": VAE_KIND, "format": CHECKPOINT_FORMAT, "model_config": model_config.to_dict(),
                "grid": grid.to_dict(), "model": model.state_dict(), "trainer": trainer.state_dict(),
                "epoch": epoch, "step": trainer.step, "best_metric": best, "metrics": row,
                "corpus_hash": data_hash, "held_out": [p.name for p in val_pieces], "config": run.config_dict, **rng}

    row, keys = {}, ("loss", "recon_loss", "vq_loss", "perplexity", "codes_used")
    bar = tqdm(total=train.epochs * steps_per_epoch, initial=trainer.step, disable=not (progress and world.is_main),
               desc="vq-vae", unit="step", dynamic_ncols=True)
    sums, seen, started = dict.fromkeys(keys, 0.0), 0, time.perf_counter()
    for epoch in range(start_epoch, train.epochs):
        sampler.set_epoch(epoch)
        mine = torch.tensor(list(sampler), device=device)
        # one draw per position of the epoch's order, dealt out like the positions: a frame is
        # transposed alike whatever the number of processes
        draws = np.random.default_rng([train.seed, epoch]).random(sampler.total_size, dtype=np.float32)
        shifts = torch.from_numpy(draws[world.rank::world.size])
        if train.register_mix:  # drawn for every position of the epoch, then dealt out like them
            u = np.random.default_rng([train.seed, epoch, 1]).random((sampler.total_size, 3), dtype=np.float32)
            partners, splits = register_mix_draws(u[world.rank::world.size], mine, piece_start, piece_length,
                                                  train.register_mix, frames.shape[2])
        if train.time_shift:
            u = np.random.default_rng([train.seed, epoch, 2]).random((sampler.total_size, 2), dtype=np.float32)
            offsets = time_shift_draws(u[world.rank::world.size], train.time_shift, frames.shape[3]).to(device)
        for i in range(steps_per_epoch):
            part = slice(i * local_batch, (i + 1) * local_batch)
            batch = frames[mine[part]].float()
            if train.time_shift:
                after = following[mine[part]]
                next_frames = frames[after.clamp(min=0)].float() * (after >= 0)[:, None, None, None]
                batch = shift_in_time(batch, next_frames, offsets[part])
            if train.register_mix:
                batch = mix_registers(batch, frames[partners[part]].float(), splits[part])
            batch = transpose_frames(batch, train.transpose, shifts[part])
            result = trainer.train_step(batch)
            for key in keys:
                sums[key] += result[key] * len(batch)
            seen += len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{result['loss']:.4f}", ppl=f"{result['perplexity']:.1f}", refresh=False)
        if (epoch + 1) % train.eval_every and epoch + 1 != train.epochs:
            continue
        elapsed = time.perf_counter() - started
        # means over the global batches; perplexity and codes used are each rank's batch figures, averaged
        *totals, seen = world.sum([sums[key] for key in keys] + [seen])
        sums = dict(zip(keys, totals))
        _, val = evaluate_pieces(model, val_pieces, device, map_fn=world.map)
        _, seen_pieces = evaluate_pieces(model, monitor, device, map_fn=world.map)
        row = {"epoch": epoch + 1, "step": trainer.step, "lr": trainer.lr,
               "train_loss": sums["loss"] / seen, "recon_loss": sums["recon_loss"] / seen,
               "vq_loss": sums["vq_loss"] / seen, "train_perplexity": sums["perplexity"] / seen,
               "train_codes_used": sums["codes_used"] / seen,
               "val_note_f1": val.get("note_f1", ""), "val_min_note_f1": val.get("min_note_f1", ""),
               "val_onset_f1": val.get("onset_f1", ""), "val_cell_f1": val.get("cell_f1", ""),
               "val_perplexity": val.get("perplexity", ""), "val_codes_used": val.get("codes_used", ""),
               "train_note_f1": seen_pieces.get("note_f1", ""),
               "samples_per_s": seen / elapsed, "elapsed_s": elapsed}
        score = val["note_f1"] if val else seen_pieces.get("note_f1", -row["train_loss"])
        improved = score > best  # every rank holds the same metrics, so all agree on `best`
        best = max(best, score)
        rng = world.rng_state()
        if world.is_main:
            metrics.append(row)
            run.save(checkpoint(epoch + 1, row, rng), improved)
            bar.write(f"epoch {epoch + 1}: loss {row['train_loss']:.4f}, held-out note F1 "
                      f"{val.get('note_f1', float('nan')):.4f} (min {val.get('min_note_f1', float('nan')):.4f}), "
                      f"train-piece note F1 {seen_pieces.get('note_f1', float('nan')):.4f}, "
                      f"perplexity {val.get('perplexity', row['train_perplexity']):.1f}, "
                      f"{row['samples_per_s']:.0f} frames/s{' *' if improved else ''}")
            warning = collapse_warning(val.get("perplexity", row["train_perplexity"]), model_config.codebook_size)
            if warning:
                bar.write(warning)
        sums, seen, started = dict.fromkeys(keys, 0.0), 0, time.perf_counter()
    bar.close()
    return row


