"""Training the Bachsformer transformer on the codes of a VQ-VAE: the corpus encoded once (cached),
windows of whole frames, the same held-out pieces as the VAE, bits per token on held-out and
training pieces, atomic `last`/`best` checkpoints that name their VAE, and exact resume, on one
process or several (torchrun, see `distributed`). `train_transformer.py` is its command line.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from mingpt.model import GPT, GPTConfig
from mingpt.trainer import Trainer

from ..checkpoints import CHECKPOINT_FORMAT, check_matches, load_checkpoint
from ..errors import ConfigError
from ..evaluate.likelihood import likelihood, unigram_bits
from ..pair import TRANSFORMER_KIND, load_vae
from ..paths import BUNDLED_VAE
from ..tokens import (BAR_SLOTS, BARS_LEFT_SLOTS, EXTRA_INPUTS, FUTURE_ROLES, KEY, KEYS, LOCAL_KEYS, PIECE_KEY, PIECE_KEYS, PROGRESS_BINS,
                      SECTIONS, select_extras)
from .config import RunConfig
from .data import DataConfig, monitor_subset
from .distributed import World, joined
from .token_corpus import TokenWindows, load_token_corpus


@dataclass
class TokenDataConfig(DataConfig):
    vae: Optional[str] = None  # the VQ-VAE whose codes the transformer learns; None: the bundled one
    frames_per_window: int = 32  # context: 32 frames x 16 indices = 512 tokens, 10 bars of 3/4
    transpositions: tuple[int, ...] = (-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6)  # of the training pieces
    # besides token position: where in its frame and bar a token is, and the plan (key and form)
    extra_inputs: tuple[str, ...] = ("frame_index", "beat", "piece_key", "section", "bar_in_section", "bars_left")
    beat_slots: int = 16  # eighth-note slots of the beat-position embedding (bars up to 8 beats)
    code_features: bool = False  # also feed each code's VAE codebook vector into its embedding
    # Share of training windows whose key input (`key`, or `piece_key` where the model has it) is
    # "no key": a model so trained knows what it would write unconditioned, the contrast
    # classifier-free guidance is made for.
    key_dropout: float = 0.0
    # One silent frame before every training piece, so the context generation starts from (a
    # silent frame's codes) is one the model has seen. Off: it gave samples the bass of a real
    # opening but not a better pitch-class profile (docs/results.md).
    silent_lead_in: bool = False
    # Share of training windows in fill-in-the-middle order (`tokens.future_first`): the last
    # 1 to `max_future_frames` frames first, marked by the `future` input. What lets one model both
    # continue a piece and regenerate bars between a given past and future.
    fill_in_middle: float = 0.0
    max_future_frames: int = 12
    # the form generate.py writes by default with this model: "binary", the Goldberg plan (A A B B
    # of 16 bars), or "through" (bars straight on), for a corpus whose pieces do not repeat so
    form: str = "binary"

    @property
    def vae_path(self) -> Path:
        return Path(self.vae) if self.vae else BUNDLED_VAE

    def __post_init__(self):
        if self.frames_per_window < 1:
            raise ValueError(f"frames_per_window must be at least 1, got {self.frames_per_window}")
        unknown = [e for e in self.extra_inputs if e not in EXTRA_INPUTS]
        if unknown:
            raise ValueError(f"extra_inputs: unknown {unknown}; choose from {list(EXTRA_INPUTS)}")
        if 0 not in self.transpositions:
            raise ValueError("transpositions must include 0 (the pieces as written)")
        if self.beat_slots < 1:
            raise ValueError(f"beat_slots must be at least 1, got {self.beat_slots}")
        if not 0 <= self.key_dropout < 1:
            raise ValueError(f"key_dropout must lie in [0, 1), got {self.key_dropout}")
        if not 0 <= self.fill_in_middle < 1:
            raise ValueError(f"fill_in_middle must lie in [0, 1), got {self.fill_in_middle}")
        if self.form not in ("binary", "through"):
            raise ValueError(f"form must be binary or through, got {self.form!r}")
        if self.fill_in_middle and "future" not in self.extra_inputs:
            raise ValueError("fill_in_middle needs the future input: add 'future' to extra_inputs")
        if self.fill_in_middle and not 1 <= self.max_future_frames < self.frames_per_window:
            raise ValueError(f"max_future_frames must lie in [1, frames_per_window), got {self.max_future_frames}")


@dataclass
class GPTTrainConfig(RunConfig):
    """The shipped recipe: 1,200 steps of 16 windows of 512 tokens, evaluated every 200."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    batch_size: int = 16
    max_steps: int = 1200
    eval_every: int = 200  # steps between evaluations (and checkpoints)
    out_dir: str = "runs/transformer"
    keep_snapshots: bool = False  # also keep each evaluation's checkpoint as step-NNNNNN.pt
    # a transformer checkpoint whose weights start this run (pretrained on a larger corpus, say);
    # its model must be the one this run builds
    init_from: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        self.require(at_least_one=("max_steps",))


