# Sourced by h200_call{1,2}.sh on the device: the snapshot, diffusers from its wheel, data and classifier paths.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 D=.device
[ -d $D/snap/src ] || { echo "no $D/snap: run benchmarks/records/gpu_session/prepare_h200.sh here and carry .device"; exit 2; }
export PYTHONPATH=$PWD/$D/snap/src LARGO_DATA=$PWD/$D/data LARGO_CHECKPOINTS=$PWD/$D/ckpt
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache   # kept while the machine stays warm between calls
if ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $D/whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
T0=${T0:-$(date +%s)}
el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $(( END_S - ($(date +%s) - T0) )); }   # seconds left before this call's own end
B=$D/snap/benchmarks
mkdir -p runs
