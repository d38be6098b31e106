# Shared by the gpu_*.sh scripts: run stages with their own time limits, and pack the results
# into $OUT/gpu.tar.gz after each, so a lease cut short still returns what finished.
set -u
: "${OUT:?set OUT to a folder for the results}" "${GR_JAX_DATA_DIR:?set GR_JAX_DATA_DIR}"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
R=${RUNS:-/tmp/gpu-runs}
mkdir -p "$R" "$OUT"

pack() { tar czf "$OUT/gpu.tar.gz" --exclude=checkpoints -C "$R" . ; }
stage() {
  local name=$1 limit=$2
  shift 2
  echo "=== $(date +%T) $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$R/$name.log" 2>&1
  local rc=$?
  echo "=== $(date +%T) $name rc=$rc$([ $rc = 124 ] && echo ' (time limit)')"
  tail -n 14 "$R/$name.log"
  pack
}
stage_env() {
  stage env 40 bash -c "nvidia-smi -L; nproc; $PY -c 'import jax, flax, optax, orbax.checkpoint as o, numpy;
print(\"jax\", jax.__version__, \"flax\", flax.__version__, \"optax\", optax.__version__,
      \"orbax\", o.__version__, \"numpy\", numpy.__version__); print(jax.devices())'"
}
