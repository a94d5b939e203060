"""The corpus command line: check MIDI files, fetch and export corpora.

    python -m bachsformer.corpus check DIR_OR_FILE [--steps-per-quarter 24] [--json FILE]
    python -m bachsformer.corpus goldberg [--dest data/midi/goldberg] [--base-url URL] [--force]
    python -m bachsformer.corpus chorales [--dest data/midi/chorales] [--limit N] [--force]
    python -m bachsformer.corpus music21 [--composer NAME ...] [--dest data/midi/music21] [--limit N] [--force]

Exit codes: 0 when there is something usable, 2 with one line on stderr otherwise. Fetching lives
in `goldberg`, the music21 export in `music21_export`, the held-out rule of exports in `split`;
the frame round trip is a measure (`python -m bachsformer.evaluate roundtrip`).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ludovico_vae.frames import FrameGrid, reading_warnings, score_to_piece
from ludovico_vae.midi import MidiError, read_midi

from ..cli import (CommandParser, count, format_table, frame_grid, midi_files, percent, positive_int,
                   positive_seconds, progress, relative_label, run_main, write_json)
from ..errors import CommandError, ExportError
from .goldberg import GOLDBERG_BASE_URL, GOLDBERG_SHA256, TIMEOUT_S, fetch_goldberg
from .split import HELD_OUT_FILE

PROG = "bachsformer.corpus"
MAX_METERS_SHOWN = 4


def _meters(signatures: list) -> str:
    names = [f"{n}/{d}" for n, d in signatures]
    shown = ",".join(names[:MAX_METERS_SHOWN])
    return shown + (f",+{len(names) - MAX_METERS_SHOWN}" if len(names) > MAX_METERS_SHOWN else "")


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
    warnings = reading_warnings(stats)
    if stats["out_of_range"]:
        verb = "dropped" if dropped else "folded"
        warnings.append(f"{count(stats['out_of_range'], 'note')} outside A0-C8 {verb}")
    if merged > 0:
        warnings.append(f"{count(merged, 'note')} merged by the keyboard reference")
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
    grid = frame_grid(args.steps_per_quarter)
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
                          percent(r["onsets_on_grid"]), percent(r["onsets_near_grid"]),
                          _meters([(n, d) for _, n, d in r["meters"]]), "; ".join(r["warnings"])])
        else:
            table.append([r["file"], "-", "-", "-", "-", "-", "-", f"ERROR: {r['error']}"])
    print(format_table(["file", "slices", "notes", "keyboard", "on grid", "near grid", "meters", "warnings"],
                       table, right={1, 2, 3, 4, 5}))
    print(f"{count(summary['files'], 'file')}: {summary['ok']} ok, {summary['bad']} bad; "
          f"{count(summary['onsets'], 'onset')}, {percent(summary['onsets_on_grid'])} on the "
          f"1/{grid.steps_per_quarter}-beat grid, {percent(summary['onsets_near_grid'])} within a quarter cell")
    if args.json:
        write_json(args.json, {"command": "check", "path": str(args.path), "grid": grid.to_dict(),
                                "files": rows, "summary": summary})
    if not summary["ok"]:
        raise CommandError(f"{args.path}: no usable MIDI file ({count(len(rows), 'file')} checked, all bad)")
    return 0


# ---------------------------------------------------------------- roundtrip


# ---------------------------------------------------------------- goldberg, chorales and music21

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
    from .music21_export import export_chorales

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


def _export_table(parts: list) -> str:
    table = [[f"{part.composer}/{r.file}", r.status, "" if r.notes is None else str(r.notes),
              _meters([m.split("/") for m in r.meters]) if r.meters else "", r.error or ""]
             for part in parts for r in part.rows]
    return format_table(["file", "status", "notes", "meters", "error"], table, right={2})


def _export_summary(part) -> str:
    counts = {status: sum(r.status == status for r in part.rows) for status in ("written", "exists", "failed")}
    done = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing to export"
    return (f"{part.composer}: {count(len(part.rows), 'work')} in {part.folder}: {done}; "
            f"{len(part.held_out)} held out ({HELD_OUT_FILE})")


def run_music21(args) -> int:
    """Failed works are rows of the table, not errors: the command fails only when nothing is usable."""
    from .music21_export import export_music21

    parts = export_music21(args.dest, args.composer or (), args.limit, args.force)
    print(_export_table(parts))
    for part in parts:
        print(_export_summary(part))
    if args.json:
        write_json(args.json, {"command": "music21", "dest": str(args.dest),
                                "composers": [{"composer": p.composer, "folder": str(p.folder), "held_out": p.held_out,
                                               "files": [asdict(r) for r in p.rows]} for p in parts]})
    if not any(part.usable() for part in parts):
        rows = [r for part in parts for r in part.rows]
        first = next((r.error for r in rows if r.error), None)
        raise CommandError(f"nothing exported: {count(len(rows), 'work')} failed; the first: {first}" if first
                           else "nothing exported: no works found")
    return 0


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="how well MIDI files fit the frame grid")
    check.add_argument("path", metavar="DIR_OR_FILE")
    check.add_argument("--steps-per-quarter", type=positive_int, default=FrameGrid.steps_per_quarter)
    check.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    check.add_argument("--force", action="store_true", help="replace an existing --json FILE")
    check.set_defaults(run=run_check)

    goldberg = commands.add_parser("goldberg", help=f"download the {len(GOLDBERG_SHA256)} Goldberg files, verified")
    goldberg.add_argument("--dest", default="data/midi/goldberg", type=Path,
                          help="folder to fill (default: %(default)s)")
    goldberg.add_argument("--base-url", default=GOLDBERG_BASE_URL, help="where the files are (default: upstream)")
    goldberg.add_argument("--force", action="store_true", help="replace files whose checksum is wrong, and the --json FILE")
    goldberg.add_argument("--timeout", type=positive_seconds, default=TIMEOUT_S, help="seconds per request")
    goldberg.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    goldberg.set_defaults(run=run_goldberg)

    chorales = commands.add_parser("chorales", help="export music21's Bach chorales as quantised MIDI")
    chorales.add_argument("--dest", default="data/midi/chorales", type=Path,
                          help="folder to fill (default: %(default)s)")
    chorales.add_argument("--limit", type=positive_int, help="export only the first N chorales")
    chorales.add_argument("--force", action="store_true", help="replace files with other content, and the --json FILE")
    chorales.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    chorales.set_defaults(run=run_chorales)

    music21 = commands.add_parser("music21", help="export music21's bundled corpus, by composer, as quantised MIDI")
    music21.add_argument("--composer", nargs="+", action="extend", metavar="NAME",
                         help="music21 composer folders, e.g. bach palestrina (default: all composers)")
    music21.add_argument("--dest", default="data/midi/music21", type=Path,
                         help="folder to fill, one subfolder per composer (default: %(default)s)")
    music21.add_argument("--limit", type=positive_int, help="export only the first N works of each composer")
    music21.add_argument("--force", action="store_true", help="replace files with other content, and the --json FILE")
    music21.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    music21.set_defaults(run=run_music21)

    return parser


def main(argv=None) -> int:
    """Run one command; returns the exit code instead of exiting, so tests can call it."""
    return run_main(PROG, build_parser, argv)