@dataclass
class TransformerRecipe:
    """Everything a transformer run is made from; `configs/bachsformer.yaml` overrides it."""

    data: TokenDataConfig = field(default_factory=TokenDataConfig)
    model: GPTConfig = field(default_factory=GPTConfig)
    train: GPTTrainConfig = field(default_factory=GPTTrainConfig)


def model_config_for_data(model: GPTConfig, data: TokenDataConfig, vae_config):
    """Vocabulary, context, extra inputs and code features follow the VAE and the data, never a
    hand-set number.

    A `model.block_size` set by hand must be the context that `data.frames_per_window` gives.
    """
    codebook_size, indices_per_frame = vae_config.codebook_size, vae_config.n_indices
    sizes = {"frame_index": indices_per_frame, "beat": data.beat_slots, "key": KEYS + bool(data.key_dropout),
             "progress": PROGRESS_BINS, "local_key": LOCAL_KEYS, "piece_key": PIECE_KEYS + 1, "section": SECTIONS,
             "bar_in_section": BAR_SLOTS, "bars_left": BARS_LEFT_SLOTS,
             "future": FUTURE_ROLES}
    block_size = data.frames_per_window * indices_per_frame
    if model.block_size not in (GPTConfig.block_size, block_size):
        reason = (f"is not a multiple of the {indices_per_frame} codes of a frame" if model.block_size % indices_per_frame
                  else f"disagrees with data.frames_per_window={data.frames_per_window} frames of {indices_per_frame} codes")
        raise ConfigError(f"model.block_size: {model.block_size} {reason}; set data.frames_per_window instead")
    try:
        return dataclasses.replace(model, vocab_size=codebook_size, block_size=block_size,
                                   extra_vocab_sizes=tuple(sizes[e] for e in data.extra_inputs),
                                   token_feature_dim=vae_config.code_dim if data.code_features else 0)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None


def start_from(model: GPT, path, vae_sha256: str, log=print) -> None:
    """Load a pretrained transformer's weights into `model`: the same model, on the same VAE's codes."""
    state = load_checkpoint(path, TRANSFORMER_KIND)
    check_matches(state, path, {"model_config": model.config.to_dict(), "vae_sha256": vae_sha256})
    model.load_state_dict(state["model"])
    log(f"starting from {path} (step {state['step']}, held-out {state['metrics'].get('val_bits', float('nan')):.3f} bits/token)")


def code_features(vae) -> torch.Tensor:
    """(codebook_size, code_dim) the VAE's codebook vectors, each dimension standardised: what the
    decoder knows of each code, on a scale the embedding's projection need not learn."""
    codebook = vae.quantizer.codebook.detach().float()
    return (codebook - codebook.mean(0)) / codebook.std(0).clamp_min(1e-8)


def train_transformer(config: TransformerRecipe, resume: bool = False, log=print, progress: bool = True, on_step=None) -> dict:
    """Train (or resume) the transformer as `config` says; returns the last evaluation's metrics.

    Under torchrun every process runs this, joined in one run (see `distributed`).
    """
    with joined(config.train.device) as world:
        return _train_transformer(config, world, resume, log, progress, on_step)


