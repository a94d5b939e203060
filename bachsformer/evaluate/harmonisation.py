"""Harmonisations, measured: `python -m bachsformer.evaluate harmonise DIR` harmonises the top line
of every piece in DIR (pieces the model never trained on) and reports, beside the real pieces:

- the line present: every note of the line in the output as the file has it (100% by construction);
- key: the harmonisation's estimated key against the line's own;
- parallel fifths and octaves between the outer voices: at each onset of the top line, the top
  note and the lowest note sounding; of the steps where both move in the same direction, the share
  that go from a perfect fifth (or octave, or unison, compound intervals included) to the same.
"""
from __future__ import annotations

import time

import numpy as np

from ludovico_vae.midi import MidiError, Notes, read_midi

from ..cli import format_table, midi_files, positive_int, progress, relative_label, write_json
from ..errors import CommandError
from ..editing import NEW_TRACK
from ..generation import Bachsformer
from ..harmonise import line_of
from ..tonality import estimate_key, key_name, parallel_perfect
from .regeneration import midi_notes



def outer_voices(line: Notes, everything: Notes) -> list:
    """[(top, bass)] at each onset of `line`: its note and the lowest note of `everything` sounding."""
    pairs = []
    for pitch, start in zip(line.pitch.tolist(), line.start.tolist()):
        sounding = everything.pitch[(everything.start <= start + 1e-6) & (everything.end > start + 1e-6)]
        if len(sounding):
            pairs.append((pitch, int(sounding.min())))
    return pairs


def add_harmonise_command(commands, default_checkpoints) -> None:
    cmd = commands.add_parser("harmonise", help="the top lines of unseen pieces harmonised: the line kept, key, "
                              "parallel fifths and octaves against the real pieces'")
    cmd.add_argument("path", metavar="DIR", help="pieces the model never trained on (a folder or one file)")
    cmd.add_argument("--samples", type=positive_int, default=1, help="harmonisations of each piece (default 1)")
    cmd.add_argument("--checkpoint-dir", default=str(default_checkpoints), help="holds vae.pt and transformer.pt")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    cmd.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    cmd.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    cmd.set_defaults(run=run_harmonise)


def run_harmonise(args) -> int:
    files, root = midi_files(args.path)
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, args.device)
    rows, errors, seconds = [], {}, []
    for path in progress(files, "harmonise"):
        label = relative_label(path, root)
        try:
            score = read_midi(path)
            line = score.notes.select(line_of(score.notes, "top"))
            t0 = time.perf_counter()
            pieces = model.harmonise(path, "top", seed=args.seed, num_samples=args.samples)
            seconds.append((time.perf_counter() - t0) / args.samples)
        except MidiError as e:
            errors[label] = e.reason
            continue
        line_key = estimate_key(line.pitch, line.start, line.end)
        real = parallel_perfect(outer_voices(line, score.notes))
        for piece in pieces:
            everything = midi_notes(piece.midi)
            kept = midi_notes(piece.midi, [i.name for i in piece.midi.instruments if i.name != NEW_TRACK])
            present = {(int(p), round(float(s), 4), round(float(e), 4)) for p, s, e in zip(kept.pitch, kept.start, kept.end)}
            wanted = {(int(p), round(float(s), 4), round(float(e), 4)) for p, s, e in zip(line.pitch, line.start, line.end)}
            key = estimate_key(everything.pitch, everything.start, everything.end)
            written = parallel_perfect(outer_voices(line, everything))
            rows.append({"piece": label, "line_key": key_name(line_key), "key": key_name(key),
                         "same_key": key == line_key, "line_present": len(wanted & present) / max(len(wanted), 1),
                         "parallels": written[0], "similar_steps": written[1],
                         "real_parallels": real[0], "real_similar_steps": real[1]})
    if not rows:
        raise CommandError(f"{args.path}: no piece could be harmonised")
    rate = lambda p, n: sum(r[p] for r in rows) / max(sum(r[n] for r in rows), 1)  # noqa: E731
    summary = {"harmonisations": len(rows), "line_present": min(r["line_present"] for r in rows),
               "same_key": float(np.mean([r["same_key"] for r in rows])),
               "parallel_rate": rate("parallels", "similar_steps"),
               "real_parallel_rate": rate("real_parallels", "real_similar_steps"),
               "seconds_per_harmonisation": float(np.median(seconds))}
    table = [[r["piece"], r["line_key"], r["key"], f"{r['line_present']:.0%}", f"{r['parallels']}/{r['similar_steps']}",
              f"{r['real_parallels']}/{r['real_similar_steps']}"] for r in rows]
    table += [[label, f"ERROR: {reason}"] + [""] * 4 for label, reason in errors.items()]
    print(format_table(["piece", "line key", "key", "line kept", "parallel 5ths/8ves", "real"], table))
    print(f"{len(rows)} harmonisations: the line kept {summary['line_present']:.0%} (the least), in the line's key "
          f"{summary['same_key']:.0%}; parallel fifths and octaves between the outer voices in "
          f"{summary['parallel_rate']:.1%} of similar motions (the real pieces: {summary['real_parallel_rate']:.1%}); "
          f"{summary['seconds_per_harmonisation']:.2f} s each")
    if args.json:
        write_json(args.json, {"command": "harmonise", "path": str(args.path), "checkpoint_dir": str(args.checkpoint_dir),
                               "pieces": rows, "summary": summary, "errors": errors})
    return 0
