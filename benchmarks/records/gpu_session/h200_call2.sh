#!/bin/bash
# Issue 18, H200 call 2, at once after h200_call1.sh on the same warm machine (carry [".device"]):
#   bash benchmarks/records/gpu_session/h200_call2.sh            (timeout_s 600; the script ends itself by END_S)
# Evaluates $RUN (trained by call 1; refuses at once if the machine was given back in between) in the domain
# classifier's space, each step with its own timeout from what remains:
#   1. memorisation check, MEM_N samples (benchmarks/memorisation.py) → memorisation.json, $OUT/closest_pairs.png
#   2. `largo eval` N images, DPM++2M 20, for each cfg in CFGS
#   3. `largo eval` DDIM 250 at DDIM_CFG, DDIM_N images
# → $OUT/eval.tar (every JSON and log, refreshed after each step), $OUT/closest_pairs.png
# Env (default): END_S (550) RUN (runs/flowers64-v2) MEM_N (1000) MEM_CFG (1.5) N (10000) CFGS ("1.5 2.5")
#   DDIM_N (1000) DDIM_CFG (1.5). Timing from the H100 session: eval 31 s at N 2,000, 114 s at N 10,000.
set -o pipefail
cd "$(dirname "$0")/../.." || exit 2
END_S=${END_S:-550} RUN=${RUN:-runs/flowers64-v2}
source benchmarks/records/gpu_session/h200_env.sh
[ -f $RUN/latest ] || { echo "no trained run at $RUN (the machine was given back?): run h200_call1.sh first"; exit 3; }
CLF=$LARGO_CHECKPOINTS/classifiers/flowers102-64
R=runs/v2-eval; mkdir -p $R
save() { tar -cf $OUT/eval.tar -C runs v2-eval 2>/dev/null; }
el "memorisation, $MEM_N samples"
timeout $(( $(left) < 150 ? $(left) : 150 )) python3 $B/memorisation.py $RUN --n ${MEM_N:-1000} --steps 20 \
  --cfg ${MEM_CFG:-1.5} --batch-size 1000 --device cuda --classifier $CLF --out-dir $R/memorisation 2>&1 \
  | tee $R/memorisation.log; cp $R/memorisation/closest_pairs.png $OUT/ 2>/dev/null; save
E="python3 -m largo eval $RUN --classifier $CLF --batch-size 1000 --quiet --data-root $LARGO_DATA"
for W in ${CFGS:-1.5 2.5}; do
  [ "$(left)" -lt 40 ] && { el "skip cfg $W: time"; continue; }
  el "eval dpmpp2m 20, cfg $W, n ${N:-10000}"
  timeout $(( $(left) - 10 )) $E --sampler dpmpp2m --steps 20 --cfg $W --n ${N:-10000} \
    --out $R/eval_dpmpp2m20_cfg${W}_n${N:-10000}.json 2>&1 | tee $R/eval_cfg$W.log | grep -A8 "^N_gen"; save
done
if [ "$(left)" -gt 40 ]; then
  el "eval ddim 250, cfg ${DDIM_CFG:-1.5}, n ${DDIM_N:-1000}"
  timeout $(( $(left) - 10 )) $E --sampler ddim --steps 250 --cfg ${DDIM_CFG:-1.5} --n ${DDIM_N:-1000} \
    --out $R/eval_ddim250_cfg${DDIM_CFG:-1.5}_n${DDIM_N:-1000}.json 2>&1 | tee $R/eval_ddim.log | grep -A8 "^N_gen"
fi
save; el "done"; ls -la $OUT
