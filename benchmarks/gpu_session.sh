#!/bin/bash
# What is still to be measured on a GPU (issues #3 and #5), in priority order, for one call of
# at most 600 s; each stage has its own time limit, and results are packed into
# $OUT/gpu.tar.gz after each, so a lease cut short still returns what finished (the stage
# limits add up to 360 s). From the repository root:
#   OUT=/tmp/gpu GR_JAX_DATA_DIR=/path/to/mnist bash benchmarks/gpu_session.sh
# SMOKE=1 runs every stage with tiny settings (to check the script on a CPU first).
# (The stages of earlier leases: `git log -p benchmarks/gpu_session.sh`.)
. "$(dirname "$0")/gpu_lib.sh"
FAST='"d_chunks": 1, "gan_dtype": "bfloat16", "seed_axis": "vmap"'
if [ "${SMOKE:-0}" = 1 ]; then
  VMAP=(--preset quick --ks 1,2 --calls 1 --reps 1 --gan-only)
  BENCH=(--batches 64 --reps 2 --steps 20 --torch-device cpu)
else
  VMAP=(--preset seed --ks 1,8 --calls 2 --reps 5 --gan-only)
  BENCH=(--batches 64,128 --reps 5 --steps 200 --torch-device cuda)
fi

stage_env
# #5: K seeds per GAN step, vmapped, with each way of computing the convolutions in bfloat16:
# conv_impl "matmul" (new: no im2col for G's last layer, biases inside the products) with
# its kernel profile, then "slices" (3.49x for 8 seeds on this H200 in the day's first call,
# paired again here) and XLA's own (grouped) convolutions
stage vmap-matmul 100 $PY benchmarks/vmap_steps.py "${VMAP[@]}" --profile 30 \
  --changes "{\"conv_impl\": \"matmul\", $FAST}" --json "$R/vmap-matmul.json"
stage vmap-slices 75 $PY benchmarks/vmap_steps.py "${VMAP[@]}" \
  --changes "{\"conv_impl\": \"slices\", $FAST}" --json "$R/vmap-slices.json"
stage vmap-xla 75 $PY benchmarks/vmap_steps.py "${VMAP[@]}" \
  --changes "{\"conv_impl\": \"xla\", $FAST}" --json "$R/vmap-xla.json"
# #3: the conv GAN rows of the step table against the PyTorch reference (the day's first
# call ran out of time before them)
stage steps-conv 80 $PY benchmarks/bench_steps.py "${BENCH[@]}" --models conv --torch \
  --json "$R/steps-conv-gpu.json"
echo "=== $(date +%T) all stages done"
