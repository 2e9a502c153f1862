#!/usr/bin/env bash
# Study A's convergence probe (issue 11, docs/benchmarks/study_a_es_unet/vanilla_length/): can the cheapest arm,
# vanilla nnU-Net, meet the convergence criterion on study A's task within what the 90-minute budget could give
# the whole study? Vanilla alone, folds 0 and 1, 4x the study's iterations (320 x 12) and 12 validation iterations
# per epoch (quieter curves); ~14 min on the 2-core machine. Same task, cases and plans as the study.
#   bash scripts/studies/study_a_vanilla_length.sh [WORKDIR]       # resumes if re-run
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_a_es_unet/vanilla_length "${1:-}" \
    --cases 50 -f 0 1 --epochs 320 --iterations 12 --val-iterations 12 --cost-repeats 1 --cost-cases 1
run_study -d 802 --task hecktor -c 3d_fullres
