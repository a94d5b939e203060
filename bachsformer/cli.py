"""What the command lines share: one-line errors with exit code 2, tables, JSON output, and the
config handling of the training scripts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ludovico_vae.files import atomic_write
from ludovico_vae.midi import MidiError

from .config import ConfigError, build_config
from .runtime import CheckpointError


class CommandError(Exception):
    """A problem with a command's input, reported as one line and exit code 2."""


class CommandParser(argparse.ArgumentParser):
    """argparse that reports a usage error as a `CommandError` (one line) instead of usage text."""

    def error(self, message):
        raise CommandError(message)


USER_ERRORS = (CommandError, ConfigError, MidiError, CheckpointError, ImportError, ValueError)


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
        return args.run(args) or 0
    except USER_ERRORS as e:
        message = str(e)
    except OSError as e:
        message = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
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


def write_json(path, data: dict) -> None:
    path = Path(path)
    if not path.parent.is_dir():
        raise CommandError(f"--json {path}: folder {path.parent} does not exist")
    with atomic_write(path) as f:
        f.write((json.dumps(data, indent=2) + "\n").encode())


def training_parser(prog: str, description: str, default_config: str) -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=prog, description=description,
        epilog="Any config key can be overridden as --section.key=value, e.g. --train.lr=3e-4.")
    parser.add_argument("--config", default=default_config, help="YAML file of overrides (default: %(default)s)")
    parser.add_argument("--midi-dir", help="corpus directory (same as --data.midi_dir=...)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (same as --train.device=...)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in train.out_dir with the config saved there")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def training_config(sections: dict, args) -> dict:
    """The run's config: the saved one when resuming, else the YAML file; overrides on top."""
    overrides = list(args.overrides)
    for text in overrides:
        if not text.startswith("--") or "=" not in text:
            raise ConfigError(f"unrecognised argument {text!r}: overrides look like --section.key=value")
    if args.midi_dir:
        overrides = overrides + [f"--data.midi_dir={args.midi_dir}"]
    if args.device:
        overrides = overrides + [f"--train.device={args.device}"]
    config = build_config(sections, args.config, overrides)
    if args.resume:
        saved = Path(config["train"].out_dir) / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"train.out_dir: nothing to resume, {saved} does not exist")
        config = build_config(sections, saved, overrides)
    return config
