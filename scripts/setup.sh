#!/usr/bin/env bash
# Create .venv (once) and install nnunet-ext with everything it needs. Safe to re-run.
# TORCH_PACKAGES chooses the torch build (default: the pair this project is tested with); set it to
# e.g. "torch torchvision" or a CUDA-specific index on your own machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_PACKAGES="${TORCH_PACKAGES:-torch==2.14.1 torchvision==0.29.1}"

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    echo "[setup] installing $TORCH_PACKAGES (before nnU-Net, so pip does not fetch another torch)"
    $PIP install -q --upgrade pip
    # shellcheck disable=SC2086
    $PIP install -q $TORCH_PACKAGES
fi
echo "[setup] installing nnunet-ext and its dependencies"
$PIP install -q -e ".[test]"
echo "[setup] ok: $(.venv/bin/python -c 'import torch, nnunetv2, importlib.metadata as m; print("torch", torch.__version__, "| nnunetv2", m.version("nnunetv2"))')"