def _train_transformer(config: TransformerRecipe, world: World, resume: bool, log, progress: bool, on_step) -> dict:
    data, train = config.data, config.train
    vae_config = load_vae(data.vae_path)[0].config  # a bad VAE or model config stops the run before any work
    model_config = model_config_for_data(config.model, data, vae_config)
    run, log, local_batch = world.start_run(config, resume, log)
    device = world.device
    corpus = load_token_corpus(data, device, log)
    windows = TokenWindows(corpus.train, data.frames_per_window)
    if not len(windows):
        raise ConfigError(f"data: no training piece is longer than {data.frames_per_window} frames")
    monitor = monitor_subset(corpus.train_as_written, train.monitor_pieces)
    log(f"{len(corpus.train_as_written)} training pieces x {len(data.transpositions)} transpositions = "
        f"{len(windows)} windows of {windows.block_size} tokens; {len(corpus.held_out)} held out; device {device}"
        + (f", {world.size} processes of {local_batch} windows a batch" if world.size > 1 else ""))

    model = GPT(model_config).to(device)
    if model_config.token_feature_dim:
        model.token_features.copy_(code_features(corpus.vae))
    if train.init_from and not resume:
        start_from(model, train.init_from, corpus.vae_sha256, log)
    trainer = Trainer(world.wrap(model), train, train.max_steps, device)
    world.seed_ranks(train.seed)
    if on_step is not None:
        trainer.add_callback("on_batch_end", lambda t, **_: on_step(t))
    metrics = run.metrics({"bits per token": ["train_bits", "monitor_bits", "val_bits", "val_unigram_bits"],
                           "learning rate": ["lr"]})
    best = float("inf")
    if resume:
        state = run.resume_state(TRANSFORMER_KIND, {"model_config": model_config.to_dict()})
        if state["vae_sha256"] != corpus.vae_sha256 or state["corpus_hash"] != corpus.corpus_hash:
            raise ConfigError(f"{run.last}: the VAE or the corpus changed since this run started")
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        world.restore_rng(state, train.seed)
        best = state["best_metric"]
        if world.is_main:
            metrics.truncate_after(trainer.step)
        log(f"resumed {run.last} at step {trainer.step}")
    val_unigram = unigram_bits(corpus.held_out, model_config.vocab_size) if corpus.held_out else float("nan")

    # each epoch's seeded permutation of the windows, dealt out: rank r takes positions r, r + size, ...
    sampler = DistributedSampler(range(len(windows)), world.size, world.rank, seed=train.seed * 1_000_003)

    def batch_for(step: int) -> tuple:
        """The batch of a step depends on the seed and the step alone, so a resumed run sees the same data.

        The global batch is the same whatever the number of processes; this rank gets its share.
        """
        per_epoch = len(windows) // train.batch_size or 1
        epoch, offset = divmod(step, per_epoch)
        sampler.set_epoch(epoch)
        rows = np.array(list(sampler))[offset * local_batch:(offset + 1) * local_batch]
        # drawn per window of the whole set from the seed and step, so every process agrees
        draws = np.random.default_rng([train.seed, step]).random((3, len(windows)))[:, rows]
        future = np.where(draws[1] < data.fill_in_middle, 1 + (draws[2] * data.max_future_frames).astype(np.int64), 0)
        x, y, e = windows.batch(rows, future)
        if data.key_dropout:
            unkeyed = torch.from_numpy(draws[0] < data.key_dropout)
            if "piece_key" in data.extra_inputs:
                e[unkeyed, :, PIECE_KEY] = PIECE_KEYS
            else:
                e[unkeyed, :, KEY] = KEYS
        return x.to(device), y.to(device), select_extras(e, data.extra_inputs)

    row, loss_sum, loss_n, started = {}, 0.0, 0, time.perf_counter()
    bar = tqdm(total=train.max_steps, initial=trainer.step, disable=not (progress and world.is_main),
               desc="transformer", unit="step", dynamic_ncols=True)
    while trainer.step < train.max_steps:
        x, y, e = batch_for(trainer.step)
        e = None if e is None else e.to(device)
        result = trainer.train_step(x, y, e)
        loss_sum, loss_n = loss_sum + result["loss"], loss_n + 1
        bar.update(1)
        bar.set_postfix(bits=f"{result['loss'] / math.log(2):.3f}", refresh=False)
        if trainer.step % train.eval_every and trainer.step != train.max_steps:
            continue
        elapsed = time.perf_counter() - started
        train_loss = world.sum([loss_sum])[0] / world.size  # ranks' batches are equal: the global batch mean
        _, val_bits = likelihood(model, corpus.held_out, data.extra_inputs, device, map_fn=world.map)
        _, monitor_bits = likelihood(model, monitor, data.extra_inputs, device, map_fn=world.map)
        row = {"step": trainer.step, "lr": trainer.lr, "train_bits": train_loss / loss_n / math.log(2),
               "monitor_bits": monitor_bits, "val_bits": val_bits, "val_unigram_bits": val_unigram,
               "tokens_per_s": loss_n * train.batch_size * windows.block_size / elapsed, "elapsed_s": elapsed}
        score = val_bits if corpus.held_out else monitor_bits
        improved = score < best  # every rank holds the same metrics, so all agree on `best`
        best = min(best, score)
        state = {"kind": TRANSFORMER_KIND, "format": CHECKPOINT_FORMAT, "model_config": model_config.to_dict(),
                 "model": model.state_dict(), "trainer": trainer.state_dict(), "step": trainer.step,
                 "best_metric": best, "metrics": row, "extra_inputs": list(data.extra_inputs),
                 "beat_slots": data.beat_slots, "frames_per_window": data.frames_per_window,
                 "vae_sha256": corpus.vae_sha256, "vae_model_config": vae_config.to_dict(),
                 "grid": corpus.grid.to_dict(), "corpus_hash": corpus.corpus_hash,
                 "held_out": [t.name for t in corpus.held_out], "style": corpus.style.to_dict(), "config": run.config_dict,
                 **world.rng_state()}
        if world.is_main:
            metrics.append(row)
            run.save(state, improved, snapshot=train.keep_snapshots)
            bar.write(f"step {trainer.step}: train {row['train_bits']:.3f}, training pieces {monitor_bits:.3f}, "
                      f"held-out {val_bits:.3f} bits/token (unigram {val_unigram:.3f}), "
                      f"{row['tokens_per_s']:.0f} tokens/s{' *' if improved else ''}")
        loss_sum, loss_n, started = 0.0, 0, time.perf_counter()
    bar.close()
    return row


