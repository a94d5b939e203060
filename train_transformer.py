"""Train the Bachsformer transformer on the codes of a trained VQ-VAE.

    python train_transformer.py [--config configs/bachsformer.yaml] [--vae checkpoints/vae.pt] [--section.key=value ...]
    python train_transformer.py --resume             # continue the run in train.out_dir
    python train_transformer.py --export runs/transformer/best.pt checkpoints/transformer.pt
"""
import sys

from bachsformer.pair import TRANSFORMER_KIND
from bachsformer.paths import TRANSFORMER_RECIPE
from bachsformer.train.main import training_main
from bachsformer.train.transformer import TransformerRecipe, train_transformer


def main(argv=None) -> int:
    return training_main("train_transformer.py", __doc__, TRANSFORMER_RECIPE, TransformerRecipe, train_transformer,
                         TRANSFORMER_KIND, aliases=("midi_dir", "device", "vae"), argv=argv)


if __name__ == "__main__":
    sys.exit(main())
