#!/usr/bin/env bash
# Study A's UNet 3+ remedy (issue 11, docs/benchmarks/study_a_es_unet/batch_dice/): per-case Dice (what nnU-Net's
# planner picks for 3d_fullres on these images) left UNet 3+'s node channel dead in fold 0 of both study A runs.
# Does nnU-Net's batch Dice (nnunet_ext/training/batch_dice.py) avoid it, and what does it do to vanilla and to
# ES-UNet (two of its three heads had a dead node channel in fold 1 of study A's first run)?
# Arms: vanilla, UNet 3+, ES-UNet (per-case Dice, as in study A) and the same three with batch Dice. Same task,
# cases, seed, splits, plans and schedule as study A, so the per-case arms are study A's own runs when the
# workdir starts as a copy of study A's (only the batch-Dice arms then train, ~45 min on the 2-core machine):
#   mkdir -p W/nnunet/nnUNet_results/Dataset802_PhantomBench && cp -r A/nnunet/nnUNet_raw A/nnunet/nnUNet_preprocessed W/nnunet/
#   cp -r A/nnunet/nnUNet_results/Dataset802_PhantomBench/{nnUNetTrainer,UNet3PlusTrainer,ESUNetTrainer}_ep80it12val8__nnUNetPlans__3d_fullres \
#         W/nnunet/nnUNet_results/Dataset802_PhantomBench/
#   bash scripts/studies/study_a_batch_dice.sh W       # resumes if re-run; without the copy it trains all six arms
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_a_es_unet/batch_dice "${1:-}" \
    --cases 50 --test-cases 50 -f 0 1 2 --epochs 80 --iterations 12 --val-iterations 8
run_study -d 802 --task hecktor -c 3d_fullres \
    -tr UNet3PlusTrainer ESUNetTrainer nnUNetTrainerBatchDice UNet3PlusBatchDiceTrainer ESUNetBatchDiceTrainer
