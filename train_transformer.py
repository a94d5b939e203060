"""Train the Bachsformer transformer on the codes of a trained VQ-VAE (`bachsformer train-transformer`
when installed).

    python train_transformer.py [--config configs/bachsformer.yaml] [--vae checkpoints/vae.pt] [--section.key=value ...]
    python train_transformer.py --resume             # continue the run in train.out_dir
    python train_transformer.py --export runs/transformer/best.pt checkpoints/transformer.pt
"""
import sys

from bachsformer.train.main import transformer_main as main

if __name__ == "__main__":
    sys.exit(main())
