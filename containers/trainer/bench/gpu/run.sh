#!/usr/bin/env bash
# The trainer's GPU benchmarks in one call on the lent GPU machine (the `device` tool):
#
#   bash containers/trainer/bench/gpu/fetch-wheels.sh             # here, once
#   run(command="bash containers/trainer/bench/gpu/run.sh", carry=[".whl"], timeout_s=600)
#
# MODES (default "gpu-1b gpu-7b-lora") and BENCH_ARGS (e.g. "--attention flex_attention")
# select what runs. Logs land in $OUT (they come back with the reply). Every figure printed
# goes to docs/benchmarks.md with the device line at the top of the log.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/containers/trainer/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DAPT_CACHE=/tmp/dapt-cache
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  python3 -c 'import torch, transformers, peft; print("torch", torch.__version__,
    "transformers", transformers.__version__, "peft", peft.__version__)'
  nproc
} 2>&1 | tee "$OUT/device.txt"
for mode in ${MODES:-gpu-1b gpu-7b-lora}; do
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
  python3 containers/trainer/bench/bench_train.py --mode "$mode" ${BENCH_ARGS:-} 2>&1 \
    | tee "$OUT/$mode.log"
done
