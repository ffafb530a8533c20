#!/usr/bin/env bash
# docs/FINETUNE.md's runs, one after another on one core (about 1.7 h on the contended 2-core development CPU):
# MNIST, 500 training images (a seeded random subset: about 50 per class), 800 steps of batch 32 each arm
# (25,600 images), evaluated every 200 steps on 200 seeded samples by the MNIST judge.
set -euo pipefail
OUT=${OUT:-runs/ft}
COMMON="--dataset mnist --hflip false --subset 500 --steps 800 --max-minutes 0 --checkpoint-every 400 --eval-every 200 --eval-n 200 --quiet"
export OMP_NUM_THREADS=1
PIN="taskset -c ${CORE:-1}"
PY=${PY:-.venv/bin/python}
LARGO=${LARGO:-.venv/bin/largo}
mkdir -p "$OUT"
# 1. from scratch (the demo recipe), with post-hoc EMA snapshots and a fixed 0.9999 EMA beside the run's 0.999
$PIN $PY benchmarks/finetune_bench.py train --run-dir "$OUT/mnist500-scratch" --preset demo \
    --set dataset=mnist hflip=false subset=500 steps=800 max_minutes=0 checkpoint_every=400 eval_every=200 eval_n=200 \
    phema_every=50 --extra-ema 0.9999 > "$OUT/mnist500-scratch.out" 2>&1
# 2. from scratch with non-leaking augmentation (EDM's p = 0.12)
$PIN $LARGO train --preset demo $COMMON --augment 0.12 --run-dir "$OUT/mnist500-augment" > "$OUT/mnist500-augment.out" 2>&1
# 3. fine-tuned from the released Fashion-MNIST model (it has seen no digit: new class names, all ten rows new);
#    docs/FINETUNE.md also shows this arm run with commit 11a11c5, where new classes started at the null-class row
$PIN $LARGO train --preset finetune --init-from fashion_mnist-28-cpu $COMMON --run-dir "$OUT/mnist500-finetune" \
    > "$OUT/mnist500-finetune.out" 2>&1
# 4. post-hoc EMA of run 1: reconstructed lengths against its fixed 0.999 and 0.9999 EMAs, same evaluation
$LARGO ema "$OUT/mnist500-scratch" --length 0.05,0.1,0.2 > "$OUT/phema.out"
$PIN $PY benchmarks/finetune_bench.py score "$OUT/mnist500-scratch" "$OUT/mnist500-scratch" \
    "$OUT/mnist500-scratch/extra-ema-0.9999" "$OUT/mnist500-scratch/phema/ema-0.050" \
    "$OUT/mnist500-scratch/phema/ema-0.100" "$OUT/mnist500-scratch/phema/ema-0.200" --n 200 >> "$OUT/phema.out" 2>&1
$PY benchmarks/finetune_bench.py table "$OUT/mnist500-scratch" "$OUT/mnist500-augment" "$OUT/mnist500-finetune" \
    --out docs/finetune/mnist500_curves.png > "$OUT/table.out"
echo done > "$OUT/DONE"
# 5. run 2 again after its samples showed the transforms (the map now initialised N(0, 1)); docs/FINETUNE.md calls the
#    first runs 2 and 3 (commit 11a11c5) "augment" and "finetune-nullrow", and these "augment-v2" and "finetune"
$PIN $LARGO train --preset demo ${COMMON/--eval-every 200/--eval-every 400} --augment 0.12 \
    --run-dir "$OUT/mnist500-augment-v2" > "$OUT/mnist500-augment-v2.out" 2>&1
$PY benchmarks/finetune_bench.py conditioning "$OUT/mnist500-augment-v2" --out docs/finetune/augment_conditioning.png
$PY benchmarks/finetune_bench.py table "$OUT"/mnist500-{scratch,augment,augment-v2,finetune} --x step \
    --out docs/finetune/mnist500_curves.png > "$OUT/table.out"
$PY benchmarks/finetune_bench.py grids "$OUT"/mnist500-{scratch,augment,augment-v2,finetune} \
    --out docs/finetune/mnist500_grids.png
$PY benchmarks/finetune_bench.py profiles "$OUT/mnist500-scratch" --out docs/finetune/phema_profiles.png
