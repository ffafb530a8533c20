#!/bin/bash
# Issue 18, H200 call 1 (carry [".device"], filled by prepare_h200.sh). Command for the device tool's `run`:
#   bash benchmarks/records/gpu_session/h200_call1.sh            (timeout_s 600; the script ends itself by END_S)
# Part 1 (PART1_S s; 0 skips it): benchmarks/gpu_mfu.py — ceilings, training and sampling variants of ours and of
#   diffusers' matched UNet2DModel, compiled ones prewarmed 5 at a time, a profile of the best training variant.
#   → $OUT/part1.tar (results.jsonl, log, profile table), $OUT/trace.json.gz
# Part 2 training, with what remains (≥ 100 s) or TRAIN_S: the flowers64 v2 recipe below into $RUN, which stays
#   on the warm machine for h200_call2.sh (call it at once: a machine is warm for 30 s); the fp16 EMA comes back
#   split (cat ema.part.* > ema.safetensors, check ema.sha256) with log, config and a grid.
#   → $OUT/train.tar, $OUT/ema.part.aa … (3 parts of ≤ 15 MiB), $OUT/grid.png
# Env (default): END_S (550) PART1_S (330) TRAIN_S (all that remains) VARIANTS (below) RUN (runs/flowers64-v2)
#   BATCH (256) LR (3e-4) WARMUP (500) EMA (0.9995) PRED (v) WEIGHT (uniform) COMPILE (true)
#   CUDNN_BENCHMARK / LARGO_INDUCTOR (see largo_tuned.py) — set them from Part 1's winner.
set -o pipefail
cd "$(dirname "$0")/../.." || exit 2
END_S=${END_S:-550} PART1_S=${PART1_S:-330} RUN=${RUN:-runs/flowers64-v2}
source benchmarks/records/gpu_session/h200_env.sh
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), 'diffusers', diffusers.__version__)"

VARIANTS=${VARIANTS:-"train:ours:256:default:cl train:ours:512:default:cl train:ours:1024:default:cl \
train:ours:512:default:nchw train:ours:512:default:cl:noema train:ours:512:max-autotune-no-cudagraphs:cl \
train:ours:512:reduce-overhead:cl train:ours:256:off:cl train:diffusers:512:default:cl train:diffusers:512:off:nchw \
sample:ours:256:default:cl sample:ours:1024:default:cl sample:ours:1024:off:cl sample:diffusers:1024:default:cl"}
if [ "$PART1_S" -gt 0 ]; then
  el "part 1: gpu_mfu.py for ${PART1_S}s"
  mkdir -p runs/mfu
  timeout -s TERM "$PART1_S" python3 $B/gpu_mfu.py --device cuda --isolate --prewarm 5 --ceilings \
    --variant-timeout 200 --deadline $(( PART1_S - 45 )) --out-dir runs/mfu --variants $VARIANTS 2>&1 \
    | grep -v "^USDT\|profiler_st" | tee runs/mfu/log.txt
  mv runs/mfu/trace_*.json.gz $OUT/trace.json.gz 2>/dev/null
  tar -cf $OUT/part1.tar -C runs mfu; el "part 1 done"
fi

TRAIN_S=${TRAIN_S:-$(( $(left) - 40 ))}
if [ "$TRAIN_S" -lt 100 ]; then el "no time left for training ($TRAIN_S s)"; exit 0; fi
MIN=$(python3 -c "print(round(($TRAIN_S - 15) / 60, 2))")
el "part 2: train $RUN for $MIN min (batch ${BATCH:-256}, lr ${LR:-3e-4}, pred ${PRED:-v}, compile ${COMPILE:-true})"
timeout -s TERM $(( TRAIN_S + 10 )) python3 $B/records/gpu_session/largo_tuned.py train --preset flowers64 \
  --channel-mult 1,2,3,4 --batch-size ${BATCH:-256} --lr ${LR:-3e-4} --lr-warmup ${WARMUP:-500} \
  --lr-schedule cosine --steps 1000000 --max-minutes $MIN --precision bf16 --channels-last true \
  --compile ${COMPILE:-true} --ema-decay ${EMA:-0.9995} --prediction ${PRED:-v} --loss-weighting ${WEIGHT:-uniform} \
  --balanced true --sample-every 0 --checkpoint-every 1000 --log-every 100 --device cuda --data-root $LARGO_DATA \
  --run-dir $RUN --quiet 2>&1 | tee runs/train.log | tail -5
el "export"
rm -rf runs/v2-release && python3 -m largo export $RUN --out runs/v2-release --dtype fp16 \
  && (cd runs/v2-release && split -b 15M ema.safetensors $OUT/ema.part. && sha256sum ema.safetensors > meta.sha256)
[ "$(left)" -gt 25 ] && timeout $(( $(left) - 10 )) python3 -m largo sample $RUN --classes 53,76,72,73,7,82,41,49 \
  --n 16 --sampler dpmpp2m --steps 20 --cfg 2.5 --batch-size 500 --out runs/v2grid > /dev/null 2>&1 \
  && cp runs/v2grid/grid.png $OUT/grid.png
tar -cf $OUT/train.tar runs/train.log $RUN/log.jsonl $RUN/config.json runs/v2-release/meta.json \
  runs/v2-release/meta.sha256 2>/dev/null
el "done"; ls -la $OUT
