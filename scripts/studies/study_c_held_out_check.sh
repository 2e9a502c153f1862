#!/usr/bin/env bash
# Study C's held-out convergence check (issue 11, docs/benchmarks/study_c_two_stage/held_out_check/): are the two
# arms flat at the end of study C's schedule, measured on the 50 held-out test cases instead of the validation
# pseudo-Dice (5 of study C's 6 arm runs did not meet the 0.005 criterion)? The arms alone (vanilla nnU-Net and
# ELANResMSCAUNetTrainer, folds 0-2) on study C's task, cases, test cases, plans and schedule (70 x 10, val 3); no
# pipelines. Each run keeps its window-start model (epoch 56); the report's "Held-out check" compares it with the
# final one on the test cases (docs/benchmark.md). The third arm, nnUNetTrainerBatchDice (vanilla with the Dice
# over the batch), asks whether vanilla's lesion channel, dead in 2 of 3 folds, starts with batch Dice as UNet 3+'s
# node channel did in study A. ~97 min for the first two arms on the 2-core machine, ~35 more for the third.
#   bash scripts/studies/study_c_held_out_check.sh [WORKDIR]     # resumes if re-run
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_c_two_stage/held_out_check "${1:-}" \
    --cases 60 --test-cases 50 -f 0 1 2 --epochs 70 --iterations 10 --val-iterations 3 --cost-repeats 1 --cost-cases 1
run_study -d 803 --task organ_lesion --shape 16 32 32 --spacing 8 3 3 -c 3d_fullres \
    -tr ELANResMSCAUNetTrainer nnUNetTrainerBatchDice
