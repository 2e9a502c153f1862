#!/usr/bin/env bash
# Study B's held-out convergence check (issue 11, docs/benchmarks/study_b_small_targets/held_out_check/): study B
# evaluates on validation cases, so its runs had no held-out check. Its converged re-run's task, training cases,
# seed, folds, plans, schedule (160 x 10, val 20) and arms (vanilla, amplification, DWD), plus 50 generated test
# cases (cases 120-169: the training cases are the same, as each case is drawn from its own seed). Each run keeps
# its window-start model (epoch 128); the report's "Held-out check" compares it with the final one on the test
# cases (docs/benchmark.md), and its verdicts are study B's first on held-out cases. ~45 min on 2 CPU cores.
#   bash scripts/studies/study_b_held_out_check.sh [WORKDIR]     # resumes if re-run
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/studies/common.sh
study_args study_b_small_targets/held_out_check "${1:-}" \
    --cases 120 --test-cases 50 -f 0 1 2 --epochs 160 --iterations 10 --val-iterations 20 --cost-repeats 1 \
    --cost-cases 1
run_study -d 801 --task small_targets -c 2d \
    -tr nnUNetTrainerAmplify nnUNetTrainerDWD
