"""Which run of a transformer recipe samples best? Trains several seeds side by side, then scores
every kept snapshot's samples (pitch-class overlap with the corpus, from the project's own
`generate.py` and `python -m bachsformer.evaluate samples`).

Runs of one recipe differ by their seed more than most settings move them, and held-out bits do
not rank snapshots the way their samples do, so a release is chosen by samples: first on
--score-seeds, then the --confirm-top best again on --confirm-seeds. Keep other seeds untouched to
check the choice. Arguments after `--` go to train_transformer.py. Writes OUT/scores.csv (one row
a snapshot and seed set) and each run's folder under OUT.

    python research/seed_sweep/seed_sweep.py --vae checkpoints/vae.pt --midi-dir data/midi/goldberg \\
        --seeds 7 8 9 10 --parallel 2 --out runs/sweep -- --train.threads=1
"""
import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2]
SAMPLES_PER_SEED = 20


def run(args: list, log: Path = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with open(log, "w") if log else contextlib.nullcontext(subprocess.PIPE) as stdout:
        result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, text=True,
                                stdout=stdout, stderr=subprocess.STDOUT if log else subprocess.PIPE)
    if result.returncode:
        last = (Path(log).read_text() if log else result.stderr or "").strip().splitlines()[-1:]
        detail = " ".join(last) + (f"; see {log}" if log else "")
        raise SystemExit(f"seed_sweep: {args[0]} failed ({detail})")
    return result


def train(opts, seed: int) -> Path:
    folder = opts.out / f"seed{seed}"
    run(["train_transformer.py", "--vae", opts.vae, "--midi-dir", opts.midi_dir, "--no-progress",
         "--train.keep_snapshots=true", f"--train.seed={seed}", f"--train.out_dir={folder}",
         *opts.train_args], log=opts.out / f"seed{seed}.log")
    return folder


def score(opts, snapshot: Path, seeds: list) -> list:
    """Pitch-class overlap of the snapshot's samples, one figure per seed."""
    pair = snapshot.with_suffix("")  # seedS/step-NNNNNN/ holds the exported pair
    pair.mkdir(exist_ok=True)
    if not (pair / "transformer.pt").exists():
        run(["train_transformer.py", "--export", snapshot, pair / "transformer.pt"])
    vae = pair / "vae.pt"
    if not vae.exists():
        vae.symlink_to(Path(opts.vae).resolve())
    figures = []
    for seed in seeds:
        samples, report = pair / f"samples-seed{seed}", pair / f"samples-seed{seed}.json"
        if not report.exists():
            run(["generate.py", "--checkpoint-dir", pair, "--device", opts.device, "--bars", opts.bars,
                 "--seed", seed, "--num-samples", SAMPLES_PER_SEED, "--out", samples, "--force"])
            run(["-m", "bachsformer.evaluate", "samples", samples, "--reference", opts.midi_dir,
                 "--json", report, "--force"])
        figures.append(json.loads(report.read_text())["summary"]["pitch_class_overlap"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True)
    parser.add_argument("--midi-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="training seeds")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--parallel", type=int, default=1, help="trainings and scorings at a time")
    parser.add_argument("--steps", type=int, nargs="+", default=[750, 1000, 1250, 1500])
    parser.add_argument("--score-seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--confirm-seeds", type=int, nargs="*", default=[20, 21, 22, 23, 24, 25])
    parser.add_argument("--confirm-top", type=int, default=12)
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="for sampling (training follows --train.device)")
    parser.add_argument("train_args", nargs="*", help="after --: options for train_transformer.py")
    opts = parser.parse_args()
    if opts.parallel < 1:
        parser.error("--parallel must be at least 1")
    opts.out.mkdir(parents=True, exist_ok=True)

    with ThreadPoolExecutor(opts.parallel) as pool:
        def each(job, items, what):  # results in order, with a progress bar
            return list(tqdm(pool.map(job, items), total=len(items), desc=what, unit="job"))

        folders = each(lambda seed: train(opts, seed), opts.seeds, "training")
        snapshots = [f / f"step-{step:06d}.pt" for f in folders for step in opts.steps
                     if (f / f"step-{step:06d}.pt").exists()]
        rows = dict(zip(snapshots, each(lambda s: score(opts, s, opts.score_seeds), snapshots, "scoring")))
        mean = lambda s: sum(rows[s]) / len(rows[s])
        top = sorted(snapshots, key=mean, reverse=True)[:opts.confirm_top] if opts.confirm_seeds else []
        for snapshot, more in zip(top, each(lambda s: score(opts, s, opts.confirm_seeds), top, "confirming")):
            rows[snapshot] = rows[snapshot] + more

    seeds = opts.score_seeds + opts.confirm_seeds
    ranked = sorted(rows, key=lambda s: (-len(rows[s]), -mean(s)))  # confirmed ones first
    with open(opts.out / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "step", "mean", *(f"seed_{s}" for s in seeds)])
        for snapshot in ranked:
            writer.writerow([snapshot.parent.name, int(snapshot.stem.split("-")[1]), f"{mean(snapshot):.4f}",
                             *(f"{x:.3f}" for x in rows[snapshot])])
    print("run     step   pitch-class overlap, mean over the seeds scored")
    for snapshot in ranked[:10]:
        print(f"{snapshot.parent.name:7} {snapshot.stem.split('-')[1].lstrip('0'):>5}  {mean(snapshot):.4f}"
              f" over {len(rows[snapshot])} seeds")
    print(f"all scores: {opts.out / 'scores.csv'}")


if __name__ == "__main__":
    main()
