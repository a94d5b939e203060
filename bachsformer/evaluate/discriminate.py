"""The classifier two-sample test: can a small CNN tell generated music from the reference?

This module owns the test of docs/evaluation.md ("Discriminator"): pieces cut into windows of
binary rolls, a small CNN trained with k-fold cross-validation grouped by file, balanced accuracy
and ROC AUC of its held-out predictions, the same test between two halves of the reference as the
real-against-real baseline, and the `discriminate` command of `python -m bachsformer.evaluate`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ludovico_vae.midi import HIGHEST_PITCH, LOWEST_PITCH, MidiError, Notes, read_midi

from ..cli import format_table, midi_files, positive_int, progress, relative_label, write_json
from ..errors import CommandError, MeasureError

CELLS_PER_BEAT = 12
N_KEYS = HIGHEST_PITCH - LOWEST_PITCH + 1  # 88, A0-C8
EPOCHS = 12  # passes over the training windows; 40 generated pieces against Goldberg: 0.73 at 12, 0.69 at 6
MIN_STEPS = 40  # and at least this many optimizer steps, for small sets
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
WIDTH = 32  # channels of the deeper convolutions


def piece_roll(notes: Notes) -> np.ndarray:
    """(2, 88, T) uint8, 12 cells a beat: channel 0 onsets, channel 1 sounding notes.

    Notes off the keyboard are dropped; a note shorter than a cell still sounds for one.
    """
    keep = (notes.pitch >= LOWEST_PITCH) & (notes.pitch <= HIGHEST_PITCH)
    key = notes.pitch[keep] - LOWEST_PITCH
    on = np.rint(notes.start[keep] * CELLS_PER_BEAT).astype(np.int64)
    off = np.maximum(np.rint(notes.end[keep] * CELLS_PER_BEAT).astype(np.int64), on + 1)
    length = int(off.max(initial=0))
    roll = np.zeros((2, N_KEYS, length), np.uint8)
    roll[0, key, on] = 1
    change = np.zeros((N_KEYS, length + 1), np.int64)  # +1 where a note starts sounding, -1 where it stops
    np.add.at(change, (key, on), 1)
    np.add.at(change, (key, off), -1)
    roll[1] = np.cumsum(change, axis=1)[:, :-1] > 0
    return roll


def piece_windows(notes: Notes, beats: int) -> np.ndarray:
    """(W, 2, 88, beats*12) uint8: windows every beats/2 beats, each wholly inside the piece.

    A piece shorter than one window is padded to one; windows where no note sounds are left out.
    """
    roll = piece_roll(notes)  # (2, 88, T)
    width = beats * CELLS_PER_BEAT
    if roll.shape[-1] < width:
        roll = np.pad(roll, ((0, 0), (0, 0), (0, width - roll.shape[-1])))
    starts = range(0, roll.shape[-1] - width + 1, width // 2)
    windows = np.stack([roll[..., s:s + width] for s in starts])
    return windows[windows[:, 1].any(axis=(1, 2))]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve from ranks (ties share their mean rank): P(score of a 1 > score of a 0)."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    positives, negatives = labels.sum(), (~labels).sum()
    if not positives or not negatives:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based, the mean over a tie
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def balanced_accuracy(labels, scores, threshold: float = 0.5) -> float:
    """Mean of the accuracies on each class: 0.5 for a guess, whatever the class sizes."""
    labels, said = np.asarray(labels, bool), np.asarray(scores) >= threshold
    return float((said[labels].mean() + (~said[~labels]).mean()) / 2)


def assign_folds(sides, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each file: the files of each side shuffled and dealt round, so every fold holds both."""
    sides = np.asarray(sides)
    fold = np.empty(len(sides), np.int64)
    for side in np.unique(sides):
        files = rng.permutation(np.flatnonzero(sides == side))
        fold[files] = np.arange(len(files)) % folds
    return fold


def fold_windows(window_file: np.ndarray, file_fold: np.ndarray, fold: int) -> tuple:
    """(train, test) window indices of one fold; all of a file's windows fall on the same side."""
    held = file_fold[window_file] == fold
    return np.flatnonzero(~held), np.flatnonzero(held)


