#!/usr/bin/env bash
# One prepared GPU check (issue 10 item 6; docs/benchmarks/gpu_check/README.md): Table 9 side by side, every
# trainer family through a compiled AMP nnUNetv2_train, nnUNetv2_predict + evaluation. Tables go to --out.
#   bash scripts/gpu_check.sh --out docs/benchmarks/gpu_check/run     # on one CUDA GPU (<= 8 min target)
#   bash scripts/gpu_check.sh --dry-run --out /tmp/gpu_check          # CPU, tiny sizes (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    echo "gpu_check: no .venv here; run 'bash scripts/setup.sh' first" >&2
    exit 2
fi
exec .venv/bin/python -m nnunet_ext.benchmark.gpu_check "$@"
