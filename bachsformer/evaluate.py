"""`python -m bachsformer.evaluate`: every quality figure of the project from one command.

    roundtrip DIR                 frame-format fidelity per file (onset F1, note F1)
    reconstruct --vae CKPT DIR    VQ-VAE reconstruction per file (F1s, cell F1, codes used, perplexity)
    likelihood --checkpoint-dir DIR --midi DIR
                                  transformer bits per token per piece, beside the unigram entropy
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from ludovico_vae.files import atomic_write
from ludovico_vae.frames import fit_to_keyboard, score_to_piece
from ludovico_vae.midi import MidiError, keyboard_reference, read_midi, score_to_midi

from .cli import CommandError, CommandParser, format_table, run_main, write_json
from .corpus import add_roundtrip_arguments, midi_files, progress, relative_label
from .reconstruction import codebook_stats, piece_metrics, reconstruct
from .runtime import refuse_overwrite, resolve_device
from .tokens import encode_piece
from .transformer_training import likelihood, load_pair, unigram_bits
from .vae_training import load_vae

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
    state, grid = pair["state"], pair["grid"]
    files, root = midi_files(args.midi)
    pieces, rows = [], []
    for path in progress(files, "likelihood"):
        try:
            piece = score_to_piece(read_midi(path), grid)
        except MidiError as e:
            rows.append({"piece": relative_label(path, root), "error": e.reason})
            continue
        pieces.append(encode_piece(pair["vae"], piece, device, state["beat_slots"]))
    if not pieces:
        raise CommandError(f"{args.midi}: no MIDI file could be encoded")
    scored, overall = likelihood(pair["transformer"], pieces, state["extra_inputs"], device)
    unigram = unigram_bits(pieces, pair["transformer"].config.vocab_size)
    table = [[r["piece"], str(r["tokens"]), f"{r['bits_per_token']:.3f}", f"{r['unigram_bits_per_token']:.3f}",
              f"{r['bits_per_token'] / r['unigram_bits_per_token']:.2f}"] for r in scored]
    table += [[r["piece"], "-", "-", "-", f"ERROR: {r['error']}"] for r in rows]
    table.append(["all", str(sum(r["tokens"] for r in scored)), f"{overall:.3f}", f"{unigram:.3f}",
                  f"{overall / unigram:.2f}"])
    print(format_table(["piece", "tokens", "bits/token", "unigram", "ratio"], table, right={1, 2, 3, 4}))
    print(f"{len(scored)} pieces: {overall:.3f} bits per token against a unigram entropy of {unigram:.3f} "
          f"(ratio {overall / unigram:.2f}); transformer step {state.get('step', '?')}")
    if args.json:
        write_json(args.json, {"command": "likelihood", "checkpoint_dir": str(args.checkpoint_dir),
                               "midi": str(args.midi), "bits_per_token": overall,
                               "unigram_bits_per_token": unigram, "pieces": scored + rows})
    return 0


def build_parser() -> CommandParser:
    parser = CommandParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_roundtrip_arguments(commands.add_parser("roundtrip", help="note F1 of MIDI -> frames -> MIDI"))

    rec = commands.add_parser("reconstruct", help="note F1 of MIDI -> frames -> codes -> frames -> MIDI")
    rec.add_argument("--vae", required=True, metavar="CKPT", help="a VQ-VAE checkpoint, e.g. checkpoints/vae.pt")
    rec.add_argument("path", metavar="DIR", help="a folder of MIDI files (or one file)")
    rec.add_argument("--out", metavar="OUTDIR", help="also write each reconstruction as MIDI here")
    rec.add_argument("--force", action="store_true", help="overwrite files in OUTDIR")
    rec.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    rec.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    rec.set_defaults(run=run_reconstruct)

    lik = commands.add_parser("likelihood", help="transformer bits per token per piece")
    lik.add_argument("--checkpoint-dir", default="checkpoints", help="holds vae.pt and transformer.pt")
    lik.add_argument("--midi", required=True, metavar="DIR", help="a folder of MIDI files (or one file)")
    lik.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    lik.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    lik.set_defaults(run=run_likelihood)
    return parser


def main(argv=None) -> int:
    return run_main(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
