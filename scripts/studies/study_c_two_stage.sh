#!/usr/bin/env bash
# Study C (issue 11, docs/benchmarks/study_c_two_stage): organ -> lesion in two stages against one.
# Arms: vanilla nnU-Net (3d_fullres) and ELANResMSCAUNetTrainer, 3 folds, each scored on the 50 held-out cases.
# Pipelines (`--pipelines all`, docs/cascade.md), fold 0, on the same held-out cases and the arms' schedule:
# single_stage (the vanilla arm's own fold-0 model), the organ -> lesion cascade, the stage-skipping segmentor on
# whole images and detector + segmentor, each tested against single_stage case by case (paired Wilcoxon, Holm).
# Ran on 2026-11-30 in 90.5 min wall on the shared 2-core machine (report and verdicts in the README). Estimated
# before the run at ~80 of the 90 minutes on the 2-core development machine from measured CPU seconds per
# training step (vanilla 0.30, ELANRes 1.03, stage-skipping segmentor 1.05 s at these plans, from the former
# scripts/studies/step_cpu_seconds.py at commit 71c4dc1; now `python -m nnunet_ext.benchmark.real_scale --cpu-time`,
# command in the README) and study A's epoch and per-run overheads, not from a run of this command: arithmetic in
# the README.
# 16x32x32 voxels at 8x3x3 mm instead of the task's 32x80x80 at 4x1.5x1.5: the task draws to scale, so this is the
# same field of view on a coarser grid, and the organ's crop (+10 mm) stays about a third of the image, as at full
# size; at 32x80x80 one step costs ~6x more and 3 folds x 2 arms + 3 pipeline models could not train 700 iterations.
#   bash scripts/studies/study_c_two_stage.sh [WORKDIR]          # resumes finished trainings if re-run
#   STUDY_SIZE=tiny bash scripts/studies/study_c_two_stage.sh      # toy size; not in CI (a toy pipeline run took
#                                                                  # 46 min on the busy 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_c_two_stage "${1:-}" \
    --cases 60 --test-cases 50 -f 0 1 2 --epochs 70 --iterations 10 --val-iterations 3
tiny_args --test-cases 3
run_study -d 803 --task organ_lesion --shape 16 32 32 --spacing 8 3 3 -c 3d_fullres -tr ELANResMSCAUNetTrainer \
    --pipelines all
