#!/bin/bash
# VQ-VAE quality against codebook size at a fixed budget of 100 epochs (about 12 minutes each on
# one thread of an idle 2-core CPU), then every best checkpoint scored on the held-out pieces.
# Usage: bash experiments/codebook_curve.sh [CORPUS_DIR]   (results in runs/curve/)
set -euo pipefail
corpus=${1:-data/midi/goldberg}
mkdir -p runs/curve/heldout
for v in 10 15 26; do ln -sf "$(realpath "$corpus")/988-v$v.mid" runs/curve/heldout/; done
for spec in "16 local" "64 local" "256 local" "1024 local" "256 global"; do
  set -- $spec
  python train_vq_vae.py --midi-dir "$corpus" --model.codebook_size=$1 --model.mix=$2 \
    --train.epochs=100 --train.eval_every=20 --train.threads=1 --train.out_dir=runs/curve/k$1-$2 --no-progress
  python -m bachsformer.evaluate reconstruct --vae runs/curve/k$1-$2/best.pt runs/curve/heldout \
    --json runs/curve/k$1-$2.json --force
done
python experiments/plot_codebook_curve.py runs/curve docs/codebook-curve.png
