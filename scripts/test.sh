#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit tests and the end-to-end runs of nnU-Net's CLIs.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"` for the fast unit tests only.
# The tests' scratch (generated datasets, nnU-Net's preprocessed data and checkpoints; tests/conftest.py removes
# each module's when it is done, so the peak stays under 3 GB) goes to NNUNET_EXT_TEST_TMP (default: .test_tmp in
# this checkout), not /tmp: a machine's /tmp may be small or full of earlier runs' leftovers, and a full disk shows
# up as dozens of unrelated errors. It is removed when all tests pass. TMPDIR is left alone: torch's compile cache
# (/tmp/torchinductor_<user>, ~160 MB) stays warm between runs (tests/test_compile.py's DLKUNet-S inductor test: 65 s
# with a cold cache, 6 s warm).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TEST_TMP="${NNUNET_EXT_TEST_TMP:-$PWD/.test_tmp}"
NEED_GB="${NNUNET_EXT_TEST_MIN_FREE_GB:-4}"
mkdir -p "$TEST_TMP"
FREE_GB=$(df -Pk "$TEST_TMP" | awk 'NR == 2 {print int($4 / 1048576)}')
echo "[test] scratch in $TEST_TMP: ${FREE_GB} GB free"
if [ "$FREE_GB" -lt "$NEED_GB" ]; then
    echo "[test] not enough disk: ${FREE_GB} GB free at $TEST_TMP, the suite needs about ${NEED_GB} GB." \
         "Free some space or set NNUNET_EXT_TEST_TMP to a folder on a larger disk." >&2
    exit 1
fi
rc=0
# two workers, one test file each at a time (e2e runs are mostly single-process nnU-Net commands), in the order
# tests/conftest.py gives: the slowest files first, so that both workers finish together
.venv/bin/python -m pytest -q -ra --durations=20 -n "${PYTEST_WORKERS:-2}" --dist loadfile \
    --no-loadscope-reorder --basetemp "$TEST_TMP/pytest" "$@" || rc=$?
echo "[test] scratch at the end: $(du -sh "$TEST_TMP" 2>/dev/null | cut -f1)"
if [ "$rc" -eq 0 ]; then rm -rf "$TEST_TMP"; fi
exit "$rc"
