"""Where do generated pieces leave the key? Pitch-class profiles, local scale consistency, and
what the decoder's decision threshold changes.

For each folder of MIDI files it prints the pooled pitch-class profile beside the training
pieces' (the reference of `python -m bachsformer.evaluate samples`), its overlap with them (a bias
all pieces share lowers it), the median overlap of each piece with its own folder's profile
(variety from piece to piece lowers that), the median scale consistency of whole pieces and of
12-beat segments, the share of notes below G3 (the bass), their pitch classes and their share in
each eighth of a piece, the median overlap of each quarter of a piece, and the keys its 8-beat
segments are in (the best of the 12 major and 12 harmonic-minor scales). If segments scored as well as real music while whole pieces
did not, the generator would be drifting from key to key; if segments fall short too, the wrong
notes are local. With `--checkpoint-dir` it also generates `--num-samples` pieces at each offset
added to the VAE's decision threshold (in logits; higher decodes fewer, surer notes) and prints
their median pitch-class overlap, so that a decoder writing doubtful notes would show.

    python experiments/tonal_profile.py --reference ../shared/corpora/goldberg DIR [DIR ...] \
        [--checkpoint-dir checkpoints --threshold-offsets 0 0.5 1 2]
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from bachsformer.evaluate import DEFAULT_HELD_OUT
from bachsformer.generation import Bachsformer
from bachsformer.music_stats import PITCH_CLASSES, SCALES, overlap, pitch_class_counts, scale_consistency
from ludovico_vae.dataset import find_midi_files
from ludovico_vae.midi import read_midi

SEGMENT_BEATS = 12
KEY_SEGMENT_BEATS = 8
BASS_BELOW = 55  # G3: the share of notes under it shows how much bass a piece has
NAMES = "C C# D D# E F F# G G# A A# B".split()
KEY_NAMES = NAMES + [n.lower() + "m" for n in NAMES]  # the order of music_stats.SCALES


def notes_of(folder) -> list:
    return [read_midi(path).notes for path in find_midi_files(Path(folder))]


def segment_consistency(notes) -> list:
    """Scale consistency of each 12-beat segment that holds more than 10 notes."""
    scores = []
    for start in np.arange(0, notes.start.max(), SEGMENT_BEATS):
        inside = (notes.start >= start) & (notes.start < start + SEGMENT_BEATS)
        if inside.sum() > 10:
            counts = np.bincount(notes.pitch[inside] % PITCH_CLASSES, minlength=PITCH_CLASSES)
            scores.append((SCALES @ counts).max() / counts.sum())
    return scores


def parts_of(notes, n_parts: int) -> np.ndarray:
    """Which of `n_parts` equal spans of a piece (from beat 0 to its last onset) each note starts in."""
    edges = np.linspace(0, notes.start.max() + 1e-9, n_parts + 1)
    return np.searchsorted(edges, notes.start, side="right") - 1


def quarter_overlaps(pieces, ref_profile) -> np.ndarray:
    """Median pitch-class overlap of each quarter of a piece with the reference: a key that
    wanders as a piece goes on would show as falling quarters."""
    rows = []
    for notes in pieces:
        quarter = parts_of(notes, 4)
        rows.append([overlap(profile([notes.select(quarter == q)]), ref_profile) if (quarter == q).any()
                     else np.nan for q in range(4)])  # a silent quarter has no profile
    return np.nanmedian(rows, axis=0)


def key_shares(pieces) -> np.ndarray:
    """(24,) the share of time each key holds: per piece, the share of its 8-beat segments (of at
    least 4 notes) whose notes fit that scale best, averaged over pieces."""
    shares = []
    for notes in pieces:
        keys = []
        for start in np.arange(0, notes.start.max(), KEY_SEGMENT_BEATS):
            inside = (notes.start >= start) & (notes.start < start + KEY_SEGMENT_BEATS)
            if inside.sum() >= 4:
                keys.append((SCALES @ np.bincount(notes.pitch[inside] % PITCH_CLASSES, minlength=PITCH_CLASSES)).argmax())
        if keys:
            shares.append(np.bincount(keys, minlength=len(SCALES)) / len(keys))
    return np.mean(shares, axis=0)


def bass_profile(pieces) -> np.ndarray:
    """(12,) the pitch classes of the notes below G3, as shares of all notes: how much of a
    profile's difference lies in the bass."""
    counts = sum(pitch_class_counts(notes.select(notes.pitch < BASS_BELOW)) for notes in pieces)
    return counts / sum(len(notes) for notes in pieces)


