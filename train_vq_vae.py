"""Train the Ludovico VQ-VAE on a MIDI corpus.

    python train_vq_vae.py [--config configs/ludovico_vae.yaml] [--midi-dir DIR] [--section.key=value ...]
    python train_vq_vae.py --resume                  # continue the run in train.out_dir
    python train_vq_vae.py --export runs/vae/best.pt checkpoints/vae.pt
"""
import sys
from pathlib import Path

from bachsformer.cli import training_main
from bachsformer.vae_training import CHECKPOINT_KIND, SECTIONS, train_vae

CONFIG = Path(__file__).resolve().parent / "configs" / "ludovico_vae.yaml"


def main(argv=None) -> int:
    return training_main("train_vq_vae.py", __doc__, CONFIG, SECTIONS, train_vae, CHECKPOINT_KIND, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
