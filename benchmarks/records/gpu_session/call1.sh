#!/bin/bash
# GPU call 1 (carry .device2 = Fashion-MNIST raw + a snapshot of src/ at HEAD): demo sweep, Fashion-MNIST
# checkpoint, Flowers throughput probe. Writes progressively to $OUT.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/.device2/snap/src OMP_NUM_THREADS=2
SNAP=.device2/snap
mkdir -p runs/sweep
T0=$(date +%s); el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
el "phase A: demo sweep (7 parallel) + fashion training"
S="python3 benchmarks/records/demo_sweep.py --out runs/sweep --data-root .device2/data"
ALL=ddim:20:3,ddim:20:2,dpmpp2m:20:3,dpmpp2m:20:2
$S --name base_s0 --samplings $ALL > runs/sweep/base_s0.log 2>&1 &
$S --name base_s1 --seed 1 --samplings $ALL > runs/sweep/base_s1.log 2>&1 &
$S --name lr2e-3 --lr 2e-3 --samplings ddim:20:3,dpmpp2m:20:3 > runs/sweep/lr2e-3.log 2>&1 &
$S --name ema0.995 --ema-decay 0.995 --samplings ddim:20:3,dpmpp2m:20:3 > runs/sweep/ema0.995.log 2>&1 &
$S --name v --prediction v --samplings ddim:20:3,dpmpp2m:20:3 > runs/sweep/v.log 2>&1 &
$S --name bs32 --batch-size 32 --samplings ddim:20:3,dpmpp2m:20:3 > runs/sweep/bs32.log 2>&1 &
$S --name minsnr --loss-weighting min_snr --samplings ddim:20:3,dpmpp2m:20:3 > runs/sweep/minsnr.log 2>&1 &
FR=runs/fashion32-gpu
timeout -s TERM 200 python3 -m largo train --preset fashion32 --num-res-blocks 1 --batch-size 256 --lr 5e-4 \
  --lr-warmup 200 --ema-decay 0.9995 --precision bf16 --channels-last true --max-minutes 2 --steps 1000000 \
  --sample-every 0 --checkpoint-every 2000 --log-every 100 --device cuda --data-root .device2/data \
  --run-dir $FR --quiet > runs/fashion_train.log 2>&1 &
FPID=$!
wait
el "phase A done"; tail -3 runs/fashion_train.log; cat runs/sweep/*.log | grep accuracy
tar -cf $OUT/sweep.tar runs/sweep/*.json runs/sweep/*.log runs/sweep/base_s0/samples
el "fashion eval/export/sample"
python3 -m largo eval $FR --n 2000 --batch-size 500 --data-root .device2/data --quiet 2>&1 | tail -12
python3 -m largo eval $FR --n 2000 --batch-size 500 --sampler dpmpp2m --steps 20 --data-root .device2/data --quiet 2>&1 | tail -12
python3 -m largo export $FR --out $OUT/fashion --dtype fp16
python3 -m largo sample $FR --n 8 --batch-size 500 --out runs/fgrid > /dev/null 2>&1 && cp runs/fgrid/grid.png $OUT/fashion/samples.png
tar -cf $OUT/fashion_run.tar $FR/log.jsonl $FR/eval $FR/config.json runs/fashion_train.log
el "phase B: flowers throughput probe"
python3 benchmarks/records/train_throughput.py --out $OUT/throughput.jsonl --deadline 140 --settings \
  "1,2,3,4:256:bf16:cl:eager" "1,2,3,4:256:bf16:cl:compile" "1,2,3,4:256:bf16:cl:eager-bench" \
  "1,2,3,4:256:bf16:nocl:eager" "1,2,2,4:256:bf16:cl:eager" "1,2,3,4:128:bf16:cl:eager" "1,2,3,4:64:bf16:cl:eager" \
  "1,2,3,4:256:fp32:cl:eager" "1,2,3,4:128:bf16:cl:compile" "1,2,3,4:64:bf16:cl:compile"
el "done"