def bass_by_eighth(pieces) -> np.ndarray:
    """(8,) the share of notes below G3 in each eighth of the pieces, pooled: a generator that
    opens from a context it never trained on would show a different first eighth."""
    bass, total = np.zeros(8), np.zeros(8)
    for notes in pieces:
        part = parts_of(notes, 8)
        np.add.at(total, part, 1)
        np.add.at(bass, part, notes.pitch < BASS_BELOW)
    return bass / np.maximum(total, 1)


def profile(pieces) -> np.ndarray:
    counts = sum(pitch_class_counts(notes) for notes in pieces)
    return counts / counts.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="folders of MIDI files to profile")
    parser.add_argument("--reference", required=True, help="the training corpus (held-out pieces are set aside)")
    parser.add_argument("--checkpoint-dir", help="also sample from this pair at each threshold offset")
    parser.add_argument("--threshold-offsets", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--num-samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    reference = [read_midi(path).notes for path in find_midi_files(Path(args.reference))
                 if path.stem not in DEFAULT_HELD_OUT]
    ref_profile = profile(reference)
    print(f"{'':24}" + " ".join(f"{n:>5}" for n in NAMES) + "  overlap    own  scale (piece / 12 beats)  bass  quarters")
    rows = [("reference", reference)] + [(folder, notes_of(folder)) for folder in args.folders]
    for label, pieces in rows:
        p = profile(pieces)
        whole = np.median([scale_consistency(n) for n in pieces])
        local = np.median([s for n in pieces for s in segment_consistency(n)])
        bass = bass_profile(pieces).sum()
        own = np.median([overlap(profile([n]), p) for n in pieces])
        print(f"{label[-23:]:24}" + " ".join(f"{x:5.3f}" for x in p)
              + f"  {overlap(p, ref_profile):7.3f}  {own:.3f}  {whole:.3f} / {local:.3f}  {bass:10.3f}  "
              + " ".join(f"{q:.3f}" for q in quarter_overlaps(pieces, ref_profile)))
    print(f"{'notes below G3':24}" + " ".join(f"{n:>5}" for n in NAMES) + "  (shares of all notes)")
    for label, pieces in rows:
        print(f"{label[-23:]:24}" + " ".join(f"{x:5.3f}" for x in bass_profile(pieces)))
    print(f"{'notes below G3, by eighth':24}  (share of the notes starting in each eighth of a piece)")
    for label, pieces in rows:
        print(f"{label[-23:]:24}" + " ".join(f"{x:5.3f}" for x in bass_by_eighth(pieces)))
    for label, pieces in rows:
        shares = key_shares(pieces)
        print(f"{label[-23:]:24}keys: " + " ".join(f"{KEY_NAMES[k]} {shares[k]:.2f}" for k in np.argsort(-shares)[:6]))

    if args.checkpoint_dir:
        model = Bachsformer.from_checkpoints(args.checkpoint_dir, device="cpu")
        base = model.vae.threshold.clone()
        for offset in args.threshold_offsets:
            model.vae.threshold.copy_(base + offset)
            pieces = [g.midi for g in model.generate(seed=args.seed, num_samples=args.num_samples)]
            with tempfile.TemporaryDirectory() as tmp:
                for i, midi in enumerate(pieces):
                    midi.write(f"{tmp}/{i}.mid")
                generated = notes_of(tmp)
            overlaps = [overlap(profile([n]), ref_profile) for n in generated]
            print(f"threshold offset {offset:+.1f}: median pitch-class overlap {np.median(overlaps):.3f}, "
                  f"notes per piece {np.median([len(n) for n in generated]):.0f}")


if __name__ == "__main__":
    main()
