"""The corpus command line: check MIDI files, fetch and export corpora, measure the frame round trip.

    python -m bachsformer.corpus check DIR_OR_FILE [--steps-per-quarter 24] [--json FILE]
    python -m bachsformer.corpus goldberg [--dest data/midi/goldberg] [--base-url URL] [--force]
    python -m bachsformer.corpus chorales [--dest data/midi/chorales] [--limit N] [--force]
    python -m bachsformer.corpus roundtrip DIR [--out OUTDIR] [--force] [--json FILE]

This module owns the commands, their tables and their exit codes: 0 when there is something
usable, 2 with one line on stderr otherwise. Fetching lives in `download`, the music21 export in
`music21_export`; reading MIDI and cutting frames belong to `ludovico_vae`.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from ludovico_vae.dataset import MIDI_SUFFIXES, find_midi_files
from ludovico_vae.files import atomic_write
from ludovico_vae.frames import QUANTISED_SHARE, FrameGrid, score_to_piece
from ludovico_vae.midi import MidiError, keyboard_reference, read_midi, score_to_midi

from .cli import CommandError, CommandParser, format_table, run_main, write_json
from .download import GOLDBERG_BASE_URL, GOLDBERG_SHA256, TIMEOUT_S, fetch_goldberg
from .metrics import note_f1

PROG = "bachsformer.corpus"
MAX_METERS_SHOWN = 4


def _percent(share) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _f1(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _meters(signatures: list) -> str:
    names = [f"{n}/{d}" for n, d in signatures]
    shown = ",".join(names[:MAX_METERS_SHOWN])
    return shown + (f",+{len(names) - MAX_METERS_SHOWN}" if len(names) > MAX_METERS_SHOWN else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _grid(steps_per_quarter: int) -> FrameGrid:
    try:
        return FrameGrid(steps_per_quarter=steps_per_quarter)
    except ValueError as e:
        raise CommandError(f"--steps-per-quarter: {e}") from None


def midi_files(path) -> tuple:
    """(files, root) below a directory, or a single file; an error if there is nothing to read."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{path}: no such file or directory")
    files = find_midi_files(path)
    if not files:
        raise CommandError(f"{path}: no MIDI files ({', '.join(MIDI_SUFFIXES)}) in this directory")
    return files, (path if path.is_dir() else path.parent)


def relative_label(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def progress(items, desc: str):
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="file", disable=None, leave=False)


# ---------------------------------------------------------------- check

def check_file(path, grid: FrameGrid) -> dict:
    """What turning one file into frames keeps and changes; raises MidiError for unusable files."""
    score = read_midi(path)
    piece = score_to_piece(score, grid)
    stats = piece.stats
    dropped = stats["out_of_range"] if stats["out_of_range_mode"] == "drop" else 0
    onsets = stats["notes"] - dropped
    merged = stats["merged"]
    near = stats["onsets_near_grid"]
    warnings = []
    if near < QUANTISED_SHARE:
        warnings.append(f"not quantised ({math.floor(100 * near + 1e-9)}% of onsets near the grid)")
    if stats["out_of_range"]:
        verb = "dropped" if dropped else "folded"
        warnings.append(f"{_count(stats['out_of_range'], 'note')} outside A0-C8 {verb}")
    if stats["drum_notes"]:
        warnings.append(f"{_count(stats['drum_notes'], 'drum note')} ignored")
    if merged > 0:
        warnings.append(f"{_count(merged, 'note')} merged by the keyboard reference")
    return {"ok": True, "slices": len(piece), "notes": stats["notes"], "keyboard_notes": stats["keyboard_notes"],
            "onsets": onsets, "onsets_on_grid": stats["onsets_on_grid"], "onsets_near_grid": near,
            "meters": [[float(b), n, d] for b, n, d in score.time_signatures],
            "ticks_per_beat": stats["ticks_per_beat"], "warnings": warnings, "error": None}


