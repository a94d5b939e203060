"""Train the Bachsformer transformer on the codes of a trained VQ-VAE.

    python train_transformer.py [--config configs/bachsformer.yaml] [--vae checkpoints/vae.pt] [--section.key=value ...]
    python train_transformer.py --resume             # continue the run in train.out_dir
    python train_transformer.py --export runs/transformer/best.pt checkpoints/transformer.pt
"""
import sys
from pathlib import Path

from bachsformer.cli import training_main
from bachsformer.transformer_training import CHECKPOINT_KIND, SECTIONS, train_transformer

CONFIG = Path(__file__).resolve().parent / "configs" / "bachsformer.yaml"


def main(argv=None) -> int:
    return training_main("train_transformer.py", __doc__, CONFIG, SECTIONS, train_transformer, CHECKPOINT_KIND,
                         aliases=("midi_dir", "device", "vae"), argv=argv)


if __name__ == "__main__":
    sys.exit(main())
