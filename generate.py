"""Write a new piece in the style of Bach with the weights bundled in checkpoints/."""
import sys
from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def main() -> int:
    if not (CHECKPOINTS / "vae.pt").exists() or not (CHECKPOINTS / "transformer.pt").exists():
        print(f"generate.py: no trained weights in {CHECKPOINTS.name}/ yet: the VQ-VAE and the transformer "
              "are trained by train_vq_vae.py and train_transformer.py (not written yet)", file=sys.stderr)
        return 2
    raise SystemExit("generate.py: generation is not written yet")


if __name__ == "__main__":
    sys.exit(main())
