#!/usr/bin/env bash
# docs/FINETUNE.md section 1d: fine-tuning on colour photographs from a base that has never seen the target classes.
# The base: the demo network trained 45 minutes (one core) at 32×32 on the *other* 97 Flowers-102 classes, linked
# into a folder (7,211 images). Then the five-class folder of section 1c (benchmarks/finetune_flowers5.sh, which
# makes /tmp/flowers5 and the judge) fine-tuned from it with the `finetune` preset, for the same 1,600 steps, the
# same 250 images and the same evaluation as the scratch and augmented arms there. One core (~45 + 35 + 6 min).
set -e
BASE=${BASE:-/tmp/flowers97}
FOLDER=${FOLDER:-/tmp/flowers5}
.venv/bin/python benchmarks/flowers_folder.py "$BASE" --exclude  # the base never sees the five
export OMP_NUM_THREADS=1
mkdir -p runs/ft
[ -f runs/ft/flowers97-base/checkpoints/latest ] || taskset -c 0 .venv/bin/largo train --preset demo \
    --dataset folder:$BASE --resolution 32 --attention-resolutions 8 --steps 100000 --max-minutes 45 \
    --checkpoint-every 500 --quiet --run-dir runs/ft/flowers97-base > runs/ft/flowers97-base.out 2>&1
taskset -c 0 .venv/bin/largo train --preset finetune --init-from runs/ft/flowers97-base --dataset folder:$FOLDER \
    --resolution 32 --subset 250 --steps 1600 --max-minutes 0 --checkpoint-every 800 --eval-every 400 --eval-n 200 \
    --eval-classifier runs/judges/flowers5-32 --quiet --run-dir runs/ft/flowers5-finetune \
    > runs/ft/flowers5-finetune.out 2>&1
taskset -c 0 .venv/bin/largo eval runs/ft/flowers5-finetune --classifier runs/judges/flowers5-32 --ref-split all \
    --n 500 --no-inception --device cpu > runs/ft/flowers5-finetune-eval.txt 2>&1
taskset -c 0 .venv/bin/largo sample runs/ft/flowers5-finetune --n 8 --device cpu --out runs/ft/flowers5-finetune-grid \
    > /dev/null 2>&1
