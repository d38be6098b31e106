#!/bin/bash
# What is still to be measured on a GPU (issues #3 and #5), in priority order, for one call of
# at most 600 s; each stage has its own time limit, and results are packed into
# $OUT/gpu.tar.gz after each, so a lease cut short still returns what finished (the stage
# limits add up to 500 s). From the repository root:
#   OUT=/tmp/gpu GR_JAX_DATA_DIR=/path/to/mnist bash benchmarks/gpu_session.sh
# SMOKE=1 runs every stage with tiny settings (to check the script on a CPU first).
# (The stages of earlier leases: `git log -p benchmarks/gpu_session.sh`.)
. "$(dirname "$0")/gpu_lib.sh"
FAST='"d_chunks": 1, "gan_dtype": "bfloat16", "seed_axis": "vmap"'
if [ "${SMOKE:-0}" = 1 ]; then
  VMAP=(--preset quick --ks 1,2 --calls 1 --reps 1 --gan-only)
  SPH=(--preset quick --gan mlp --ks 1,2)
  FAST='"d_chunks": 1, "seed_axis": "vmap"'  # the MLP GAN computes in float32 only
  BENCH=(--batches 64 --reps 2 --steps 20 --torch-device cpu)
else
  VMAP=(--preset seed --ks 1,8 --calls 2 --reps 3 --gan-only)
  SPH=(--preset seed --ks 1,8)
  BENCH=(--batches 64,128 --reps 5 --steps 200 --torch-device cuda)
fi

stage_env
# #5: seeds per hour with the whole run split by phase, all compiling counted (new since the
# 2026-11-29 second lease); its K=1 run should no longer compile again after the warm-up
stage seeds-per-hour 210 $PY benchmarks/seeds_per_hour.py "${SPH[@]}" \
  --changes "{\"conv_impl\": \"slices\", $FAST}" --json "$R/seeds-per-hour.json"
# #5: 8 seeds vmapped per conv GAN step, in bfloat16, with its kernel profile (3.41-3.49x one
# seed on H200s so far)
stage vmap-slices 100 $PY benchmarks/vmap_steps.py "${VMAP[@]}" --profile 30 \
  --changes "{\"conv_impl\": \"slices\", $FAST}" --json "$R/vmap-slices.json"
# #3: every step against the PyTorch reference
stage steps 150 $PY benchmarks/bench_steps.py "${BENCH[@]}" --torch --json "$R/steps-gpu.json"
echo "=== $(date +%T) all stages done"
