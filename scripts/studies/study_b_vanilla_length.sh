#!/usr/bin/env bash
# Study B's length probe (issue 11, docs/benchmarks/study_b_small_targets/held_out_check/vanilla_ep320/): at 1600
# iterations no study B run is shown flat on held-out cases (held_out_check/). Is vanilla nnU-Net flat at twice
# that? Vanilla alone on the held-out check's task, cases, test cases, plans and folds (0-2), 320 x 10 iterations
# (val 20); each run keeps its epoch-256 model for the held-out check. ~25 min on 2 CPU cores.
#   bash scripts/studies/study_b_vanilla_length.sh [WORKDIR]       # resumes if re-run
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_b_small_targets/held_out_check/vanilla_ep320 "${1:-}" \
    --cases 120 --test-cases 50 -f 0 1 2 --epochs 320 --iterations 10 --val-iterations 20 --cost-repeats 1 \
    --cost-cases 1
run_study -d 801 --task small_targets -c 2d
