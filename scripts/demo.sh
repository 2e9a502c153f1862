#!/usr/bin/env bash
# Set up (if needed) and run the demo: vanilla nnU-Net vs ESUNetDWDRSSTrainer on a generated dataset.
# Extra arguments go to `nnunet-ext demo` (see `nnunet-ext demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nnunet-ext demo "$@"
