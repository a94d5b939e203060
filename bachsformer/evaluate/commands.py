"""`python -m bachsformer.evaluate`: every quality figure of the project from one command.

    roundtrip DIR                 frame-format fidelity per file (onset F1, note F1)
    reconstruct --vae CKPT DIR    VQ-VAE reconstruction per file (F1s, cell F1, codes used, perplexity)
    likelihood --checkpoint-dir DIR --midi DIR
                                  transformer bits per token per piece, beside the unigram entropy
    samples GEN_DIR --reference DIR [--held-out NAME ...]
                                  generated music against the training pieces, beside real music,
                                  and each piece's tonal plan and form beside the reference's
    continuation PROMPT OUT       a prompt's key, meter and tempo against its continuation's
    keys [--checkpoint-dir DIR]   pieces asked for in each of the 24 keys, and the keys they are in
    prompts DIR                   the openings of pieces continued, against their keys, meters and tempos
    discriminate GEN_DIR --reference DIR
                                  can a small CNN tell generated windows from real ones? (0.5: no)
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from ludovico_vae.files import atomic_write
from ludovico_vae.frames import fit_to_keyboard, score_to_piece
from ludovico_vae.midi import MidiError, keyboard_reference, read_midi, score_to_midi

from ..cli import (CommandParser, format_table, midi_files, positive_int, progress, refuse_overwrite, relative_label,
                   run_main, write_json)
from ..corpus.goldberg import GOLDBERG_HELD_OUT
from ..errors import CommandError
from ..pair import load_pair, load_vae
from ..paths import BUNDLED_CHECKPOINTS
from ..runtime import resolve_device
from ..tokens import encode_piece
from .likelihood import likelihood, unigram_bits
from .continuation import pair_files, read_pair
from .continuation import summarise as summarise_continuations
from .discriminate import add_discriminate_command
from .form import form_of
from .keys import add_keys_command
from .prompts import add_prompts_command
from .harmonisation import add_harmonise_command
from .regeneration import add_regenerate_command
from .form import summarise as summarise_form
from .music_stats import compare, real_music_yardstick
from .reconstruction import codebook_stats, piece_metrics, reconstruct
from .roundtrip import add_roundtrip_arguments

PROG = "bachsformer.evaluate"


def reconstruct_file(model, grid, path, device, out_path=None) -> tuple:
    """Scores of one file's reconstruction against its keyboard reference, and its indices."""
    score = read_midi(path)
    piece = score_to_piece(score, grid)
    recon, indices = reconstruct(model, piece.frames, device)
    on_keyboard, _ = fit_to_keyboard(score.notes, grid.out_of_range)
    row = piece_metrics(piece, recon, keyboard_reference(on_keyboard))
    row.update(codebook_stats(indices, model.config.codebook_size))
    if out_path is not None:
        rebuilt = dataclasses.replace(piece, frames=recon)
        with atomic_write(out_path) as f:
            score_to_midi(rebuilt.score()).write(f)
    return row, indices


def run_reconstruct(args) -> int:
    device = resolve_device(args.device)
    model, grid, state = load_vae(args.vae, device)
    if args.note_cost is not FROM_CHECKPOINT:
        model.config = dataclasses.replace(model.config, note_cost=args.note_cost)
    if args.search is not None:
        model.config = dataclasses.replace(model.config, search_candidates=args.search, search_sweeps=args.sweeps,
                                           search_bf16=args.bf16)
    files, root = midi_files(args.path)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    rows, all_indices = [], []
    for path in progress(files, "reconstruct"):
        label = relative_label(path, root)
        target = out_dir / label if out_dir else None
        try:
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                refuse_overwrite(target, args.force)
            row, indices = reconstruct_file(model, grid, path, device, target)
        except MidiError as e:
            rows.append({"file": label, "ok": False, "error": e.reason})
            continue
        rows.append({"file": label, "ok": True, **row})
        all_indices.append(indices)
    good = [r for r in rows if r["ok"]]
    if not good:
        raise CommandError(f"{args.path}: no MIDI file could be reconstructed")
    summary = {key: float(np.mean([r[key] for r in good])) for key in ("onset_f1", "note_f1", "cell_f1")}
    summary["min_note_f1"] = float(min(r["note_f1"] for r in good))
    summary.update(codebook_stats(np.concatenate(all_indices), model.config.codebook_size))
    table = [[r["file"], f"{r['onset_f1']:.3f}", f"{r['note_f1']:.3f}", f"{r['cell_f1']:.3f}",
              str(r["codes_used"]), f"{r['perplexity']:.1f}"] if r["ok"] else
             [r["file"], "-", "-", "-", "-", f"ERROR: {r['error']}"] for r in rows]
    table.append(["all (mean)", f"{summary['onset_f1']:.3f}", f"{summary['note_f1']:.3f}",
                  f"{summary['cell_f1']:.3f}", str(summary["codes_used"]), f"{summary['perplexity']:.1f}"])
    print(format_table(["file", "onset F1", "note F1", "cell F1", "codes", "perplexity"], table,
                       right={1, 2, 3, 4, 5}))
    print(f"{len(good)} of {len(rows)} files; note F1 min {summary['min_note_f1']:.3f}, mean "
          f"{summary['note_f1']:.3f}; {summary['codes_used']} of {model.config.codebook_size} codes used, "
          f"perplexity {summary['perplexity']:.1f} ({args.vae}, trained for {state.get('epoch', '?')} epochs)")
    if args.json:
        write_json(args.json, {"command": "reconstruct", "vae": str(args.vae), "path": str(args.path),
                               "files": rows, "summary": summary})
    return 0


