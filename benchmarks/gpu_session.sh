#!/bin/bash
# What is still to be measured on a GPU (issues #3 and #5), in priority order, for one call of
# at most 600 s; each stage has its own time limit, and results are packed into
# $OUT/gpu.tar.gz after each, so a lease cut short still returns what finished (the stage
# limits add up to 540 s). From the repository root:
#   OUT=/tmp/gpu GR_JAX_DATA_DIR=/path/to/mnist bash benchmarks/gpu_session.sh
# SMOKE=1 runs every stage with tiny settings (to check the script on a CPU first).
# (The stages of earlier leases: `git log -p benchmarks/gpu_session.sh`.)
. "$(dirname "$0")/gpu_lib.sh"
FAST='"d_chunks": 1, "gan_dtype": "bfloat16", "seed_axis": "vmap"'
if [ "${SMOKE:-0}" = 1 ]; then
  VMAP=(--preset quick --ks 1,2 --calls 1 --reps 1 --gan-only)
  SPH=(--preset quick --ks 1,2)
  BENCH=(--batches 64 --reps 2 --steps 20 --torch-device cpu)
else
  VMAP=(--preset seed --ks 1,8 --calls 2 --reps 3 --gan-only)
  SPH=(--preset seed --ks 1,8)
  BENCH=(--batches 64,128 --reps 5 --steps 200 --torch-device cuda)
fi

stage_env
# #5: 8 seeds vmapped per conv GAN step, in bfloat16: "slices_cf" (new, not yet timed on a
# GPU: the slices with the feature maps channels first), with its kernel profile, then
# "slices" (3.49x one seed on an H200, 2026-11-29) paired with it
DUMP=/tmp/gpu-hlo  # the optimized HLO of its GAN programs, which the kernels are named for
XLA_FLAGS="--xla_dump_to=$DUMP --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*step.*_at" \
  stage vmap-slices-cf 100 $PY benchmarks/vmap_steps.py "${VMAP[@]}" --profile 30 \
  --changes "{\"conv_impl\": \"slices_cf\", $FAST}" --json "$R/vmap-slices_cf.json"
mkdir -p "$R/hlo"; cp "$DUMP"/*step*_at*after_optimizations.txt "$R/hlo/"; pack
stage vmap-slices 100 $PY benchmarks/vmap_steps.py "${VMAP[@]}" --profile 30 \
  --changes "{\"conv_impl\": \"slices\", $FAST}" --json "$R/vmap-slices.json"
# #5: seeds per hour, whole runs of 1 and 8 seeds, with the faster of the two for 8 seeds
BEST=$($PY -c 'import json, sys
t = {}
for impl in ("slices_cf", "slices"):
    try:
        t[impl] = json.load(open(sys.argv[1] + "/vmap-" + impl + ".json"))["rows"][-1]["gan_step_s"]
    except (OSError, ValueError, KeyError, IndexError):  # a file cut mid-write too
        pass
print(min(t, key=t.get) if t else "slices")' "$R")
echo "=== fastest for 8 seeds: $BEST"
stage seeds-per-hour 210 $PY benchmarks/seeds_per_hour.py "${SPH[@]}" \
  --changes "{\"conv_impl\": \"$BEST\", $FAST}" --json "$R/seeds-per-hour.json"
# #3: the solver and MLP GAN rows of the step table against the PyTorch reference (the
# 2026-11-29 lease ran out of time before writing them; its conv GAN rows are recorded)
stage steps 90 $PY benchmarks/bench_steps.py "${BENCH[@]}" --models solver,mlp --torch \
  --json "$R/steps-gpu.json"
echo "=== $(date +%T) all stages done"
