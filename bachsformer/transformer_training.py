"""Training the Bachsformer transformer on the codes of a VQ-VAE: the corpus encoded once (cached),
windows of whole frames, the same held-out pieces as the VAE, bits per token on held-out and
training pieces, atomic `last`/`best` checkpoints that name their VAE, and exact resume, on one
process or several (torchrun, see `bachsformer.distributed`).
`train_transformer.py` is its command line.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ludovico_vae.files import sha256_file
from ludovico_vae.frames import meter_per_frame
from mingpt.model import GPT, GPTConfig
from mingpt.trainer import Trainer, TrainerConfig

from .config import ConfigError
from .distributed import World, joined
from .runtime import CheckpointError, load_checkpoint
from .tokens import (BEAT_SLOT, FRAME_INDEX, KEY, KEYS, LOCAL_KEY, LOCAL_KEYS, PROGRESS, PROGRESS_BINS, TokenWindows,
                     beat_slots, encode_corpus, local_keys, silent_frame_codes, token_extras,
                     with_silent_lead_in)
from .vae_training import DataConfig, load_corpus, load_vae, monitor_subset, split_pieces

CHECKPOINT_KIND = "transformer"
CHECKPOINT_FORMAT = 1
EXTRA_INPUTS = {"frame_index": FRAME_INDEX, "beat": BEAT_SLOT, "key": KEY, "progress": PROGRESS,
                "local_key": LOCAL_KEY}


@dataclass
class TokenDataConfig(DataConfig):
    vae: str = "checkpoints/vae.pt"  # the VQ-VAE whose codes the transformer learns
    frames_per_window: int = 12  # context: 12 frames x 16 indices = 192 tokens
    transpositions: tuple[int, ...] = (-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6)  # of the training pieces
    extra_inputs: tuple[str, ...] = ("frame_index", "beat", "key")  # besides token position
    beat_slots: int = 16  # eighth-note slots of the beat-position embedding (bars up to 8 beats)
    code_features: bool = False  # also feed each code's VAE codebook vector into its embedding
    # Share of training windows whose key input is "no key" (class KEYS): a model so trained knows
    # what it would write unconditioned, the contrast classifier-free guidance is made for.
    key_dropout: float = 0.0
    # Put one silent frame before every training piece, so that the context generation starts
    # from (the codes of a silent frame, which no Goldberg piece contains) is one the model has
    # learnt to continue, with a piece's opening. It gives samples the bass of a real opening,
    # but not a better pitch-class profile (README, "What the figures say"), hence off.
    silent_lead_in: bool = False

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


@dataclass
class GPTTrainConfig(TrainerConfig):
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    max_steps: int = 6000
    batch_size: int = 64  # the global batch: a distributed run splits it evenly over its processes
    eval_every: int = 500  # steps between evaluations (and checkpoints)
    keep_snapshots: bool = False  # also keep each evaluation's checkpoint as step-NNNNNN.pt
    monitor_pieces: int = 3  # training pieces also scored at each evaluation, to show overfitting
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    out_dir: str = "runs/transformer"

    def __post_init__(self):
        super().__post_init__()
        self.require(at_least_one=("max_steps", "batch_size", "eval_every"), non_negative=("monitor_pieces", "threads"))


SECTIONS = {"data": TokenDataConfig, "model": GPTConfig, "train": GPTTrainConfig}


def model_config_for_data(model: GPTConfig, data: TokenDataConfig, vae_config):
    """Vocabulary, context, extra inputs and code features follow the VAE and the data, never a
    hand-set number.

    A `model.block_size` set by hand must be the context that `data.frames_per_window` gives.
    """
    codebook_size, indices_per_frame = vae_config.codebook_size, vae_config.n_indices
    sizes = {"frame_index": indices_per_frame, "beat": data.beat_slots, "key": KEYS + bool(data.key_dropout),
             "progress": PROGRESS_BINS,
             "local_key": LOCAL_KEYS}
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


def code_features(vae) -> torch.Tensor:
    """(codebook_size, code_dim) the VAE's codebook vectors, each dimension standardised: what the
    decoder knows of each code, on a scale the embedding's projection need not learn."""
    codebook = vae.quantizer.codebook.detach().float()
    return (codebook - codebook.mean(0)) / codebook.std(0).clamp_min(1e-8)


def select_extras(extras: torch.Tensor, names) -> torch.Tensor | None:
    """The columns of the per-token extras `(..., 5)` the model was configured with."""
    if not names:
        return None
    return extras[..., [EXTRA_INPUTS[n] for n in names]]


