"""Train the Ludovico VQ-VAE on a MIDI corpus (`bachsformer train-vae` when installed).

    python train_vq_vae.py [--config configs/ludovico_vae.yaml] [--midi-dir DIR] [--section.key=value ...]
    python train_vq_vae.py --resume                  # continue the run in train.out_dir
    python train_vq_vae.py --export runs/vae/best.pt checkpoints/vae.pt
"""
import sys

from bachsformer.train.main import vae_main as main

if __name__ == "__main__":
    sys.exit(main())
