"""Train the Ludovico VQ-VAE on a MIDI corpus.

    python train_vq_vae.py [--config configs/ludovico_vae.yaml] [--midi-dir DIR] [--section.key=value ...]
    python train_vq_vae.py --resume                  # continue the run in train.out_dir
    python train_vq_vae.py --export runs/vae/best.pt checkpoints/vae.pt
"""
import sys

from bachsformer.pair import VAE_KIND
from bachsformer.paths import VAE_RECIPE
from bachsformer.train.main import training_main
from bachsformer.train.vae import VAERecipe, train_vae


def main(argv=None) -> int:
    return training_main("train_vq_vae.py", __doc__, VAE_RECIPE, VAERecipe, train_vae, VAE_KIND, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