class WindowCNN(nn.Module):
    """Convolutions over keys and time, shared across pitch so that a pattern is found in any key."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(2, 8, kernel_size=3, stride=(2, 3), padding=1), nn.ReLU(),  # (B, 8, 44, T/3)
            nn.Conv2d(8, width, kernel_size=3, stride=2, padding=1), nn.ReLU(),   # (B, W, 22, T/6)
            nn.Conv2d(width, width, kernel_size=3, stride=2, padding=1), nn.ReLU())  # (B, W, 11, T/12)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x.float())  # (B, 2, 88, T) -> (B, W, 11, T/12)
        return self.head(h.amax(dim=(-2, -1))).squeeze(-1)  # max over keys and time (B, W) -> (B,)


def train_classifier(x: torch.Tensor, y: torch.Tensor, seed: int) -> WindowCNN:
    """A fresh CNN fitted to windows `x` (N, 2, 88, T) and labels `y` (N,), the classes weighted equally.

    At least EPOCHS passes and MIN_STEPS steps: a small set gets enough steps to learn anything.
    """
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    model = WindowCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    positives = y.sum()
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=(len(y) - positives) / positives)
    model.train()
    for _ in range(max(EPOCHS, -(-MIN_STEPS // -(-len(y) // BATCH_SIZE)))):
        for batch in torch.randperm(len(y), generator=shuffle).split(BATCH_SIZE):
            loss = loss_fn(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@torch.no_grad()
def predict(model: WindowCNN, x: torch.Tensor) -> np.ndarray:
    """P(label 1) of each window (N,)."""
    model.eval()
    return torch.cat([torch.sigmoid(model(batch)) for batch in x.split(256)]).numpy()


def two_sample_test(windows: list, sides, folds: int, rng: np.random.Generator, bar) -> dict:
    """Cross-validated test between the files labelled 1 and those labelled 0 in `sides`.

    `windows` holds each file's (W, 2, 88, T); figures are over the pooled held-out predictions.
    """
    sides = np.asarray(sides, np.int64)
    file_fold = assign_folds(sides, folds, rng)
    window_file = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    x = torch.from_numpy(np.concatenate(windows))  # (N, 2, 88, T) uint8
    y = sides[window_file]
    scores, per_fold = np.empty(len(y)), []
    for fold in range(folds):
        train, test = fold_windows(window_file, file_fold, fold)
        model = train_classifier(x[train], torch.from_numpy(y[train]).float(), int(rng.integers(2**31)))
        bar.update()
        scores[test] = predict(model, x[test])
        per_fold.append({"fold": fold, "train_windows": len(train), "test_windows": len(test),
                         "balanced_accuracy": balanced_accuracy(y[test], scores[test]),
                         "auc": roc_auc(y[test], scores[test])})
    return {"balanced_accuracy": balanced_accuracy(y, scores), "auc": roc_auc(y, scores),
            "files": [int((sides == 1).sum()), int((sides == 0).sum())],
            "windows": [int((y == 1).sum()), int((y == 0).sum())], "per_fold": per_fold}


NO_BASELINE = {"balanced_accuracy": None, "auc": None, "files": [None, None], "windows": [None, None],
               "per_fold": None}


def discriminate(generated: list, reference: list, beats: int = 8, folds: int = 5, seed: int = 0,
                 progress: bool | None = None) -> dict:
    """The test of generated (label 1) against reference (label 0) `Notes`, and its baseline.

    The baseline splits the reference into two seeded halves (B labelled 1, A 0); it is left out
    (None) when the reference has fewer than 2 x `folds` pieces. It depends only on the reference
    and the seed, so it is the same beside any generated set. `progress`: None shows a bar on a
    terminal only.
    """
    if beats < 1 or folds < 2:
        raise MeasureError(f"beats must be at least 1 and folds at least 2, got {beats} and {folds}")
    sets = {}
    for name, pieces in (("generated", generated), ("reference", reference)):
        sets[name] = [w for w in (piece_windows(notes, beats) for notes in pieces) if len(w)]
        if len(sets[name]) < folds:
            raise MeasureError(f"{name}: {len(sets[name])} pieces with notes on the keyboard; "
                               f"{folds} folds need at least {folds}")
    gen, ref = sets["generated"], sets["reference"]
    with_baseline = len(ref) >= 2 * folds
    with tqdm(total=(2 if with_baseline else 1) * folds, desc="discriminate", unit="fit",
              disable=None if progress is None else not progress, leave=False) as bar:
        test = two_sample_test(gen + ref, [1] * len(gen) + [0] * len(ref), folds,
                               np.random.default_rng([seed, 0]), bar)
        baseline = NO_BASELINE
        if with_baseline:
            rng = np.random.default_rng([seed, 1])
            halves = np.zeros(len(ref), np.int64)
            halves[rng.permutation(len(ref))[len(ref) // 2:]] = 1
            baseline = two_sample_test(ref, halves, folds, rng, bar)
    return {"beats": beats, "folds": folds, "seed": seed,
            "balanced_accuracy": test["balanced_accuracy"], "auc": test["auc"],
            "baseline_balanced_accuracy": baseline["balanced_accuracy"], "baseline_auc": baseline["auc"],
            **{count: {"generated": test[count][0], "reference": test[count][1],
                       "reference_half_b": baseline[count][0], "reference_half_a": baseline[count][1]}
               for count in ("files", "windows")},
            "per_fold": {"test": test["per_fold"], "baseline": baseline["per_fold"]}}


def verdict(result: dict) -> str:
    ba, base = result["balanced_accuracy"], result["baseline_balanced_accuracy"]
    line = f"balanced accuracy {ba:.3f} (0.5 = indistinguishable, 1.0 = told apart every time)"
    if base is None:
        return line + "; no baseline: the reference has fewer than 2 x --folds pieces"
    easier = "more easily" if ba > base else "no more easily"
    return line + f": told apart {easier} than two halves of the reference ({base:.3f})"


def _read_pieces(path, option: str, side: str, folds: int) -> tuple:
    """[Notes] of the readable MIDI files under `path`, and a record of each file skipped."""
    files, root = midi_files(path)
    pieces, skipped = [], []
    for file in progress(files, side):
        try:
            pieces.append(read_midi(file).notes)
        except MidiError as e:
            skipped.append({"side": side, "file": relative_label(file, root), "error": e.reason})
    if len(pieces) < folds:
        raise CommandError(f"{option} {path}: {len(pieces)} readable MIDI files "
                           f"({len(skipped)} skipped); --folds {folds} needs at least {folds}")
    return pieces, skipped


def run_discriminate(args) -> int:
    if args.folds < 2:
        raise CommandError(f"--folds: must be at least 2, got {args.folds}")
    if args.seed < 0:
        raise CommandError(f"--seed: must be 0 or more, got {args.seed}")
    generated, skipped = _read_pieces(args.path, "GEN_DIR", "generated", args.folds)
    reference, ref_skipped = _read_pieces(args.reference, "--reference", "reference", args.folds)
    skipped += ref_skipped
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = discriminate(generated, reference, args.beats, args.folds, args.seed)
    finally:
        torch.set_num_threads(threads)
    tests = [("generated vs reference", "", "generated", "reference")]
    if result["baseline_balanced_accuracy"] is not None:
        tests.append(("reference half vs half", "baseline_", "reference_half_b", "reference_half_a"))
    files, windows = result["files"], result["windows"]
    table = [[name, f"{files[a]} / {files[b]}", f"{windows[a]} / {windows[b]}",
              f"{result[key + 'balanced_accuracy']:.3f}", f"{result[key + 'auc']:.3f}"] for name, key, a, b in tests]
    print(f"{args.beats}-beat windows, {args.folds} folds grouped by file, seed {args.seed}:")
    print(format_table(["test", "files", "windows", "balanced accuracy", "AUC"], table, right={1, 2, 3, 4}))
    for s in skipped:
        print(f"{s['side']} {s['file']} skipped: {s['error']}")
    print(verdict(result))
    if args.json:
        write_json(args.json, {"command": "discriminate", "path": str(args.path), "reference": str(args.reference),
                               **result, "skipped": skipped})
    return 0


def add_discriminate_command(commands) -> None:
    """The `discriminate` subcommand, added to `python -m bachsformer.evaluate`'s subparsers."""
    dis = commands.add_parser("discriminate", help="can a small CNN tell generated music from the reference? "
                                                   "(balanced accuracy, AUC, real-against-real baseline)")
    dis.add_argument("path", metavar="GEN_DIR", help="a folder of generated MIDI files (or one file)")
    dis.add_argument("--reference", required=True, metavar="DIR", help="a folder of real pieces, e.g. the Goldberg files")
    dis.add_argument("--beats", type=positive_int, default=8, help="window length in beats, stride half of it (default 8)")
    dis.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds, grouped by file (default 5)")
    dis.add_argument("--seed", type=int, default=0, help="seeds the folds, the halves and the CNNs (default 0)")
    # small convolutions wait on every thread at every op: on a machine whose other core is busy,
    # two threads ran 8 times slower than one
    dis.add_argument("--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)")
    dis.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    dis.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    dis.set_defaults(run=run_discriminate)
