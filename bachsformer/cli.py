"""What the command lines share: one-line errors with exit code 2, tables, JSON output, and never
replacing a file without --force.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ludovico_vae.dataset import MIDI_SUFFIXES, find_midi_files
from ludovico_vae.files import atomic_write
from ludovico_vae.frames import FrameGrid
from ludovico_vae.midi import MidiError

from .errors import BachsformerError, CommandError, OutputExistsError


class CommandParser(argparse.ArgumentParser):
    """argparse that reports a usage error as a `CommandError` (one line) instead of usage text."""

    def error(self, message):
        raise CommandError(message)


# What a user can fix: the project's own errors, and MidiError, the MIDI library's one error.
# Anything else (a ValueError from NumPy, say) is a bug and keeps its traceback.
USER_ERRORS = (BachsformerError, MidiError)


def run_main(prog: str, build_parser, argv=None, overrides: bool = False) -> int:
    """Parse `argv` and run `args.run(args)`; a user error is one line on stderr and code 2.

    With `overrides`, arguments the parser does not know are kept in `args.overrides`
    (the `--section.key=value` of the training scripts).
    """
    try:
        parser = build_parser()
        if overrides:
            args, args.overrides = parser.parse_known_args(argv)
        else:
            args = parser.parse_args(argv)
        refuse_existing_json(args)
        return args.run(args) or 0
    except USER_ERRORS as e:
        message = " ".join(str(e).splitlines())
    except OSError as e:
        if not (e.filename and e.strerror):  # not about a file the user named: a bug
            raise
        message = f"{e.filename}: {e.strerror}"  # a folder that cannot be written, a full disk
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help, or a dependency that stops the program with a message
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        message = str(e.code)
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def format_table(headers: list, rows: list, right: set = frozenset()) -> str:
    """Fixed-width text table; columns whose index is in `right` are right-aligned (numbers)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def refuse_existing_json(args) -> None:
    """`--json FILE` replaces an existing FILE only with --force; checked before any work is done."""
    path = getattr(args, "json", None)
    if path and Path(path).exists() and not getattr(args, "force", False):
        raise CommandError(f"--json {path}: already exists; pass --force to replace it")


def write_json(path, data: dict) -> None:
    """Written atomically, its folder created: a full disk leaves no half-written JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write((json.dumps(data, indent=2) + "\n").encode())


def refuse_overwrite(path, force: bool) -> None:
    """Nothing a user had is replaced unless they said --force."""
    if Path(path).exists() and not force:
        raise OutputExistsError(f"{path}: already exists; pass --force to replace it")


def percent(share) -> str:
    """0.873 -> "87.3%"; None -> "-"."""
    return "-" if share is None else f"{100 * share:.1f}%"


def f1_text(value) -> str:
    """An F1 score with three decimals, "-" when there is none."""
    return "-" if value is None else f"{value:.3f}"


def count(n: int, noun: str) -> str:
    """(3, "file") -> "3 files"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def frame_grid(steps_per_quarter: int) -> FrameGrid:
    """The frame grid of a --steps-per-quarter option; a bad value is a CommandError naming it."""
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
    """How a table names a file: relative to the folder given, else its own name."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def progress(items, desc: str):
    """`items` with a progress bar on stderr."""
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="file", disable=None, leave=False)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value
