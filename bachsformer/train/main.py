"""The command line of the training scripts: train, resume, or export a run's weights, with the
recipe's config file and `--section.key=value` overrides.
"""
from __future__ import annotations

from pathlib import Path

from ..cli import CommandParser, refuse_overwrite, run_main
from ..errors import ConfigError
from .config import build_config
from .distributed import launch_rank
from .run_folder import export_weights


ALIASES = {"midi_dir": ("--midi-dir", "data.midi_dir", "corpus directory"),
           "device": ("--device", "train.device", "auto, cpu, cuda, cuda:N or mps"),
           "vae": ("--vae", "data.vae", "the VQ-VAE checkpoint whose codes to learn")}


def training_config(recipe, args):
    """The run's config: the saved one when resuming, else the YAML file; overrides on top."""
    overrides = list(args.overrides)
    for text in overrides:
        if not text.startswith("--") or "=" not in text:
            raise ConfigError(f"unrecognised argument {text!r}: overrides look like --section.key=value")
    for name, (_, key, _) in ALIASES.items():
        if getattr(args, name, None):
            overrides.append(f"--{key}={getattr(args, name)}")
    config = build_config(recipe, args.config, overrides)
    if args.resume:
        saved = Path(config.train.out_dir) / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"train.out_dir: nothing to resume, {saved} does not exist")
        config = build_config(recipe, saved, overrides)
    return config


def training_main(prog: str, doc: str, default_config, recipe, train, kind: str,
                  aliases=("midi_dir", "device"), argv=None) -> int:
    """The command line of a training script: train, resume, or export a checkpoint's weights.

    Under torchrun each process runs it; errors name the rank, and only rank 0 exports.
    """

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
        train(training_config(recipe, args), resume=args.resume, progress=not args.no_progress)

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


VAE_USAGE = """Train the Ludovico VQ-VAE on a MIDI corpus.

    PROG [--config configs/ludovico_vae.yaml] [--midi-dir DIR] [--section.key=value ...]
    PROG --resume                  # continue the run in train.out_dir
    PROG --export runs/vae/best.pt checkpoints/vae.pt
"""

TRANSFORMER_USAGE = """Train the Bachsformer transformer on the codes of a trained VQ-VAE.

    PROG [--config configs/bachsformer.yaml] [--vae checkpoints/vae.pt] [--section.key=value ...]
    PROG --resume             # continue the run in train.out_dir
    PROG --export runs/transformer/best.pt checkpoints/transformer.pt
"""


def vae_main(argv=None, prog: str = "train_vq_vae.py") -> int:
    """The VQ-VAE's training command line (`train_vq_vae.py`, `bachsformer train-vae`)."""
    from ..pair import VAE_KIND
    from ..paths import VAE_RECIPE
    from .vae import VAERecipe, train_vae
    return training_main(prog, VAE_USAGE.replace("PROG", prog), VAE_RECIPE, VAERecipe, train_vae, VAE_KIND, argv=argv)


def transformer_main(argv=None, prog: str = "train_transformer.py") -> int:
    """The transformer's training command line (`train_transformer.py`, `bachsformer train-transformer`)."""
    from ..pair import TRANSFORMER_KIND
    from ..paths import TRANSFORMER_RECIPE
    from .transformer import TransformerRecipe, train_transformer
    return training_main(prog, TRANSFORMER_USAGE.replace("PROG", prog), TRANSFORMER_RECIPE, TransformerRecipe,
                         train_transformer, TRANSFORMER_KIND, aliases=("midi_dir", "device", "vae"), argv=argv)
