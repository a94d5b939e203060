"""Can a different way of drawing codes make the samples more tonal? Scores 20 samples per seed
(pitch-class and duration overlap, scale consistency, copied share, bass share) for each setting.

A setting is KIND:VALUE:TEMPERATURE, KIND one of
  top_p  the nucleus (generate.py's --top-p; 1 is the whole distribution),
  min_p  tokens at least VALUE times as likely as the likeliest one,
  eps    tokens of probability at least VALUE (the likeliest always kept),
  eta    eta sampling: the threshold min(VALUE, sqrt(VALUE) * exp(-entropy)).
`--ensemble DIR:W ...` averages the log-probabilities of further transformers (trained on the same
VAE) with the main one, weights W; `--contrast DIR:W ... --alpha A` subtracts theirs instead
(contrastive decoding), among the tokens the main model gives at least A times its top probability.
Ensembles draw with torch.multinomial, so their figures follow other random numbers than
generate.py's, and without key guidance.

    python experiments/sampling_study.py top_p:0.9:1 min_p:0.05:1 eta:0.0009:1 --seeds 10 11 12
    python experiments/sampling_study.py top_p:0.9:1 --bars 64
    python experiments/sampling_study.py top_p:0.9:1 --ensemble runs/other:1   # settings first
    python experiments/sampling_study.py top_p:1:1 --key-guidance 0.5 --key-contrasts 1 2 -1 -2
    python experiments/sampling_study.py top_p:1:1 --note-cost none   # the same codes, cell by cell
"""
import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import mingpt.model as gpt
from bachsformer import generation
from bachsformer.evaluate import DEFAULT_HELD_OUT, FROM_CHECKPOINT, parse_note_cost
from bachsformer.generation import Bachsformer
from bachsformer.music_stats import compare
from ludovico_vae.dataset import find_midi_files
from ludovico_vae.midi import read_midi

BASS_BELOW = 55  # G3, as in tonal_profile.py
NUCLEUS = gpt.filter_logits


def token_filter(kind: str, value: float):
    """A replacement for mingpt's filter_logits that keeps what `kind` keeps."""
    def keep_filtered(logits, top_k, top_p):
        if kind == "top_p":
            return NUCLEUS(logits, None, value if value < 1 else None)
        p = logits.softmax(-1)
        top = p.max(-1, keepdim=True).values
        if kind == "min_p":
            keep = p >= value * top
        elif kind == "eps":
            keep = p >= value
        elif kind == "eta":
            entropy = -(p * p.clamp_min(1e-12).log()).sum(-1, keepdim=True)
            keep = p >= torch.clamp(value ** 0.5 * torch.exp(-entropy), max=value)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        return logits.masked_fill(~(keep | (p == top)), float("-inf"))
    return keep_filtered


def combined_sampler(models: list, weights: list, contrast_alpha: float | None):
    """A stand-in for GPT.generate that samples from several transformers' combined log-probabilities."""
    @torch.inference_mode()
    def generate(idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None, extras=None):
        T0 = idx.shape[1]
        decoders = [gpt.KVCacheDecoder(m, idx.shape[0]) for m in models]
        logits = [d.prefill(idx, extras[:, :T0]) for d in decoders]
        new = []
        for i in range(max_new_tokens):
            logp = [F.log_softmax(x, -1) for x in logits]
            if contrast_alpha is None:
                mixed = sum(w * x for w, x in zip(weights, logp)) / sum(weights)
            else:
                mixed = logp[0] - sum(w * x for w, x in zip(weights[1:], logp[1:]))
                implausible = logp[0] < logp[0].max(-1, keepdim=True).values + np.log(contrast_alpha)
                mixed = mixed.masked_fill(implausible, float("-inf"))
            mixed = gpt.filter_logits(mixed / temperature, top_k, top_p) if top_p is not None else mixed / temperature
            token = torch.multinomial(mixed.softmax(-1), 1, generator=generator)[:, 0]
            new.append(token)
            if i + 1 < max_new_tokens:  # each model embeds the extras with its own tables
                logits = [d.fast_step(token, d.embed_extras(extras[:, T0 + i:T0 + i + 1])[:, 0]) for d in decoders]
        return torch.cat([idx, torch.stack(new, 1)], 1)
    return generate


