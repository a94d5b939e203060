#!/bin/bash
# VQ-VAE quality against codebook size at a fixed budget of 100 epochs (about 12 minutes each on
# one thread of an idle 2-core CPU), then every best checkpoint scored on the held-out pieces.
# Usage: bash research/codebook_curve/codebook_curve.sh [CORPUS_DIR]   (results in runs/curve/)
set -euo pipefail
corpus=${1:-data/midi/goldberg}
mkdir -p runs/curve/heldout
for v in 10 15 26; do ln -sf "$(realpath "$corpus")/988-v$v.mid" runs/curve/heldout/; done
# codebook size, mix, batch size (the curve was measured at batch 256; the bundled model uses 64),
# all with the 4-by-4 first patch and the 8-by-2 latent grid the curve was measured with (the
# bundled model uses a 4-by-2 patch and a 4-by-4 grid)
for spec in "16 local 256" "64 local 256" "256 local 256" "1024 local 256" "256 global 256" \
            "1024 patch 256" "1024 local 64" "1024 local 32"; do
  set -- $spec
  run=k$1-$2$([ "$3" = 256 ] || echo "-b$3")
  python train_vq_vae.py --midi-dir "$corpus" --model.codebook_size=$1 --model.mix=$2 --train.batch_size=$3 \
    "--model.patch=[4, 4]" --model.latent_keys=8 --model.latent_steps=2 --model.index_order=band --train.epochs=100 --train.eval_every=20 --train.threads=1 --train.out_dir=runs/curve/$run --no-progress
  python -m bachsformer.evaluate reconstruct --vae runs/curve/$run/best.pt runs/curve/heldout \
    --json runs/curve/$run.json --force
done
python research/codebook_curve/plot_codebook_curve.py runs/curve docs/codebook-curve.png
