"""Regenerated bars, measured: `python -m bachsformer.evaluate regenerate DIR` writes spans of bars
of every piece in DIR anew (pieces the model never trained on) and reports, beside the real
music's own figures:

- kept notes: every note starting outside the spans, as the file has it, a note held into a span
  whole or cut at the span's start (100% by construction);
- key: the regenerated span's key against the key of its context (the bars around it), and the
  original span's key against the same context;
- seams: the discriminator of `discriminate` on 8-beat windows centred on each seam, against the
  reference, beside the same test on as many windows cut at random from the same pieces as they
  are (the fair control: windows of a few pieces are told from a whole corpus by their pieces'
  character alone) and from free samples (`--free`);
- speed: seconds per regeneration with the model loaded.
"""
from __future__ import annotations

import time

import numpy as np

from ludovico_vae.midi import MidiError, Notes, bar_lines, beats_of_seconds, read_midi

from ..cli import format_table, midi_files, positive_int, progress, relative_label, write_json
from ..errors import CommandError
from ..editing import CONTEXT_BARS, NEW_TRACK, context_key
from ..generation import Bachsformer
from ..tonality import closely_related, estimate_key, key_name
from .discriminate import _read_pieces, discriminate

SEAM_BEATS = 8


def midi_notes(midi, tracks=None) -> Notes:
    """The notes (beats) of the non-drum tracks of a PrettyMIDI, or of the tracks named in `tracks`."""
    chosen = [i for i in midi.instruments if not i.is_drum and (tracks is None or i.name in tracks)]
    rows = [(n.pitch, n.start, n.end) for i in chosen for n in i.notes]
    if not rows:
        return Notes(np.zeros(0), np.zeros(0), np.zeros(0))
    start = beats_of_seconds(midi, [r[1] for r in rows])
    end = beats_of_seconds(midi, [r[2] for r in rows])
    return Notes(np.array([r[0] for r in rows]), start, end)


def spans_of(n_bars: int, bars: int, count: int) -> list:
    """`count` spans of `bars` bars (first, last; from 1), spread over the inside of a piece, each
    with CONTEXT_BARS bars on both sides where the piece allows."""
    room = n_bars - bars - 2 * CONTEXT_BARS
    if room < 0:
        return []
    firsts = sorted({CONTEXT_BARS + 1 + round(room * (k + 1) / (count + 1)) for k in range(count)})
    return [(a, a + bars - 1) for a in firsts]


def _window(notes: Notes, start: float, end: float) -> Notes:
    keep = (notes.start < end) & (notes.end > start)
    return Notes(notes.pitch[keep], np.maximum(notes.start[keep], start) - start, np.minimum(notes.end[keep], end) - start)


def _key(notes: Notes, start: float, end: float):
    window = _window(notes, start, end)
    return estimate_key(window.pitch, window.start, window.end) if len(window) else None


def measure_piece(model: Bachsformer, path, bars: int, count: int, samples: int, seed: int) -> dict:
    """Regenerate `count` spans of `bars` bars of one piece, `samples` versions each."""
    score = read_midi(path)
    end_beat = float(score.notes.end.max())
    starts = bar_lines(score.time_signatures, end_beat)
    bounds = np.append(starts, end_beat)
    rows, seams, seconds = [], [], []
    for first, last in spans_of(len(starts), bars, count):
        a, b = float(bounds[first - 1]), float(bounds[last])
        home = context_key(score.notes, bounds, a, b)
        real_key = _key(score.notes, a, b)
        t0 = time.perf_counter()
        pieces = model.regenerate(path, [(first, last)], seed=seed, num_samples=samples)
        seconds.append(time.perf_counter() - t0)
        for piece in pieces:
            new = midi_notes(piece.midi, [NEW_TRACK])
            kept = midi_notes(piece.midi, [i.name for i in piece.midi.instruments if i.name != NEW_TRACK])
            inside = (score.notes.start >= a - 1e-6) & (score.notes.start < b - 1e-6)
            # a note held into the span is kept whole where the new music holds it on, else cut at the span
            expected = [{(int(p), round(s, 4), round(e, 4))} | ({(int(p), round(s, 4), round(a, 4))} if s < a < e else set())
                        for p, s, e in zip(score.notes.pitch, score.notes.start, score.notes.end)
                        if not ((s >= a - 1e-6) and (s < b - 1e-6))]
            got = {(int(p), round(s, 4), round(e, 4)) for p, s, e in zip(kept.pitch, kept.start, kept.end)}
            key = _key(midi_notes(piece.midi), a, b)  # what sounds in the span, as for the real span's key
            rows.append({"span": f"{first}-{last}", "context_key": key_name(home), "key": key_name(key),
                         "real_key": key_name(real_key), "kept": sum(bool(ways & got) for ways in expected) / max(len(expected), 1),
                         "original_notes_in_span": int(inside.sum()), "new_notes": len(new),
                         "same_key": key is not None and key == home,
                         "related_key": key is not None and home is not None and closely_related(key, home),
                         "real_same_key": real_key is not None and real_key == home,
                         "real_related_key": real_key is not None and home is not None
                         and closely_related(real_key, home)})
            whole = midi_notes(piece.midi)
            for seam in (a, b):
                if seam - SEAM_BEATS / 2 >= 0 and seam + SEAM_BEATS / 2 <= end_beat:
                    seams.append(_window(whole, seam - SEAM_BEATS / 2, seam + SEAM_BEATS / 2))
    return {"rows": rows, "seams": seams, "seconds": seconds, "notes": score.notes}


