"""Train the Bachsformer transformer on the codes of a trained VQ-VAE.

    python train_transformer.py [--config configs/bachsformer.yaml] [--vae checkpoints/vae.pt] [--section.key=value ...]
    python train_transformer.py --resume             # continue the run in train.out_dir
    python train_transformer.py --export runs/transformer/best.pt checkpoints/transformer.pt
"""
import sys
from pathlib import Path

from bachsformer.cli import run_main, training_config, training_parser
from bachsformer.runtime import export_weights, refuse_overwrite
from bachsformer.transformer_training import CHECKPOINT_KIND, SECTIONS, train_transformer

PROG = "train_transformer.py"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "bachsformer.yaml"


def run(args) -> None:
    if args.export:
        refuse_overwrite(args.export[1], args.force)
        export_weights(*args.export, CHECKPOINT_KIND)
        print(args.export[1])
        return
    if args.vae:
        args.overrides.append(f"--data.vae={args.vae}")
    train_transformer(training_config(SECTIONS, args), resume=args.resume, progress=not args.no_progress)


def build_parser():
    parser = training_parser(PROG, __doc__.splitlines()[0], str(DEFAULT_CONFIG))
    parser.add_argument("--vae", help="the VQ-VAE checkpoint whose codes to learn (same as --data.vae=...)")
    parser.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "DEST"),
                        help="write CHECKPOINT's weights without optimizer state to DEST, and stop")
    parser.add_argument("--force", action="store_true", help="with --export: replace an existing DEST")
    parser.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    return run_main(PROG, build_parser, argv, overrides=True)


if __name__ == "__main__":
    sys.exit(main())
