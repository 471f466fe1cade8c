#!/usr/bin/env bash
# The one command a session with a GPU runs on the device machine (docs/gpu.md):
#
#   run(command="bash bench/gpu_run.sh", carry=[".whl"], timeout_s=540)
#
# .whl/ (ignored by git) holds the wheels the device image lacks; make it here first:
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 peft==0.21.2
#
# Phases run most important first and are skipped when they would not fit in
# BUDGET seconds (default 450, leaving ~90 s of the 540 s timeout); results go to
# $OUT/<card>.json after every measurement, so a run cut short still returns
# what it measured. Extra arguments go to bench/gpu.py, e.g. a second, shorter call:
#   bash bench/gpu_run.sh --only baseline_lora,engine_sdxl_warm    (BUDGET=200)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/lcmgraph-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/lcmgraph-site${PYTHONPATH:+:$PYTHONPATH}
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import sys, torch, diffusers, peft, transformers; print(sys.version.split()[0], torch.__version__, \
'diffusers', diffusers.__version__, 'peft', peft.__version__, 'transformers', transformers.__version__)"
  nproc; df -h /tmp | tail -1
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
python3 bench/gpu.py --budget "${BUDGET:-450}" --out "$OUT" "$@" 2> "$OUT/stderr.log" | tee "$OUT/lines.jsonl"
status=${PIPESTATUS[0]}
grep -v '^\s*$' "$OUT/stderr.log" | tail -n 25  # the summary table, or the error
exit "$status"
