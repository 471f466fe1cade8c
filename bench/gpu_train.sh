#!/usr/bin/env bash
# Retrain the embedded model's set on a lent GPU in one device call (issue #21; bench/gpu_train.py):
#
#   run(command="bash bench/gpu_train.sh", carry=[".whl", ".gpu"], timeout_s=560)
#
# .whl/ (ignored): diffusers and peft wheels the device image lacks (see bench/gpu_run.sh; add torchsde and
# trampoline for bench/quality.py's dpmpp_sde rows, which failed there without them);
# .gpu/init/ (ignored): the exported base to fine-tune, its unet/ and text_encoder/ folders.
# BUDGET (seconds, default 480) sizes every phase; results land in $OUT as they are made.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-/tmp/gpu-train-out}"
mkdir -p "$OUT"
site=/tmp/lcmgraph-site
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl || exit 1
fi
# The source tree as the installed packages (lcmgraph, and nodes/ as lcmgraph_nodes), without pip.
mkdir -p /tmp/lcmgraph-src
ln -sfn "$PWD/lcmgraph" /tmp/lcmgraph-src/lcmgraph
ln -sfn "$PWD/nodes" /tmp/lcmgraph-src/lcmgraph_nodes
export PYTHONPATH=/tmp/lcmgraph-src:$site${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  python3 -c "import torch, diffusers, peft, transformers; print(torch.__version__, diffusers.__version__, peft.__version__, transformers.__version__)"
} | tee "$OUT/env.txt"
python3 bench/gpu_train.py --init .gpu/init --out "$OUT" --budget "${BUDGET:-480}" "$@" 2>&1 | tee "$OUT/driver.txt"
exit "${PIPESTATUS[0]}"
