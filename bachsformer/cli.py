"""What the command-line scripts share: config overrides and one-line errors with exit code 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ludovico_vae.midi import MidiError

from .config import ConfigError, build_config
from .runtime import CheckpointError

USER_ERRORS = (ConfigError, MidiError, CheckpointError, ValueError, OSError, ImportError)


def training_parser(description: str, default_config: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Any config key can be overridden as --section.key=value, e.g. --train.lr=3e-4.")
    parser.add_argument("--config", default=default_config, help="YAML file of overrides (default: %(default)s)")
    parser.add_argument("--midi-dir", help="corpus directory (same as --data.midi_dir=...)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (same as --train.device=...)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in train.out_dir with the config saved there")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def training_config(sections: dict, args, overrides: list) -> dict:
    """The run's config: the saved one when resuming, else the YAML file; overrides on top."""
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


def run_command(name: str, fn) -> int:
    """Run `fn`; a user error becomes one line on stderr and exit code 2."""
    try:
        fn()
    except USER_ERRORS as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 0
