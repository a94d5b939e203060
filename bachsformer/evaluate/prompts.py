"""Do continuations keep their prompts' key, meter and tempo? `python -m bachsformer.evaluate
prompts DIR` cuts the opening of every piece in DIR into a prompt, has the model continue it, and
measures each continuation as `continuation` does.
"""
from __future__ import annotations

import numpy as np

from ludovico_vae.frames import score_to_piece
from ludovico_vae.midi import MidiError, Notes, Score, read_midi

from ..cli import format_table, midi_files, positive_int, progress, relative_label, write_json
from ..errors import CommandError
from ..generation import Bachsformer
from ..tonality import key_name
from .continuation import compare_continuation, summarise


def opening(score: Score, beats: float) -> Score:
    """The first `beats` beats of `score`: the notes that start in them, cut at their end."""
    n = score.notes
    keep = n.start < beats - 1e-9
    notes = Notes(n.pitch[keep], n.start[keep], np.minimum(n.end[keep], beats))
    cut = [e for e in score.time_signatures if e[0] < beats] or score.time_signatures[:1]
    tempos = [e for e in score.tempos if e[0] < beats] or score.tempos[:1]
    return Score(notes, score.ticks_per_beat, tempos, cut, score.source)


def continue_openings(model: Bachsformer, paths: list, root, beats: float, bars: int, seed: int) -> tuple:
    """(rows, results, errors) of every file's opening continued by `bars` bars."""
    rows, results, errors = [], [], {}
    for path in progress(paths, "prompts"):
        label = relative_label(path, root)
        try:
            prompt = opening(read_midi(path), beats)
            if not len(prompt.notes):
                raise MidiError(path, f"no note in its first {beats:g} beats")
            piece = model.generate(prompt=score_to_piece(prompt, model.grid), bars=bars, seed=seed, form="through")[0]
        except MidiError as e:
            errors[label] = e.reason
            continue
        result = compare_continuation(prompt, piece_score(piece))
        results.append(result)
        rows.append({"piece": label, **result.row()})
    return rows, results, errors


def piece_score(piece) -> Score:
    """A generated piece as a Score, in beats, with its meter and tempo changes."""
    midi = piece.midi
    tick = midi.time_to_tick
    resolution = midi.resolution
    notes = midi.instruments[0].notes
    beats = lambda seconds: tick(seconds) / resolution  # noqa: E731
    pitch = np.array([n.pitch for n in notes], dtype=np.int64)
    start = np.array([beats(n.start) for n in notes])
    end = np.array([beats(n.end) for n in notes])
    tempos = [(beats(t), float(q)) for t, q in zip(*midi.get_tempo_changes())]
    meters = [(beats(ts.time), ts.numerator, ts.denominator) for ts in midi.time_signature_changes]
    return Score(Notes(pitch, start, end), resolution, tempos, meters or [(0.0, 4, 4)])


def add_prompts_command(commands, default_checkpoints) -> None:
    cmd = commands.add_parser("prompts", help="continuations of the openings of pieces, against their keys, "
                              "meters and tempos")
    cmd.add_argument("path", metavar="DIR", help="pieces whose openings are the prompts")
    cmd.add_argument("--checkpoint-dir", default=str(default_checkpoints), help="holds vae.pt and transformer.pt")
    cmd.add_argument("--beats", type=positive_int, default=16, help="beats of each opening (default: %(default)s)")
    cmd.add_argument("--bars", type=positive_int, default=8, help="bars of each continuation (default: %(default)s)")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    cmd.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    cmd.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    cmd.set_defaults(run=run_prompts)


def run_prompts(args) -> int:
    files, root = midi_files(args.path)
    model = Bachsformer.from_checkpoints(args.checkpoint_dir, args.device)
    rows, results, errors = continue_openings(model, files, root, args.beats, args.bars, args.seed)
    if not results:
        raise CommandError(f"{args.path}: no opening could be continued")
    table = [[r["piece"], r["prompt_key"], r["key"], "same" if r["same_key"] else "yes" if r["related_key"] else "no",
              r["prompt_meter"], r["meter"], f"{r['prompt_qpm']:g}", f"{r['qpm']:g}"] for r in rows]
    table += [[label, f"ERROR: {reason}"] + [""] * 6 for label, reason in errors.items()]
    print(format_table(["prompt", "prompt key", "key", "related", "prompt meter", "meter", "prompt tempo", "tempo"], table))
    summary = summarise(results)
    keys = {key_name(r.prompt_key) for r in results}
    meters = {r.prompt_meter for r in results}
    print(f"{len(results)} openings of {args.beats} beats in {len(keys)} keys and {len(meters)} meters, continued by "
          f"{args.bars} bars: the prompt's key kept {summary['same_key']:.0%}, the same or a closely related key "
          f"{summary['related_key']:.0%}, meter {summary['same_meter']:.0%}, tempo {summary['same_tempo']:.0%}")
    if args.json:
        write_json(args.json, {"command": "prompts", "path": str(args.path), "checkpoint_dir": str(args.checkpoint_dir),
                               "beats": args.beats, "bars": args.bars, "pieces": rows, "summary": summary,
                               "errors": errors})
    return 0