def random_windows(pieces: list, count: int, rng: np.random.Generator) -> list:
    """`count` SEAM_BEATS-beat windows of `pieces` (Notes), starting on a beat: distinct windows
    drawn at random among all of them (a window given twice would be both learned and tested)."""
    starts = [(i, s) for i, p in enumerate(pieces) if len(p)
              for s in range(0, int(p.end.max() - SEAM_BEATS) + 1)]
    chosen = rng.choice(len(starts), count, replace=count > len(starts))
    return [_window(pieces[starts[k][0]], float(starts[k][1]), float(starts[k][1] + SEAM_BEATS)) for k in chosen]


def add_regenerate_command(commands, default_checkpoints) -> None:
    cmd = commands.add_parser("regenerate", help="bars of unseen pieces written anew: kept notes, key against "
                              "the context, seams, speed")
    cmd.add_argument("path", metavar="DIR", help="pieces the model never trained on (a folder or one file)")
    cmd.add_argument("--reference", metavar="DIR", help="real pieces for the seam discriminator (e.g. the Goldberg files)")
    cmd.add_argument("--free", metavar="DIR", help="free samples: the seam test is repeated on windows cut from them")
    cmd.add_argument("--bars", type=positive_int, default=4, help="bars in each span (default: %(default)s)")
    cmd.add_argument("--spans", type=positive_int, default=3, help="spans per piece (default: %(default)s)")
    cmd.add_argument("--samples", type=positive_int, default=4, help="versions of each span (default: %(default)s)")
    cmd.add_argument("--checkpoint-dir", default=str(default_checkpoints), help="holds vae.pt and transformer.pt")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    cmd.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    cmd.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    cmd.set_defaults(run=run_regenerate)


def run_regenerate(args) -> int:
    files, root = midi_files(args.path)
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, args.device)
    model.regenerate(files[0], [(1, 1)], seed=0)  # warm up: the figures are of a loaded model
    rows, seams, seconds, errors, pieces = [], [], [], {}, []
    for path in progress(files, "regenerate"):
        label = relative_label(path, root)
        try:
            result = measure_piece(model, path, args.bars, args.spans, args.samples, args.seed)
        except MidiError as e:
            errors[label] = e.reason
            continue
        rows += [{"piece": label, **r} for r in result["rows"]]
        seams += result["seams"]
        seconds += result["seconds"]
        pieces.append(result["notes"])
    if not rows:
        raise CommandError(f"{args.path}: no piece long enough for spans of {args.bars} bars with "
                           f"{CONTEXT_BARS} bars on each side")
    table = [[r["piece"], r["span"], r["context_key"], r["key"], r["real_key"], f"{r['kept']:.0%}", str(r["new_notes"])]
             for r in rows]
    table += [[label, f"ERROR: {reason}"] + [""] * 5 for label, reason in errors.items()]
    print(format_table(["piece", "bars", "context key", "new key", "real key", "kept", "new notes"], table))
    share = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    summary = {"spans": len(rows), "kept": float(np.min([r["kept"] for r in rows])),
               "same_key": share("same_key"), "related_key": share("related_key"),
               "real_same_key": share("real_same_key"), "real_related_key": share("real_related_key"),
               "seconds_per_call": float(np.median(seconds)), "samples_per_call": args.samples}
    print(f"{len(rows)} regenerated spans of {args.bars} bars: kept notes {summary['kept']:.0%} (the least), key as "
          f"the context's {summary['same_key']:.0%} (real music {summary['real_same_key']:.0%}), the same or closely "
          f"related {summary['related_key']:.0%} (real {summary['real_related_key']:.0%}); "
          f"{summary['seconds_per_call']:.2f} s a call of {args.samples} versions")
    if args.reference:
        reference, _ = _read_pieces(args.reference, "--reference", "reference", 5)
        seam_test = discriminate(seams, reference, SEAM_BEATS, seed=args.seed)
        summary["seam_balanced_accuracy"] = seam_test["balanced_accuracy"]
        line = f"seams: {len(seams)} windows of {SEAM_BEATS} beats told from the reference at {seam_test['balanced_accuracy']:.3f}"
        own = random_windows(pieces, len(seams), np.random.default_rng([args.seed, 1]))
        own_test = discriminate(own, reference, SEAM_BEATS, seed=args.seed)
        summary["own_balanced_accuracy"] = own_test["balanced_accuracy"]
        line += f", as many windows of the same pieces as written at {own_test['balanced_accuracy']:.3f}"
        if args.free:
            free, _ = _read_pieces(args.free, "--free", "free samples", 5)
            windows = random_windows(free, len(seams), np.random.default_rng(args.seed))
            free_test = discriminate(windows, reference, SEAM_BEATS, seed=args.seed)
            summary["free_balanced_accuracy"] = free_test["balanced_accuracy"]
            line += f", as many windows of free samples at {free_test['balanced_accuracy']:.3f}"
        summary["seam_baseline_balanced_accuracy"] = seam_test["baseline_balanced_accuracy"]
        print(line + f" (two halves of the reference: {seam_test['baseline_balanced_accuracy']:.3f})")
    if args.json:
        write_json(args.json, {"command": "regenerate", "path": str(args.path), "checkpoint_dir": str(args.checkpoint_dir),
                               "bars": args.bars, "spans": rows, "summary": summary, "errors": errors})
    return 0
