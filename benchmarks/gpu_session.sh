#!/bin/bash
# Every GPU number of benchmarks/README.md from one lease of a GPU machine, in priority order;
# each stage has its own time limit, and results are packed into $OUT/gpu.tar.gz after each,
# so a lease cut short still returns what finished. From the repository root:
#   OUT=/tmp/gpu GR_JAX_DATA_DIR=/path/to/mnist bash benchmarks/gpu_session.sh
# SMOKE=1 runs every stage with tiny settings (to check the script on a CPU first).
set -u
: "${OUT:?set OUT to a folder for the results}" "${GR_JAX_DATA_DIR:?set GR_JAX_DATA_DIR}"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
R=${RUNS:-/tmp/gpu-runs}
mkdir -p "$R" "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
  RUN=(--preset quick --gan mlp) BENCH=(--batches 64 --reps 2 --steps 20) KS=1,2 BIG=2000
  TORCH=cpu
else
  RUN=(--preset seed) BENCH=(--batches 64,128 --reps 5 --steps 200) KS=1,2,4,8 BIG=120000
  TORCH=cuda
fi

pack() { tar czf "$OUT/gpu.tar.gz" --exclude=checkpoints -C "$R" . ; }
stage() {
  local name=$1 limit=$2
  shift 2
  echo "=== $(date +%T) $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$R/$name.log" 2>&1
  local rc=$?
  echo "=== $(date +%T) $name rc=$rc$([ $rc = 124 ] && echo ' (time limit)')"
  tail -n 20 "$R/$name.log"
  pack
}

stage env 60 bash -c "nvidia-smi -L; nproc; $PY -c 'import jax, flax, optax, orbax.checkpoint as o, numpy;
print(\"jax\", jax.__version__, \"flax\", flax.__version__, \"optax\", optax.__version__,
      \"orbax\", o.__version__, \"numpy\", numpy.__version__); print(jax.devices())'"
stage run-a 150 $PY -m gr_jax.cli run "${RUN[@]}" --out "$R/run-a" --no-progress
# the same run again: its programs now come from the persistent compile cache
stage run-b 90 $PY -m gr_jax.cli run "${RUN[@]}" --out "$R/run-b" --no-progress
# the study's n_gen = 120k, one seed after another (three vmapped seeds did not finish in 240 s
# on an H200); study.py writes experiments/results/gr-conv-120k-sN.json
if [ "${SMOKE:-0}" = 1 ]; then
  stage ngen-120k 240 $PY -m gr_jax.cli run "${RUN[@]}" --n-gen $BIG --out "$R/ngen-big"
else
  stage ngen-120k 240 $PY experiments/study.py run gr-conv-120k --seeds 0,1,2
  cp experiments/results/gr-conv-120k-s*.json "$R/" 2>/dev/null
  pack
fi
stage seeds-per-hour 200 $PY benchmarks/seeds_per_hour.py "${RUN[@]}" --ks $KS \
  --json "$R/seeds-per-hour-gpu.json"
stage steps 120 $PY benchmarks/bench_steps.py "${BENCH[@]}" --torch --torch-device $TORCH \
  --json "$R/steps-gpu.json"
stage steps-one-per-call 60 $PY benchmarks/bench_steps.py "${BENCH[@]}" --models mlp,conv \
  --gan-scan 1 --json "$R/steps-gpu-one-per-call.json"
echo "=== $(date +%T) all stages done"