def run_likelihood(args) -> int:
    device = resolve_device(args.device)
    pair = load_pair(args.checkpoint_dir, device)
    grid = pair.grid
    files, root = midi_files(args.midi)
    pieces, rows = [], []
    for path in progress(files, "likelihood"):
        try:
            piece = score_to_piece(read_midi(path), grid)
        except MidiError as e:
            rows.append({"piece": relative_label(path, root), "error": e.reason})
            continue
        pieces.append(encode_piece(pair.vae, piece, device, pair.beat_slots))
    if not pieces:
        raise CommandError(f"{args.midi}: no MIDI file could be encoded")
    scored, overall = likelihood(pair.transformer, pieces, pair.extra_inputs, device)
    unigram = unigram_bits(pieces, pair.transformer.config.vocab_size)
    table = [[r["piece"], str(r["tokens"]), f"{r['bits_per_token']:.3f}", f"{r['unigram_bits_per_token']:.3f}",
              f"{r['bits_per_token'] / r['unigram_bits_per_token']:.2f}"] for r in scored]
    table += [[r["piece"], "-", "-", "-", f"ERROR: {r['error']}"] for r in rows]
    table.append(["all", str(sum(r["tokens"] for r in scored)), f"{overall:.3f}", f"{unigram:.3f}",
                  f"{overall / unigram:.2f}"])
    print(format_table(["piece", "tokens", "bits/token", "unigram", "ratio"], table, right={1, 2, 3, 4}))
    print(f"{len(scored)} pieces: {overall:.3f} bits per token against a unigram entropy of {unigram:.3f} "
          f"(ratio {overall / unigram:.2f}); transformer step {pair.transformer_state.get('step', '?')}")
    if args.json:
        write_json(args.json, {"command": "likelihood", "checkpoint_dir": str(args.checkpoint_dir),
                               "midi": str(args.midi), "bits_per_token": overall,
                               "unigram_bits_per_token": unigram, "pieces": scored + rows})
    return 0


def _read_scores(path, what: str) -> tuple:
    """{label: Score} of every readable MIDI file under `path`, and {label: reason} of the rest."""
    files, root = midi_files(path)
    pieces, errors = {}, {}
    for file in progress(files, what):
        label = relative_label(file, root)
        try:
            pieces[label] = read_midi(file)
        except MidiError as e:
            errors[label] = e.reason
    return pieces, errors


FORM_COLUMNS = ["piece", "bars", "key", "keys every 4 bars", "last chord", "ends on tonic", "first half closes",
                "final note", "repeated bars"]


def _form_cells(label: str, row: dict) -> list:
    return [label, str(row["bars"]), row["key"], row["key_path"], f"{row['final_root']} / {row['final_bass']}",
            "yes" if row["ends_on_tonic"] else "no", f"{row['half_root']} ({'I or V' if row['half_cadence'] else 'other'})",
            f"{row['final_note_beats']:g}", f"{row['repeated_bar_share']:.2f}"]


