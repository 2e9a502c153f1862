#!/usr/bin/env bash
# Study B (issue 11, docs/benchmarks/study_b_small_targets): tiny 2D lesions at low prevalence among distractors.
# Vanilla nnU-Net (2d) against STS-Net, amplification, both, DWD, DLKUNet-S and DLKUNet's two loss schedules,
# 3 folds of nnU-Net's 5-fold split, each arm on nnU-Net's own plans, scored on the validation cases.
# STSNetPaperScheduleTrainer (the paper's AdamW 1e-4) is a diagnostic arm: STS-Net with nnU-Net's SGD learned
# nothing here, and this arm tells whether the optimiser or the network is the reason.
#   bash scripts/studies/study_b_small_targets.sh [WORKDIR]     # about an hour on 2 CPU cores; resumes if re-run
#   STUDY_SIZE=tiny bash scripts/studies/study_b_small_targets.sh   # the same command at toy size (CI)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_b_small_targets "${1:-}" \
    --cases 120 -f 0 1 2 --epochs 80 --iterations 10 --val-iterations 3
run_study -d 801 --task small_targets -c 2d \
    -tr STSNetTrainer nnUNetTrainerAmplify STSNetAmplifyTrainer nnUNetTrainerDWD DLKUNetSTrainer \
        nnUNetTrainerPhaseLoss nnUNetTrainerDynamicLoss STSNetPaperScheduleTrainer
