#!/bin/bash
# The GPU numbers of benchmarks/README.md from one lease of a GPU machine, in priority order;
# each stage has its own time limit, and results are packed into $OUT/gpu.tar.gz after each,
# so a lease cut short still returns what finished. From the repository root:
#   OUT=/tmp/gpu GR_JAX_DATA_DIR=/path/to/mnist bash benchmarks/gpu_session.sh
# SMOKE=1 runs every stage with tiny settings (to check the script on a CPU first).
. "$(dirname "$0")/gpu_lib.sh"
if [ "${SMOKE:-0}" = 1 ]; then
  RUN=(--preset quick --gan mlp) KS=1,2 VMAP=(--preset quick --ks 1,2 --calls 1 --reps 1)
  BENCH=(--batches 64 --reps 2 --steps 20)
else
  RUN=(--preset seed) KS=1,8 VMAP=(--preset seed --ks 1,2,4,8 --calls 2 --reps 3)
  BENCH=(--batches 64,128 --reps 5 --steps 200)
fi

stage_env
# K vmapped seeds per train step (the issue's "8 seeds <= 2x one seed"), compile excluded
stage vmap-steps 150 $PY benchmarks/vmap_steps.py "${VMAP[@]}" --json "$R/vmap-steps-gpu.json"
# whole runs of K vmapped seeds, compile time in its own column
stage seeds-per-hour 180 $PY benchmarks/seeds_per_hour.py "${RUN[@]}" --ks $KS \
  --json "$R/seeds-per-hour-gpu.json"
stage run-a 90 $PY -m gr_jax.cli run "${RUN[@]}" --out "$R/run-a" --no-progress
# the same run again: its programs now come from the persistent compile cache
stage run-b 50 $PY -m gr_jax.cli run "${RUN[@]}" --out "$R/run-b" --no-progress
stage steps-one-per-call 60 $PY benchmarks/bench_steps.py "${BENCH[@]}" --models mlp,conv \
  --gan-scan 1 --json "$R/steps-gpu-one-per-call.json"
echo "=== $(date +%T) all stages done"
