#!/usr/bin/env bash
# docs/FINETUNE.md section 1c: a colour dataset, as a user would bring it (one folder of JPEGs per class).
# Five Flowers-102 classes linked into a folder, 250 of their images (50 a class) at 32×32, the demo network, from
# scratch and with non-leaking augmentation, 1,600 steps of batch 32 each (205 passes), one core each (~80 min).
set -e
FOLDER=${FOLDER:-/tmp/flowers5}
.venv/bin/python benchmarks/flowers_folder.py "$FOLDER"
export OMP_NUM_THREADS=1
mkdir -p runs/ft
# the judge: a 5-class classifier on the folder's 95 % split (tested on the other 5 %)
[ -f runs/judges/flowers5-32/config.json ] || taskset -c 0 .venv/bin/largo classifier train \
    --dataset folder:$FOLDER --resolution 32 --epochs 40 --lr 5e-3 --out runs/judges/flowers5-32
COMMON="--preset demo --dataset folder:$FOLDER --resolution 32 --attention-resolutions 8 --subset 250 --steps 1600
        --max-minutes 0 --checkpoint-every 800 --eval-every 400 --eval-n 200 --eval-classifier runs/judges/flowers5-32
        --quiet"
taskset -c 0 .venv/bin/largo train $COMMON --run-dir runs/ft/flowers5-scratch > runs/ft/flowers5-scratch.out 2>&1
taskset -c 0 .venv/bin/largo train $COMMON --augment 0.12 --run-dir runs/ft/flowers5-augment \
    > runs/ft/flowers5-augment.out 2>&1
echo done > runs/ft/flowers5.done
# the final checkpoints: 500 seeded samples scored against all 978 images of the five classes (the 49 held out are
# too few for FD), and a grid of 8 a class (seeds 0–7 each)
for arm in scratch augment; do
    taskset -c 0 .venv/bin/largo eval runs/ft/flowers5-$arm --classifier runs/judges/flowers5-32 --ref-split all \
        --n 500 --no-inception --device cpu > runs/ft/flowers5-$arm-eval.txt 2>&1
    taskset -c 0 .venv/bin/largo sample runs/ft/flowers5-$arm --n 8 --device cpu --out runs/ft/flowers5-$arm-grid \
        > /dev/null 2>&1
done
