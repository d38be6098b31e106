#!/bin/bash
# What is still to be measured on a GPU (issues #3 and #5), in priority order, for one call of
# at most 600 s; each stage has its own time limit, and results are packed into
# $OUT/gpu.tar.gz after each, so a lease cut short still returns what finished (the stage
# limits add up to 370 s). From the repository root:
#   OUT=/tmp/gpu GR_JAX_DATA_DIR=/path/to/mnist bash benchmarks/gpu_session.sh
# SMOKE=1 runs every stage with tiny settings (to check the script on a CPU first).
# (The stages of earlier leases: `git log -p benchmarks/gpu_session.sh`.)
. "$(dirname "$0")/gpu_lib.sh"
FAST='{"conv_impl": "slices", "d_chunks": 1, "gan_dtype": "bfloat16", "seed_axis": "vmap"}'
if [ "${SMOKE:-0}" = 1 ]; then
  RUN=(--preset quick --gan mlp) VMAP=(--preset quick --ks 1,2 --calls 1 --reps 1 --profile 5)
  BENCH=(--batches 64 --reps 2 --steps 20 --torch-device cpu)
else
  RUN=(--preset seed) VMAP=(--preset seed --ks 1,8 --calls 2 --reps 3 --profile 30)
  BENCH=(--batches 64,128 --reps 5 --steps 200 --torch-device cuda)
fi

stage_env
# #5: K seeds per train step at the fastest vmapped setting (3.27x for 8 seeds on an H100),
# and where the 8-seed step's device time goes: its kernels, from a profile, and the optimized
# HLO of the GAN program (whose fusions the kernels are named for)
DUMP=/tmp/gpu-hlo
XLA_FLAGS="--xla_dump_to=$DUMP --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*step.*_at" \
  stage vmap-profile 120 $PY benchmarks/vmap_steps.py "${VMAP[@]}" --changes "$FAST" \
  --json "$R/vmap-profile.json"
mkdir -p "$R/hlo"; cp "$DUMP"/*step*_at*after_optimizations.txt "$R/hlo/"; pack
# #3: whole runs of the preset as it is with this commit's code, cold and then warm
# compile cache
stage run-a 70 $PY -m gr_jax.cli run "${RUN[@]}" --out "$R/run-a" --no-progress
stage run-b 40 $PY -m gr_jax.cli run "${RUN[@]}" --out "$R/run-b" --no-progress
# #3: the step table against the PyTorch reference on the GPU
stage steps 100 $PY benchmarks/bench_steps.py "${BENCH[@]}" --torch \
  --json "$R/steps-gpu.json"
echo "=== $(date +%T) all stages done"
