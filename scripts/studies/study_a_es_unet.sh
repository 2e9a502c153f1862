#!/usr/bin/env bash
# Study A (issue 11, docs/benchmarks/study_a_es_unet): the ES-UNet paper's claims on a HECKTOR-like CT + PET task.
# Vanilla nnU-Net (3d_fullres) against ES-UNet, DWD, RSS, ES-UNet + DWD + RSS and UNet 3+, 3 folds, each arm on
# nnU-Net's own plans, scored on 50 held-out test cases (3 folds x 50 paired cases, so that a difference of ~0.02 Dice
# can show; the first run's 10 validation cases per fold could not), validation 8 iterations per epoch so that the
# learning curves' noise is smaller (report.md, "Convergence").
# The ResEnc arm is nnU-Net's ResEnc preset nearest in memory (--resenc nearest) with nnU-Net's default 5% dataset
# cap on the batch (--resenc-dataset-cap): the stock preset has no cap and gave batch 50 on these 50 small images
# (57 s per epoch against vanilla's 1.3 s), so its runs alone would have taken ~150 min (README, "The ResEnc arm").
#   bash scripts/studies/study_a_es_unet.sh [WORKDIR]          # resumes if re-run
#   STUDY_SIZE=tiny bash scripts/studies/study_a_es_unet.sh      # the same command at toy size (CI)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_a_es_unet "${1:-}" \
    --cases 50 --test-cases 50 -f 0 1 2 --epochs 80 --iterations 12 --val-iterations 8
run_study -d 802 --task hecktor -c 3d_fullres \
    -tr ESUNetTrainer nnUNetTrainerDWD nnUNetTrainerRSS ESUNetDWDRSSTrainer UNet3PlusTrainer \
    --resenc nearest --resenc-dataset-cap