@torch.no_grad()
def piece_bits(model: GPT, piece, extra_inputs, device) -> tuple:
    """(summed bits, token count) of one piece, every token predicted from a full sliding context."""
    flat = torch.from_numpy(piece.tokens.reshape(1, -1)).to(device)
    extras = token_extras(len(piece), piece.tokens.shape[1], piece.beat_slots, piece.transpose, keys=piece.local_keys)
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


def load_token_corpus(data: TokenDataConfig, device, log=print) -> dict:
    """The VAE, the corpus as tokens, and its split: what training and evaluation need."""
    vae, grid, vae_state = load_vae(data.vae, device)
    pieces, corpus_key = load_corpus(data, grid, log)
    tokens = encode_corpus(vae, data.vae, pieces, corpus_key, device, data.beat_slots,
                           data.transpositions, data.cache_dir)
    train_pieces = split_pieces(pieces, data.held_out)[0]
    train_names = {p.name for p in train_pieces}
    if data.silent_lead_in:  # training windows only: held-out bits stay comparable across runs
        silence = silent_frame_codes(vae, grid.frame_shape, device)
        slots = {p.name: int(beat_slots(lead_in_beat(p), data.beat_slots)) for p in train_pieces}
        tokens = [with_silent_lead_in(t, silence, slots[t.name]) if t.name in train_names else t for t in tokens]
    return {"vae": vae, "style": corpus_style(train_pieces), "vae_state": vae_state, "grid": grid,
            "corpus_hash": corpus_key,
            "vae_sha256": sha256_file(data.vae),
            "train": [t for t in tokens if t.name in train_names],
            "held_out": [t for t in tokens if t.name not in train_names and t.transpose == 0],
            "train_as_written": [t for t in tokens if t.name in train_names and t.transpose == 0]}


def lead_in_beat(piece) -> float:
    """Where in its bar the beat before `piece`'s first frame lies (a pickup counted back from the
    first full bar, as generation places its silent lead-in frame)."""
    starts = np.insert(piece.frame_starts, 0, piece.frame_starts[0] - 1)
    return float(meter_per_frame(piece.time_signatures, starts)[2][0])


def corpus_style(pieces: list) -> dict:
    """The meter most frames are in and the median tempo: what generation defaults to. And each
    piece's key plan (its local keys as written, and its meter), for a model with a local-key input
    to follow at sampling time."""
    meters, plans = Counter(), []
    for piece in pieces:
        numerators, denominators, _ = piece.meter_per_frame()
        piece_meters = Counter(zip(numerators.tolist(), denominators.tolist()))
        meters.update(piece_meters)
        plans.append({"name": piece.name, "meter": list(piece_meters.most_common(1)[0][0]),
                      "keys": local_keys(piece.frames).tolist()})
    (numerator, denominator), _ = meters.most_common(1)[0]
    return {"meter": [numerator, denominator], "qpm": float(np.median([p.tempos[0][1] for p in pieces])),
            "key_plans": plans}


def train_transformer(config: dict, resume: bool = False, log=print, progress: bool = True, on_step=None) -> dict:
    """Train (or resume) the transformer as `config` says; returns the last evaluation's metrics.

    Under torchrun every process runs this, joined in one run (see `bachsformer.distributed`).
    """
    with joined(config["train"].device) as world:
        return _train_transformer(config, world, resume, log, progress, on_step)


