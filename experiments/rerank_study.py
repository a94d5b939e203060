"""Does the model itself know which of its samples are the more tonal? Draws K candidates for each
of 20 samples per seed (generate.py's defaults) and keeps, of each K, the one a score prefers:

  logp    the mean log-probability of its tokens under the (key-guided) distribution they came from;
  margin  the mean of log p(token | corpus key) - mean log p(token | key a tone away), the key
          guidance signal averaged over the whole piece rather than used step by step.

Neither looks at a histogram. Prints, per seed, the rank correlation between the score and each
candidate's pitch-class overlap, repeated-beat rate, copied share and duration overlap, then the
20-sample medians of the first 20 candidates (what generate.py writes) and of the best of each K.

    python experiments/rerank_study.py --score logp --candidates 4 --seeds 10 11 12
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import mingpt.model as gpt
from bachsformer.evaluate import DEFAULT_HELD_OUT
from bachsformer.generation import Bachsformer
from bachsformer.music_stats import compare
from ludovico_vae.dataset import find_midi_files
from ludovico_vae.midi import read_midi
from sampling_study import notes_as_written  # a script beside this one

FIGURES = ("pitch_class_overlap", "repeated_beat_rate", "copied_4beat_share", "duration_overlap")


def recorder(kind: str, steps: list):
    """A stand-in for mingpt's _guided that also keeps, per step, the (B, V) table the score reads."""
    guided = gpt._guided

    def record(logits, B, guidance):
        out = guided(logits, B, guidance)
        if kind == "logp":
            steps.append(torch.log_softmax(out, dim=-1).half())
        else:
            logp = torch.log_softmax(logits, dim=-1).unflatten(0, (-1, B))
            steps.append((logp[0] - logp[1:].mean(dim=0)).half())
        return out
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score", choices=("logp", "margin"), default="logp")
    parser.add_argument("--candidates", type=int, default=4, help="K candidates per sample")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--reference", default="../shared/corpora/goldberg", help="held-out pieces are set aside")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--bars", type=int, default=32)
    args = parser.parse_args()
    if args.candidates < 1:
        parser.error(f"--candidates must be at least 1, got {args.candidates}")

    reference = {p.stem: read_midi(p).notes for p in find_midi_files(Path(args.reference))
                 if p.stem not in DEFAULT_HELD_OUT}
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, device="cpu")
    steps = []
    gpt._guided = recorder(args.score, steps)  # called once per drawn token, in order
    k = args.candidates
    for seed in args.seeds:
        steps.clear()
        pieces = model.generate(bars=args.bars, seed=seed, num_samples=20 * k)
        tokens = torch.from_numpy(np.stack([p.tokens for p in pieces]))  # (20K, n)
        table = torch.stack(steps, dim=1)  # (20K, n, V): step i is what token i was drawn from
        score = table.gather(-1, tokens[..., None])[..., 0].float().mean(dim=1).numpy()
        rows = compare(notes_as_written(pieces), reference)["rows"]
        figures = {name: np.array([r[name] for r in rows], dtype=float) for name in FIGURES}
        ranks = lambda x: np.argsort(np.argsort(x))
        first = np.arange(20)
        best = score.reshape(k, 20).argmax(axis=0) * 20 + first  # sample j's candidates: j, j + 20, ...
        medians = lambda idx: " ".join(f"{np.median(v[idx]):.3f}" for v in figures.values())
        print(f"seed {seed}: rank correlation with {args.score}: "
              + " ".join(f"{np.corrcoef(ranks(score), ranks(v))[0, 1]:+.2f}" for v in figures.values())
              + "  (pitch-class, repeated, copied, duration)")
        print(f"  first 20:     {medians(first)}  {args.score} {score[first].mean():.3f}")
        print(f"  best of {k}:    {medians(best)}  {args.score} {score[best].mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