def _check_summary(rows: list) -> dict:
    good = [r for r in rows if r["ok"]]
    onsets = sum(r["onsets"] for r in good)

    def weighted(key):
        return sum(r[key] * r["onsets"] for r in good) / onsets if onsets else None

    return {"files": len(rows), "ok": len(good), "bad": len(rows) - len(good), "onsets": onsets,
            "onsets_on_grid": weighted("onsets_on_grid"), "onsets_near_grid": weighted("onsets_near_grid")}


def run_check(args) -> int:
    grid = _grid(args.steps_per_quarter)
    files, root = midi_files(args.path)
    rows = []
    for path in progress(files, "check"):
        try:
            row = check_file(path, grid)
        except MidiError as e:
            row = {"ok": False, "error": e.reason}
        rows.append({"file": relative_label(path, root), **row})
    summary = _check_summary(rows)
    table = []
    for r in rows:
        if r["ok"]:
            table.append([r["file"], str(r["slices"]), str(r["notes"]), str(r["keyboard_notes"]),
                          _percent(r["onsets_on_grid"]), _percent(r["onsets_near_grid"]),
                          _meters([(n, d) for _, n, d in r["meters"]]), "; ".join(r["warnings"])])
        else:
            table.append([r["file"], "-", "-", "-", "-", "-", "-", f"ERROR: {r['error']}"])
    print(format_table(["file", "slices", "notes", "keyboard", "on grid", "near grid", "meters", "warnings"],
                       table, right={1, 2, 3, 4, 5}))
    print(f"{_count(summary['files'], 'file')}: {summary['ok']} ok, {summary['bad']} bad; "
          f"{_count(summary['onsets'], 'onset')}, {_percent(summary['onsets_on_grid'])} on the "
          f"1/{grid.steps_per_quarter}-beat grid, {_percent(summary['onsets_near_grid'])} within a quarter cell")
    if args.json:
        write_json(args.json, {"command": "check", "path": str(args.path), "grid": grid.to_dict(),
                                "files": rows, "summary": summary})
    if not summary["ok"]:
        raise CommandError(f"{args.path}: no usable MIDI file ({_count(len(rows), 'file')} checked, all bad)")
    return 0


# ---------------------------------------------------------------- roundtrip

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
            "onset_f1": result["onset_f1"], "note_f1": result["note_f1"], "error": None}


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
    grid = _grid(args.steps_per_quarter)
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
    table = [[r["file"], str(r["notes"]), str(r["roundtrip_notes"]), _f1(r["onset_f1"]), _f1(r["note_f1"])]
             if r["ok"] else [r["file"], "-", "-", "-", f"ERROR: {r['error']}"] for r in rows]
    for stat in ("min", "mean"):
        table.append([stat, "", "", _f1(summary[f"{stat}_onset_f1"]), _f1(summary[f"{stat}_note_f1"])])
    print(format_table(["file", "notes", "round trip", "onset F1", "note F1"], table, right={1, 2, 3}))
    print(f"{_count(summary['files'], 'file')}: {summary['ok']} ok, {summary['bad']} bad; note F1 "
          f"min {_f1(summary['min_note_f1'])}, mean {_f1(summary['mean_note_f1'])} "
          f"at {grid.steps_per_quarter} steps per quarter")
    if args.json:
        write_json(args.json, {"command": "roundtrip", "path": str(args.path), "grid": grid.to_dict(),
                                "out": str(args.out) if args.out else None, "files": rows, "summary": summary})
    if not good:
        raise CommandError(f"{args.path}: no MIDI file could be round-tripped ({_count(len(rows), 'file')}, all bad)")
    return 0


# ---------------------------------------------------------------- goldberg and chorales

