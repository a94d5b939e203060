#!/bin/bash
# Does each extra input of the transformer help? Held-out bits per token after 400 steps of a
# 64-wide model on the codes of checkpoints/vae.pt, one run per set of inputs, one after another.
# Usage: bash experiments/extra_inputs.sh [CORPUS_DIR]   (results in runs/ablation/*/metrics.csv)
set -euo pipefail
corpus=${1:-data/midi/goldberg}
for extras in "[frame_index,beat,key]" "[frame_index,beat]" "[beat,key]" "[frame_index,key]" "[]"; do
  name=$(echo "$extras" | tr -d '[]' | tr ',' '+'); name=${name:-none}
  python train_transformer.py --midi-dir "$corpus" --data.extra_inputs="$extras" \
    --model.n_embd=64 --train.max_steps=400 --train.eval_every=200 --train.warmup_steps=100 \
    --train.threads=1 --train.out_dir="runs/ablation/$name" --no-progress
done
