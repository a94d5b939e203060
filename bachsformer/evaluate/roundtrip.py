"""The frame format's round trip: MIDI -> frames -> MIDI, scored against the source by note F1.
Anything under 1.0 is lost by the format itself, not by a model."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ludovico_vae.files import atomic_write
from ludovico_vae.frames import FrameGrid, reading_warnings, score_to_piece
from ludovico_vae.midi import MidiError, keyboard_reference, read_midi, score_to_midi

from ..cli import count, f1_text, format_table, frame_grid, midi_files, positive_int, progress, relative_label, write_json
from ..errors import CommandError
from .metrics import note_f1


def roundtrip_file(path, grid: FrameGrid, out_path: Path) -> dict:
    """MIDI -> frames -> MIDI written to `out_path` and read back, scored against the source.

    Both sides go through the keyboard reference: it is what a roll can hold, so anything less
    than 1.0 is a loss in the conversion itself, not in notes no keyboard could play.
    """
    score = read_midi(path)
    piece = score_to_piece(score, grid)
    midi = score_to_midi(piece.score())
    with atomic_write(out_path) as f:
        midi.write(f)
    back = read_midi(out_path)
    result = note_f1(keyboard_reference(score.notes), keyboard_reference(back.notes))
    return {"ok": True, "notes": result["reference_notes"], "roundtrip_notes": result["estimated_notes"],
            "onset_f1": result["onset_f1"], "note_f1": result["note_f1"], "error": None,
            "warnings": reading_warnings(piece.stats)}


def _roundtrip_targets(files: list, root: Path, out, force: bool) -> list:
    """Where each round-tripped file goes; refuses to replace anything unless `force`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{out}: exists and is not a directory")
    if out.resolve() == root.resolve():
        raise CommandError(f"{out}: --out is the input folder; the round trip would replace its own sources")
    targets = [out / path.relative_to(root) for path in files]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CommandError(f"{existing[0]}: exists{more}; not overwritten without --force")
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    return targets


def run_roundtrip(args) -> int:
    grid = frame_grid(args.steps_per_quarter)
    files, root = midi_files(args.path)
    with tempfile.TemporaryDirectory(prefix="bachsformer-roundtrip-") as scratch:
        if args.out:
            targets = _roundtrip_targets(files, root, args.out, args.force)
        else:
            targets = [Path(scratch) / f"{i:05d}.mid" for i in range(len(files))]
        rows = []
        for path, target in progress(list(zip(files, targets)), "roundtrip"):
            try:
                row = roundtrip_file(path, grid, target)
            except MidiError as e:
                row = {"ok": False, "error": e.reason}
            except OSError as e:
                row = {"ok": False, "error": f"cannot write {target} ({e.strerror or e})"}
            rows.append({"file": relative_label(path, root), **row})
    good = [r for r in rows if r["ok"]]
    summary = {"files": len(rows), "ok": len(good), "bad": len(rows) - len(good)}
    for key in ("onset_f1", "note_f1"):
        values = [r[key] for r in good]
        summary[f"min_{key}"] = min(values) if values else None
        summary[f"mean_{key}"] = sum(values) / len(values) if values else None
    table = [[r["file"], str(r["notes"]), str(r["roundtrip_notes"]), f1_text(r["onset_f1"]), f1_text(r["note_f1"])]
             if r["ok"] else [r["file"], "-", "-", "-", f"ERROR: {r['error']}"] for r in rows]
    for stat in ("min", "mean"):
        table.append([stat, "", "", f1_text(summary[f"{stat}_onset_f1"]), f1_text(summary[f"{stat}_note_f1"])])
    print(format_table(["file", "notes", "round trip", "onset F1", "note F1"], table, right={1, 2, 3}))
    for r in good:  # a performance scores well here (its onsets are snapped on both sides) yet is no score
        for warning in r["warnings"]:
            print(f"{r['file']}: {warning}")
    print(f"{count(summary['files'], 'file')}: {summary['ok']} ok, {summary['bad']} bad; note F1 "
          f"min {f1_text(summary['min_note_f1'])}, mean {f1_text(summary['mean_note_f1'])} "
          f"at {grid.steps_per_quarter} steps per quarter")
    if args.json:
        write_json(args.json, {"command": "roundtrip", "path": str(args.path), "grid": grid.to_dict(),
                                "out": str(args.out) if args.out else None, "files": rows, "summary": summary})
    if not good:
        raise CommandError(f"{args.path}: no MIDI file could be round-tripped ({count(len(rows), 'file')}, all bad)")
    return 0


def add_roundtrip_arguments(command) -> None:
    """The `roundtrip` command, shared with `python -m bachsformer.evaluate roundtrip`."""
    command.add_argument("path", metavar="DIR")
    command.add_argument("--out", metavar="OUTDIR", type=Path, help="keep the round-tripped files here")
    command.add_argument("--force", action="store_true", help="overwrite files in OUTDIR and the --json FILE")
    command.add_argument("--steps-per-quarter", type=positive_int, default=FrameGrid.steps_per_quarter)
    command.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    command.set_defaults(run=run_roundtrip)