def notes_as_written(pieces: list) -> dict:
    """Each generated piece's notes as a reader of its MIDI file gets them, numbered in order."""
    with tempfile.TemporaryDirectory() as tmp:
        notes = {}
        for i, piece in enumerate(pieces):
            piece.midi.write(f"{tmp}/{i}.mid")
            notes[i] = read_midi(f"{tmp}/{i}.mid").notes
    return notes


def score(model: Bachsformer, reference: dict, seed: int, bars: int, temperature: float,
          key_guidance: float | None = None) -> list:
    pieces = model.generate(bars=bars, seed=seed, num_samples=20, temperature=temperature, top_p=0.5,  # filter on
                            key_guidance=key_guidance)
    notes = notes_as_written(pieces)
    s = compare(notes, reference)["summary"]
    bass = sum((n.pitch < BASS_BELOW).sum() for n in notes.values()) / sum(len(n) for n in notes.values())
    return [s["pitch_class_overlap"], s["duration_overlap"], s["scale_consistency"], s["copied_4beat_share"], bass]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help="KIND:VALUE:TEMPERATURE")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--reference", default="../shared/corpora/goldberg", help="held-out pieces are set aside")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--device", default="cpu",
                        help="cpu (the default, as the figures quoted in README), cuda, mps or auto")
    parser.add_argument("--ensemble", nargs="*", default=[], metavar="DIR:W")
    parser.add_argument("--contrast", nargs="*", default=[], metavar="DIR:W")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--key-guidance", type=float, help="default: generation.DEFAULT_KEY_GUIDANCE")
    parser.add_argument("--key-contrasts", type=int, nargs="+", help="semitones (default: generation.KEY_CONTRASTS)")
    parser.add_argument("--note-cost", type=parse_note_cost, default=FROM_CHECKPOINT,
                        help="decode the VAE's logits with this note cost, or 'none' for cell by cell "
                             "(default: the checkpoint's own)")
    args = parser.parse_args()
    if args.key_contrasts:
        generation.KEY_CONTRASTS = tuple(args.key_contrasts)

    reference = {p.stem: read_midi(p).notes for p in find_midi_files(Path(args.reference))
                 if p.stem not in DEFAULT_HELD_OUT}
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, device=args.device)
    if args.note_cost is not FROM_CHECKPOINT:
        model.vae.config = dataclasses.replace(model.vae.config, note_cost=args.note_cost)
    others = args.ensemble or args.contrast
    if others:  # the combined sampler draws from its own mixture, without key guidance
        args.key_guidance = 0.0
        models, weights = [model.transformer], [1.0]
        for spec in others:
            folder, weight = spec.rsplit(":", 1)
            models.append(Bachsformer.from_checkpoints(folder, device=args.device).transformer)
            weights.append(float(weight))
        model.transformer.generate = combined_sampler(models, weights, args.alpha if args.contrast else None)
    print("setting             pitch-class overlap per seed   duration  scale  copied  bass")
    for setting in args.settings:
        kind, value, temperature = setting.split(":")
        gpt.filter_logits = token_filter(kind, float(value))
        rows = np.array([score(model, reference, seed, args.bars, float(temperature), args.key_guidance)
                         for seed in args.seeds])
        means = rows[:, 1:].mean(axis=0)  # duration, scale, copied, bass
        print(f"{setting:18}  " + " / ".join(f"{x:.3f}" for x in rows[:, 0])
              + "   {:.3f}    {:.3f}  {:.3f}   {:.3f}".format(*means), flush=True)


if __name__ == "__main__":
    main()
