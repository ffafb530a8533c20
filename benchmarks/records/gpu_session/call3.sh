#!/bin/bash
# GPU call 3 (carry .device): finish the flowers run (resume to the cosine horizon), export + split, grid, evals.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/.device/snap/src OMP_NUM_THREADS=4
T0=$(date +%s); el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
R=runs/flowers64; CLF=runs/clf-flowers
tar -cf $OUT/res.tar -C runs res 2>/dev/null; el "resume"
timeout -s TERM 330 python3 -c "import sys, torch; torch.backends.cudnn.benchmark = True; from largo.cli import main; sys.exit(main())" \
  train --resume $R --max-minutes 4.8 --quiet 2>&1
tar -cf $OUT/res.tar -C runs res 2>/dev/null; el "export"
mkdir -p runs/res; python3 -m largo export $R --out runs/release --dtype fp16 && (cd runs/release && split -b 15M ema.safetensors $OUT/ema.part. && sha256sum ema.safetensors > ../res/ema.sha256)
mkdir -p runs/res; cp runs/release/meta.json runs/res/; cp $R/log.jsonl runs/res/
python3 -m largo sample $R --classes 53,76,72,73,7,82,41,49 --n 16 --sampler dpmpp2m --steps 20 --cfg 2.5 --batch-size 500 --out runs/grid > /dev/null 2>&1; cp runs/grid/grid.png $OUT/grid.png
E="python3 -m largo eval $R --classifier $CLF --sampler dpmpp2m --steps 20 --batch-size 500 --quiet --data-root .device/data"
for W in 1.5 2.5 4; do el "eval cfg $W"; $E --n 2000 --cfg $W --out runs/res/eval_dpmpp2m20_cfg${W}_n2000.json 2>&1 | grep -A8 "^N_gen"; done
BEST=$(python3 -c "
import json,glob
r=[(json.load(open(f))['feature_spaces']['classifier:flowers102-64']['fd']['value'],json.load(open(f))['source']['cfg']) for f in glob.glob('runs/res/eval_*n2000.json')]
print(min(r)[1])")
tar -cf $OUT/res.tar -C runs res 2>/dev/null; el "best cfg by classifier-FD: $BEST; n=10000"
$E --n 10000 --cfg $BEST --out runs/res/eval_dpmpp2m20_cfg${BEST}_n10000.json 2>&1 | grep -A8 "^N_gen"
tar -cf $OUT/res.tar -C runs res 2>/dev/null; el "ddim 250"
timeout 120 python3 -m largo eval $R --classifier $CLF --sampler ddim --steps 250 --cfg $BEST --n 2000 --batch-size 1000 --quiet --data-root .device/data --out runs/res/eval_ddim250_cfg${BEST}_n2000.json 2>&1 | grep -A8 "^N_gen"
tar -cf $OUT/res.tar -C runs res 2>/dev/null; el "done"