def _report_fetch(rows: list, columns: list, dest, what: str) -> int:
    """Print the table of a fetch or export; one error line and code 2 if any file failed."""
    table = [[str(r.get(key) if r.get(key) is not None else "") for key, _ in columns] for r in rows]
    print(format_table([header for _, header in columns], table))
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{len(rows)} {what} in {dest}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        others = [f"{len(failed) - 1} more failed"] if len(failed) > 1 else []
        others += [f"{counts['skipped']} not tried"] if counts.get("skipped") else []
        more = f" ({', '.join(others)}; see above)" if others else ""
        raise CommandError(f"{failed[0]['file']}: {failed[0]['error']}{more}")
    return 0


def run_goldberg(args) -> int:
    try:
        rows = fetch_goldberg(args.dest, args.base_url, args.force, args.timeout)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if args.json:
        write_json(args.json, {"command": "goldberg", "dest": str(args.dest), "files": rows})
    return _report_fetch(rows, [("file", "file"), ("status", "status"), ("bytes", "bytes"), ("error", "error")],
                         args.dest, "Goldberg files")


def run_chorales(args) -> int:
    from .music21_export import ExportError, export_chorales

    try:
        rows = export_chorales(args.dest, args.limit, args.force)
    except (ExportError, ValueError) as e:
        raise CommandError(str(e)) from None
    for r in rows:
        r["meter"] = _meters([m.split("/") for m in r["meters"]]) if r["meters"] else None
    if args.json:
        write_json(args.json, {"command": "chorales", "dest": str(args.dest), "files": rows})
    return _report_fetch(rows, [("file", "file"), ("status", "status"), ("notes", "notes"),
                                ("meter", "meters"), ("error", "error")], args.dest, "chorales")


# ---------------------------------------------------------------- command line

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def add_roundtrip_arguments(command) -> None:
    """The `roundtrip` command, shared with `python -m bachsformer.evaluate roundtrip`."""
    command.add_argument("path", metavar="DIR")
    command.add_argument("--out", metavar="OUTDIR", type=Path, help="keep the round-tripped files here")
    command.add_argument("--force", action="store_true", help="overwrite files in OUTDIR and the --json FILE")
    command.add_argument("--steps-per-quarter", type=_positive_int, default=FrameGrid.steps_per_quarter)
    command.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    command.set_defaults(run=run_roundtrip)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="how well MIDI files fit the frame grid")
    check.add_argument("path", metavar="DIR_OR_FILE")
    check.add_argument("--steps-per-quarter", type=_positive_int, default=FrameGrid.steps_per_quarter)
    check.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    check.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    check.set_defaults(run=run_check)

    goldberg = commands.add_parser("goldberg", help=f"download the {len(GOLDBERG_SHA256)} Goldberg files, verified")
    goldberg.add_argument("--dest", default="data/midi/goldberg", type=Path,
                          help="folder to fill (default: %(default)s)")
    goldberg.add_argument("--base-url", default=GOLDBERG_BASE_URL, help="where the files are (default: upstream)")
    goldberg.add_argument("--force", action="store_true", help="replace files whose checksum is wrong, and the --json FILE")
    goldberg.add_argument("--timeout", type=_positive_seconds, default=TIMEOUT_S, help="seconds per request")
    goldberg.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    goldberg.set_defaults(run=run_goldberg)

    chorales = commands.add_parser("chorales", help="export music21's Bach chorales as quantised MIDI")
    chorales.add_argument("--dest", default="data/midi/chorales", type=Path,
                          help="folder to fill (default: %(default)s)")
    chorales.add_argument("--limit", type=_positive_int, help="export only the first N chorales")
    chorales.add_argument("--force", action="store_true", help="replace files with other content, and the --json FILE")
    chorales.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    chorales.set_defaults(run=run_chorales)

    add_roundtrip_arguments(commands.add_parser("roundtrip", help="note F1 of MIDI -> frames -> MIDI"))
    return parser


def main(argv=None) -> int:
    """Run one command; returns the exit code instead of exiting, so tests can call it."""
    return run_main(PROG, build_parser, argv)

if __name__ == "__main__":
    sys.exit(main())