def _train_transformer(config: dict, world: World, resume: bool, log, progress: bool, on_step) -> dict:
    data, train = config["data"], config["train"]
    vae_config = load_vae(data.vae)[0].config  # a bad VAE or model config stops the run before any work
    model_config = model_config_for_data(config["model"], data, vae_config)
    run, log, local_batch = world.start_run(config, resume, log)
    device = world.device
    corpus = load_token_corpus(data, device, log)
    windows = TokenWindows(corpus["train"], data.frames_per_window)
    if not len(windows):
        raise ConfigError(f"data: no training piece is longer than {data.frames_per_window} frames")
    monitor = monitor_subset(corpus["train_as_written"], train.monitor_pieces)
    log(f"{len(corpus['train_as_written'])} training pieces x {len(data.transpositions)} transpositions = "
        f"{len(windows)} windows of {windows.block_size} tokens; {len(corpus['held_out'])} held out; device {device}"
        + (f", {world.size} processes of {local_batch} windows a batch" if world.size > 1 else ""))

    model = GPT(model_config).to(device)
    if model_config.token_feature_dim:
        model.token_features.copy_(code_features(corpus["vae"]))
    trainer = Trainer(world.wrap(model), train, train.max_steps, device)
    world.seed_ranks(train.seed)
    if on_step is not None:
        trainer.add_callback("on_batch_end", lambda t, **_: on_step(t))
    metrics = run.metrics({"bits per token": ["train_bits", "monitor_bits", "val_bits", "val_unigram_bits"],
                           "learning rate": ["lr"]})
    best = float("inf")
    if resume:
        state = run.resume_state(CHECKPOINT_KIND, {"model_config": model_config.to_dict()})
        if state["vae_sha256"] != corpus["vae_sha256"] or state["corpus_hash"] != corpus["corpus_hash"]:
            raise ConfigError(f"{run.last}: the VAE or the corpus changed since this run started")
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        world.restore_rng(state, train.seed)
        best = state["best_metric"]
        if world.is_main:
            metrics.truncate_after(trainer.step)
        log(f"resumed {run.last} at step {trainer.step}")
    val_unigram = unigram_bits(corpus["held_out"], model_config.vocab_size) if corpus["held_out"] else float("nan")

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
        x, y, e = windows.batch(rows)
        if data.key_dropout:  # drawn per window of the whole set, so every process agrees
            unkeyed = np.random.default_rng([train.seed, step]).random(len(windows))[rows] < data.key_dropout
            e[torch.from_numpy(unkeyed), :, KEY] = KEYS
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
        _, val_bits = likelihood(model, corpus["held_out"], data.extra_inputs, device, map_fn=world.map)
        _, monitor_bits = likelihood(model, monitor, data.extra_inputs, device, map_fn=world.map)
        row = {"step": trainer.step, "lr": trainer.lr, "train_bits": train_loss / loss_n / math.log(2),
               "monitor_bits": monitor_bits, "val_bits": val_bits, "val_unigram_bits": val_unigram,
               "tokens_per_s": loss_n * train.batch_size * windows.block_size / elapsed, "elapsed_s": elapsed}
        score = val_bits if corpus["held_out"] else monitor_bits
        improved = score < best  # every rank holds the same metrics, so all agree on `best`
        best = min(best, score)
        state = {"kind": CHECKPOINT_KIND, "format": CHECKPOINT_FORMAT, "model_config": model_config.to_dict(),
                 "model": model.state_dict(), "trainer": trainer.state_dict(), "step": trainer.step,
                 "best_metric": best, "metrics": row, "extra_inputs": list(data.extra_inputs),
                 "beat_slots": data.beat_slots, "frames_per_window": data.frames_per_window,
                 "vae_sha256": corpus["vae_sha256"], "vae_model_config": vae_config.to_dict(),
                 "grid": corpus["grid"].to_dict(), "corpus_hash": corpus["corpus_hash"],
                 "held_out": list(data.held_out), "style": corpus["style"], "config": run.config_dict,
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


def load_transformer(path, vae_path=None, device="cpu") -> tuple:
    """The transformer of a checkpoint on `device`, in eval mode; refuses a VAE it was not trained with."""
    state = load_checkpoint(path, CHECKPOINT_KIND)
    if vae_path is not None and sha256_file(vae_path) != state["vae_sha256"]:
        raise CheckpointError(path, f"was trained on the codes of another VQ-VAE than {vae_path} "
                                    "(its vae_sha256 differs); use the VAE it names or retrain")
    try:
        model = GPT(GPTConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(path, f"does not hold a transformer this version can build ({first[:200]})") from None
    return model.to(device).eval(), state


VAE_FILE, TRANSFORMER_FILE = "vae.pt", "transformer.pt"


def load_pair(checkpoint_dir, device="cpu") -> dict:
    """The VQ-VAE and the transformer of a checkpoint folder (`vae.pt`, `transformer.pt`).

    The pair must belong together: the transformer names the hash of the VAE whose codes it
    learned, and any other VAE is refused rather than decoded into noise.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise CheckpointError(folder, "no such checkpoint folder")
    vae_path, transformer_path = folder / VAE_FILE, folder / TRANSFORMER_FILE
    for path in (vae_path, transformer_path):
        if not path.exists():
            raise CheckpointError(path, "missing: train one (train_vq_vae.py, train_transformer.py) "
                                        "and export it here with --export")
    vae, grid, vae_state = load_vae(vae_path, device)
    transformer, state = load_transformer(transformer_path, vae_path, device)
    return {"vae": vae, "grid": grid, "vae_state": vae_state, "transformer": transformer, "state": state}