def _form_summary_cells(label: str, s: dict) -> list:
    keys = ", ".join(f"{n} {k}" for k, n in sorted(s["keys"].items(), key=lambda kv: -kv[1])[:3])
    return [label, "", keys, "", "", f"{s['ends_on_tonic']:.0%}", f"{s['half_cadence']:.0%} I or V",
            f"{s['final_note_beats']:g}", f"{s['repeated_bar_share']:.2f}"]


def _form_report(generated: dict, reference: dict) -> dict:
    """Every generated piece's tonal plan and form, summarised, with the reference's own beside."""
    forms = {label: form_of(score) for label, score in generated.items()}
    real = [form_of(score) for score in reference.values()]
    rows = [_form_cells(label, f.row()) for label, f in forms.items()]
    rows.append(_form_summary_cells(f"all {len(forms)}", summarise_form(list(forms.values()))))
    rows.append(_form_summary_cells(f"reference, {len(real)} pieces", summarise_form(real)))
    print(format_table(FORM_COLUMNS, rows))
    return {"pieces": [{"piece": label, **f.row()} for label, f in forms.items()],
            "summary": summarise_form(list(forms.values())), "reference_summary": summarise_form(real)}


def _held_out_labels(reference: dict, names, explicit: bool) -> list:
    """Reference labels of the held-out pieces, named by file name with or without its suffix."""
    labels, missing = [], []
    for name in names:
        found = [label for label in reference if name in (label, Path(label).stem, str(Path(label).with_suffix("")))]
        labels += [label for label in found if label not in labels]
        if not found:
            missing.append(name)
    if missing and explicit:
        raise CommandError(f"--held-out: not in the reference: {', '.join(missing)}")
    return labels


