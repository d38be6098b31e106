#!/bin/bash
# Issue #5 on a GPU: (1) the cost of 8 vmapped seeds against one, per train step, with the conv
# GAN's convolutions by XLA ("xla") or as slices times a matrix ("slices"), with D's batch in 4
# chunks (the presets) or 1, and the slices in bfloat16 (gan_dtype);
# (2) determinism: the same run in two processes, each compiling its own programs (no compile
# cache) unless the pair says otherwise. Pairs (DET_PAIRS picks and orders them): detcache (XLA's
# deterministic-ops flag, the second process loading the first's programs, so the same
# autotuned kernels), detflags (that flag and autotuning off), slicesdet (both flags and
# conv_impl "slices": no cuDNN convolution), default, slices and cached (no flags). From the
# repository root:
#   OUT=/tmp/gpu GR_JAX_DATA_DIR=/path/to/mnist bash benchmarks/gpu_vmap_determinism.sh
# PART=vmap or PART=det runs only that half (both together need more than one 600 s call on an
# H100: the first lease ran out during the determinism pairs); SMOKE=1 runs every stage with
# tiny settings (to check the script on a CPU first).
. "$(dirname "$0")/gpu_lib.sh"
if [ "${SMOKE:-0}" = 1 ]; then
  VMAP=(--preset quick --ks 1,2 --calls 1 --reps 1) DET=(--preset quick --gen-epochs 1)
else
  VMAP=(--preset seed --ks 1,8 --calls 2 --reps 3) DET=(--preset seed --gen-epochs 1 --n-gen 3000)
fi

PART=${PART:-all}
stage_env
[ "$PART" = det ] || for v in 'slices-c1-bf16|{"conv_impl": "slices", "d_chunks": 1, "gan_dtype": "bfloat16"}' \
  'xla-c4|{}' 'slices-c4|{"conv_impl": "slices"}' 'slices-c1|{"conv_impl": "slices", "d_chunks": 1}' \
  'xla-c1|{"d_chunks": 1}'; do
  name=${v%%|*}
  stage "vmap-$name" 150 $PY benchmarks/vmap_steps.py "${VMAP[@]}" --changes "${v#*|}" \
    --json "$R/vmap-$name.json"
done

# det NAME ENV_ASSIGNMENT... -- RUN_ARGS...: the run in two processes, then compared
det() {
  local name=$1 envs=()
  shift
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  for i in 1 2; do
    stage "det-$name-$i" "${DET_LIMIT:-150}" env "${envs[@]}" $PY -m gr_jax.cli run "${DET[@]}" --no-progress \
      --out "$R/det-$name-$i" "$@"
  done
  $PY benchmarks/compare_runs.py "$R/det-$name-1" "$R/det-$name-2" | tee "$R/det-$name.txt"
  pack
}
[ "$PART" = vmap ] && { echo "=== $(date +%T) all stages done"; exit 0; }
DETOPS=--xla_gpu_deterministic_ops=true
for pair in ${DET_PAIRS:-detcache detflags slicesdet default slices cached}; do
  case $pair in
    detcache) det detcache XLA_FLAGS=$DETOPS -- --compile-cache-dir "$R/cache-det" ;;
    detflags) det detflags XLA_FLAGS="$DETOPS --xla_gpu_autotune_level=0" -- --no-compile-cache ;;
    slicesdet) det slicesdet XLA_FLAGS="$DETOPS --xla_gpu_autotune_level=0" -- --no-compile-cache \
      --conv-impl slices ;;
    default) det default -- --no-compile-cache ;;
    slices) det slices -- --no-compile-cache --conv-impl slices ;;
    cached) det cached -- --compile-cache-dir "$R/cache" ;;
    *) echo "unknown pair $pair" >&2; exit 2 ;;
  esac
done
echo "=== $(date +%T) all stages done"
