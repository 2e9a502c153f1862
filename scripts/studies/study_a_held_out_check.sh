#!/usr/bin/env bash
# Study A's held-out convergence check (issue 11, docs/benchmarks/study_a_es_unet/held_out_check/): is vanilla
# nnU-Net flat at the end of study A's schedule, measured on the 50 held-out test cases instead of the validation
# pseudo-Dice (too noisy for the 0.005 tolerance in every study A run)? Vanilla alone on study A's task, cases, test
# cases and plans: the study's schedule (80 x 12, val 8, folds 0-2) and 4x its iterations (320 x 12, folds 0-1, as
# the vanilla-length probe). Each run keeps its window-start model; the report's "Held-out check" compares it with
# the final one on the test cases (docs/benchmark.md). ~40 min on the 2-core machine.
#   bash scripts/studies/study_a_held_out_check.sh [WORKDIR]     # resumes if re-run
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
base="${1:-study_output/study_a_held_out_check}"
study_args study_a_es_unet/held_out_check/ep80 "$base/ep80" \
    --cases 50 --test-cases 50 -f 0 1 2 --epochs 80 --iterations 12 --val-iterations 8 --cost-repeats 1 --cost-cases 1
run_study -d 802 --task hecktor -c 3d_fullres
study_args study_a_es_unet/held_out_check/ep320 "$base/ep320" \
    --cases 50 --test-cases 50 -f 0 1 --epochs 320 --iterations 12 --val-iterations 8 --cost-repeats 1 --cost-cases 1
run_study -d 802 --task hecktor -c 3d_fullres
