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
        refuse_existing_json(args)
        return args.run(args) or 0
    except USER_ERRORS as e:
        message = " ".join(str(e).splitlines())
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


ALIASES = {"midi_dir": ("--midi-dir", "data.midi_dir", "corpus directory"),
           "device": ("--device", "train.device", "auto, cpu, cuda, cuda:N or mps"),
           "vae": ("--vae", "data.vae", "the VQ-VAE checkpoint whose codes to learn")}


def training_config(sections: dict, args) -> dict:
    """The run's config: the saved one when resuming, else the YAML file; overrides on top."""
    overrides = list(args.overrides)
    for text in overrides:
        if not text.startswith("--") or "=" not in text:
            raise ConfigError(f"unrecognised argument {text!r}: overrides look like --section.key=value")
    for name, (_, key, _) in ALIASES.items():
        if getattr(args, name, None):
            overrides.append(f"--{key}={getattr(args, name)}")
    config = build_config(sections, args.config, overrides)
    if args.resume:
        saved = Path(config["train"].out_dir) / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"train.out_dir: nothing to resume, {saved} does not exist")
        config = build_config(sections, saved, overrides)
    return config


def training_main(prog: str, doc: str, default_config, sections: dict, train, kind: str,
                  aliases=("midi_dir", "device"), argv=None) -> int:
    """The command line of a training script: train, resume, or export a checkpoint's weights.

    Under torchrun each process runs it; errors name the rank, and only rank 0 exports.
    """
    from .distributed import launch_rank
    from .runtime import export_weights, refuse_overwrite

    rank, world_size = launch_rank()
    if world_size > 1:
        prog = f"{prog} [rank {rank}]"

    def run(args) -> None:
        if args.export and rank:  # one process writes the export
            return
        if args.export:
            refuse_overwrite(args.export[1], args.force)
            export_weights(*args.export, kind)
            print(args.export[1])
            return
        train(training_config(sections, args), resume=args.resume, progress=not args.no_progress)

    def build_parser() -> CommandParser:
        parser = CommandParser(
            prog=prog, description=doc.splitlines()[0],
            epilog="Any config key can be overridden as --section.key=value, e.g. --train.lr=3e-4.")
        parser.add_argument("--config", default=str(default_config),
                            help="YAML file of overrides (default: %(default)s)")
        for name in aliases:
            option, key, text = ALIASES[name]
            parser.add_argument(option, dest=name, help=f"{text} (same as --{key}=...)")
        parser.add_argument("--resume", action="store_true",
                            help="continue the run in train.out_dir with the config saved there")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "DEST"),
                            help="write CHECKPOINT's weights without optimizer state to DEST, and stop")
        parser.add_argument("--force", action="store_true", help="with --export: replace an existing DEST")
        parser.set_defaults(run=run)
        return parser

    return run_main(prog, build_parser, argv, overrides=True)
