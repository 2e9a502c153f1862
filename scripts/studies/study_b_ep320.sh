#!/usr/bin/env bash
# Study B at 3200 iterations (issue 11, docs/benchmarks/study_b_small_targets/held_out_check/ep320/): at 1600
# iterations no study B arm meets the convergence criterion in every fold (held_out_check/), at 3200 vanilla does
# (vanilla_ep320/). Study B's arms that train at vanilla's speed (vanilla, amplification, DWD, the phase loss and
# the dynamic loss schedule; STS-Net and DLKUNet-S take ~10x as long per step: 3200 iterations of them would not fit
# the budget) at the length probe's schedule (320 x 10, val 20), task, cases, 50 test cases and folds (0-2), so
# they are judged on runs that had the time to converge. The vanilla runs are the length probe's: run this in a copy
# of the probe's workdir and they resume as finished. ~75 min on 2 CPU cores from scratch.
#   bash scripts/studies/study_b_ep320.sh [WORKDIR]       # resumes if re-run
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_b_small_targets/held_out_check/ep320 "${1:-}" \
    --cases 120 --test-cases 50 -f 0 1 2 --epochs 320 --iterations 10 --val-iterations 20 --cost-repeats 1 \
    --cost-cases 1
run_study -d 801 --task small_targets -c 2d \
    -tr nnUNetTrainerAmplify nnUNetTrainerDWD nnUNetTrainerPhaseLoss nnUNetTrainerDynamicLoss
