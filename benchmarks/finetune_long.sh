#!/usr/bin/env bash
# docs/FINETUNE.md section 1b (about 47 min on one core). 100 digits (10 per class), 1600 steps of batch 32 = 512 passes: long enough to start copying?
set -e
COMMON="--dataset mnist --hflip false --subset 100 --steps 1600 --max-minutes 0 --checkpoint-every 800 --eval-every 400 --eval-n 200 --quiet"
export OMP_NUM_THREADS=1
taskset -c 1 .venv/bin/largo train --preset demo $COMMON --run-dir runs/ft/mnist100-scratch > runs/ft/mnist100-scratch.out 2>&1
taskset -c 1 .venv/bin/largo train --preset demo $COMMON --augment 0.12 --run-dir runs/ft/mnist100-augment > runs/ft/mnist100-augment.out 2>&1
echo done > runs/ft/long.done
