#!/bin/bash
# GPU call 2 (carry .device = Flowers-102 64x64 JPEGs + src snapshot): flagship training chunk 1, and the
# flowers domain classifier alongside. Env: COMPILE (true|false), PRED (eps|v), WEIGHT (uniform|min_snr),
# STEPS (cosine horizon), MIN (minutes of this chunk).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/.device/snap/src OMP_NUM_THREADS=4
T0=$(date +%s); el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
R=runs/flowers64
el "train chunk 1: compile=$COMPILE pred=$PRED weight=$WEIGHT steps=$STEPS min=$MIN"
timeout -s TERM 575 python3 -c "import sys, torch; torch.backends.cudnn.benchmark = True; from largo.cli import main; sys.exit(main())" \
  train --preset flowers64 --channel-mult 1,2,3,4 --batch-size 256 --lr 3e-4 --lr-warmup 500 --lr-schedule cosine \
  --steps $STEPS --precision bf16 --channels-last true --compile $COMPILE --ema-decay 0.9995 --prediction $PRED \
  --loss-weighting $WEIGHT --balanced true --sample-every 0 --checkpoint-every 2000 --log-every 100 \
  --device cuda --data-root .device/data --max-minutes $MIN --run-dir $R --quiet 2>&1 &
TPID=$!
sleep 45
el "classifier"
mkdir -p $OUT/clf
python3 -m largo classifier train --dataset flowers102 --resolution 64 --epochs 40 --out $OUT/clf --device cuda \
  --data-root .device/data 2>&1 | grep -v "^largo: epoch [0-9]*/40 " ; cp -r $OUT/clf runs/clf-flowers
wait $TPID; el "train exit $?"
cp $R/log.jsonl $OUT/; cp $(ls $R/samples/*.png | tail -1) $OUT/train_grid.png; ls $R/checkpoints
el "done"
