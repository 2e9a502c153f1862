#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit tests and the end-to-end runs of nnU-Net's CLIs.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"` for the fast unit tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# two workers, one test file each at a time: e2e runs are mostly single-process nnU-Net commands
exec .venv/bin/python -m pytest -q -ra --durations=20 -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