def _json_safe(value):
    """NaN (a statistic with nothing to measure, e.g. no 4-beat window) as null, as JSON requires."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return None if isinstance(value, float) and value != value else value


SAMPLE_COLUMNS = ["piece", "beats", "notes/beat", "polyphony", "pitch 5-95%", "scale", "empty", "repeated",
                  "PC overlap", "dur overlap", "density overlap", "copied 4-beat", "longest run"]


def _sample_cells(r: dict) -> list:
    def f(key, digits=3):
        value = r.get(key)
        return "-" if value is None or value != value else f"{value:.{digits}f}"

    low, high = r.get("pitch_low"), r.get("pitch_high")
    pitches = "-" if low is None or low != low else f"{low:.0f}-{high:.0f} ({r['pitch_range']:.0f})"
    longest = "-" if r.get("longest_copied_run") is None else f"{r['longest_copied_run']:.0f}"
    if r.get("longest_copied_from"):
        longest += f" ({r['longest_copied_from']})"
    return [r["piece"], "-" if r.get("beats") is None else str(r["beats"]), f("notes_per_beat", 2),
            f("polyphony", 2), pitches, f("scale_consistency"), f("empty_beat_rate"), f("repeated_beat_rate"),
            f("pitch_class_overlap"), f("duration_overlap"), f("density_overlap"), f("copied_4beat_share"), longest]


def _sample_table(result: dict, errors: dict) -> str:
    rows = [_sample_cells(r) for r in result["rows"]]
    rows += [[label] + ["-"] * (len(SAMPLE_COLUMNS) - 2) + [f"ERROR: {reason}"] for label, reason in errors.items()]
    rows.append(_sample_cells({"piece": f"median of {result['pieces']}", **result["summary"]}))
    return format_table(SAMPLE_COLUMNS, rows, right=set(range(1, len(SAMPLE_COLUMNS) - 1)))


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ranges(result: dict) -> dict:
    return {key: [result["min"][key], result["max"][key]] for key in result["summary"]}


def run_samples(args) -> int:
    generated_scores, errors = _read_scores(args.path, "samples")
    reference_scores, reference_errors = _read_scores(args.reference, "reference")
    generated = {label: score.notes for label, score in generated_scores.items()}
    reference = {label: score.notes for label, score in reference_scores.items()}
    if not reference:
        raise CommandError(f"--reference {args.reference}: no MIDI file could be read "
                           f"({len(reference_errors)} bad, e.g. {next(iter(reference_errors))}: "
                           f"{next(iter(reference_errors.values()))})")
    explicit = args.held_out is not None
    held_out = _held_out_labels(reference, args.held_out if explicit else GOLDBERG_HELD_OUT, explicit)
    training = {label: notes for label, notes in reference.items() if label not in held_out}
    if not training:
        raise CommandError(f"--reference {args.reference}: every piece is held out, none is left to compare with")
    if not generated:
        raise CommandError(f"{args.path}: no MIDI file could be read ({len(errors)} bad, "
                           f"e.g. {next(iter(errors))}: {next(iter(errors.values()))})")
    result = compare(generated, training)
    without = f", without the held-out {', '.join(held_out)}" if held_out else ""
    print(f"{len(generated)} generated pieces against {len(training)} reference pieces ({args.reference}{without}):")
    print(_sample_table(result, errors))

    # real music: the held-out pieces, or every piece when none is held out, each against the rest
    real_labels = held_out or (list(reference) if len(reference) > 1 else [])
    real = real_music_yardstick(reference, real_labels) if real_labels else None
    if real is not None:
        which = "held-out piece" if held_out else "reference piece"
        plural = "" if len(real_labels) == 1 else "s"
        none = "" if held_out else " (none held out)"
        print()
        print(f"real music: {len(real_labels)} {which}{plural}{none}, each against the reference minus itself:")
        print(_sample_table(real, {}))
    else:
        print("real music: only one reference piece, nothing to score it against")
    print()
    print("tonal plan and form (ends on tonic: root and lowest note of the last beat; first half: the chord "
          "on the downbeat of its last bar):")
    form = _form_report(generated_scores, reference_scores)
    for label, reason in reference_errors.items():
        print(f"reference {label} skipped: {reason}")
    s = result["summary"]
    line = (f"{len(generated)} of {len(generated) + len(errors)} files; median copied 4-beat share "
            f"{_fmt(s['copied_4beat_share'])}, longest copied run {_fmt(s['longest_copied_run'], 0)} beats, "
            f"overlaps pitch class {_fmt(s['pitch_class_overlap'])} / duration {_fmt(s['duration_overlap'])} / "
            f"density {_fmt(s['density_overlap'])}")
    if real is not None:
        r = real["summary"]
        line += (f"; real music {_fmt(r['copied_4beat_share'])}, {_fmt(r['longest_copied_run'], 0)} beats, "
                 f"{_fmt(r['pitch_class_overlap'])} / {_fmt(r['duration_overlap'])} / {_fmt(r['density_overlap'])}")
    print(line)
    if args.json:
        rows = result["rows"] + [{"piece": label, "error": reason} for label, reason in errors.items()]
        write_json(args.json, _json_safe({
            "command": "samples", "path": str(args.path), "reference": str(args.reference),
            "reference_pieces": list(training), "held_out": held_out,
            "reference_errors": [{"piece": label, "error": reason} for label, reason in reference_errors.items()],
            "pieces": rows, "summary": result["summary"], "range": _ranges(result), "form": form,
            "real_music": None if real is None else {
                "against": "the reference minus the piece itself", "pieces": real["rows"],
                "summary": real["summary"], "range": _ranges(real)}}))
    return 0


CONTINUATION_COLUMNS = ["continuation", "prompt key", "key", "related", "prompt meter", "meter",
                        "prompt tempo", "tempo"]


def run_continuation(args) -> int:
    prompt, output = Path(args.prompt), Path(args.output)
    if prompt.is_dir() != output.is_dir():
        raise CommandError(f"{args.prompt}, {args.output}: give two files, or two folders")
    prompts, _ = midi_files(prompt)
    outputs, root = midi_files(output)
    pairs = pair_files(prompts, outputs) if prompt.is_dir() else [(prompt, output)]
    if not pairs:
        raise CommandError(f"{args.output}: no file is named after a prompt in {args.prompt}")
    rows, results = [], []
    for prompt_path, output_path in progress(pairs, "continuation"):
        label = relative_label(output_path, root)
        try:
            result = read_pair(prompt_path, output_path)
        except MidiError as e:
            rows.append([label, f"ERROR: {e}"] + [""] * (len(CONTINUATION_COLUMNS) - 2))
            continue
        r = result.row()
        results.append((label, result))
        rows.append([label, r["prompt_key"], r["key"], "same" if result.same_key else "yes" if result.related_key else "no",
                     r["prompt_meter"], r["meter"], f"{result.prompt_qpm:g}", f"{result.qpm:g}"])
    if not results:
        raise CommandError(f"{args.output}: no pair of files could be read")
    summary = summarise_continuations([r for _, r in results])
    print(format_table(CONTINUATION_COLUMNS, rows))
    print(f"{len(results)} continuations: prompt's key kept {summary['same_key']:.0%}, the same or a closely "
          f"related key {summary['related_key']:.0%}, meter {summary['same_meter']:.0%}, tempo {summary['same_tempo']:.0%}")
    if args.json:
        write_json(args.json, {"command": "continuation", "prompt": str(args.prompt), "output": str(args.output),
                               "pieces": [{"piece": label, **r.row()} for label, r in results], "summary": summary})
    return 0


FROM_CHECKPOINT = object()  # --note-cost not given: the checkpoint's own


def parse_note_cost(text: str):
    """--note-cost: nats, or 'none' (None) for deciding each cell on its own."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number or 'none', got {text!r}")
    return value


def build_parser() -> CommandParser:
    parser = CommandParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_roundtrip_arguments(commands.add_parser("roundtrip", help="note F1 of MIDI -> frames -> MIDI"))

    rec = commands.add_parser("reconstruct", help="note F1 of MIDI -> frames -> codes -> frames -> MIDI")
    rec.add_argument("--vae", required=True, metavar="CKPT", help="a VQ-VAE checkpoint, e.g. checkpoints/vae.pt")
    rec.add_argument("path", metavar="DIR", help="a folder of MIDI files (or one file)")
    rec.add_argument("--out", metavar="OUTDIR", help="also write each reconstruction as MIDI here")
    rec.add_argument("--force", action="store_true", help="overwrite files in OUTDIR and the --json FILE")
    rec.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    rec.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    rec.add_argument("--note-cost", type=parse_note_cost, default=FROM_CHECKPOINT, metavar="NATS",
                     help="what a decoded note costs (default: the checkpoint's); 'none' decides each cell on its own")
    rec.add_argument("--search", type=positive_int, metavar="K",
                     help="encode by search, trying the K nearest codes at each latent cell (default: the "
                          "checkpoint's; 1 takes the nearest code)")
    rec.add_argument("--sweeps", type=positive_int, default=1,
                     help="passes of --search over the latent grid (default 1)")
    rec.add_argument("--bf16", action="store_true", help="decode --search's trials in bfloat16 (twice as fast on a CPU "
                                                          "with bf16 units)")
    rec.set_defaults(run=run_reconstruct)

    lik = commands.add_parser("likelihood", help="transformer bits per token per piece")
    lik.add_argument("--checkpoint-dir", default=str(BUNDLED_CHECKPOINTS), help="holds vae.pt and transformer.pt (default: the bundled pair)")
    lik.add_argument("--midi", required=True, metavar="DIR", help="a folder of MIDI files (or one file)")
    lik.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    lik.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    lik.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    lik.set_defaults(run=run_likelihood)

    sam = commands.add_parser("samples", help="generated music against the training pieces, beside real music")
    sam.add_argument("path", metavar="GEN_DIR", help="a folder of generated MIDI files (or one file)")
    sam.add_argument("--reference", required=True, metavar="DIR",
                     help="the training corpus, e.g. data/midi/goldberg (held-out pieces in it are set aside)")
    sam.add_argument("--held-out", nargs="+", metavar="NAME",
                     help="reference pieces not trained on, scored as real music against the reference minus "
                          f"themselves (default: {' '.join(GOLDBERG_HELD_OUT)}, those present)")
    sam.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    sam.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    sam.set_defaults(run=run_samples)

    con = commands.add_parser("continuation", help="a prompt's key, meter and tempo against its continuation's")
    con.add_argument("prompt", metavar="PROMPT", help="the prompt MIDI file, or a folder of prompts")
    con.add_argument("output", metavar="OUT", help="the generated MIDI file, or a folder of them (each named "
                     "after its prompt, as generate.py names them)")
    con.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    con.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    con.set_defaults(run=run_continuation)
    add_keys_command(commands, BUNDLED_CHECKPOINTS)
    add_prompts_command(commands, BUNDLED_CHECKPOINTS)
    add_discriminate_command(commands)
    add_regenerate_command(commands, BUNDLED_CHECKPOINTS)
    add_harmonise_command(commands, BUNDLED_CHECKPOINTS)
    return parser


def main(argv=None) -> int:
    return run_main(PROG, build_parser, argv)


