"""One small benchmark through the real nnU-Net commands: 2 trainers, 4 epochs x 2 iterations, tiny phantom with
3 held-out test cases."""
import csv
import json

import pytest

from nnunet_ext.benchmark.runner import BenchmarkConfig, execute_run, plan_runs, prepare_workspace, run_benchmark
from nnunet_ext.safe_load import load_checkpoint


@pytest.mark.e2e
def test_small_benchmark_writes_every_section_and_resumes(tmp_path):
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=873, dataset_name="BenchE2E", trainers=("nnUNetTrainerDWD",),
                          folds=(0,), epochs=4, iterations=2, val_iterations=1, generate=True, num_train_cases=6,
                          num_test_cases=3, shape=(16, 32, 32), executor="local", cost_repeats=2, cost_cases=1,
                          plots_overlay_cases=2, command_line="(test)")
    report = run_benchmark(cfg, log=lambda m: None)
    text = report.read_text()
    for section in ("## Protocol", "## Accuracy", "Per class", "## Other metrics", "## Cost, measured side by side",
                    "### Dice per case", "### Cost vs Dice", "### Learning curves", "### Example cases", "## Files"):
        assert section in text, section
    assert "## Failed runs" not in text
    assert "Too few cases to test" in text  # 3 held-out test cases
    out = report.parent
    for png in ("dice_boxplot.png", "cost_vs_dice.png", "learning_curves.png"):
        assert (out / png).stat().st_size > 10_000, png
    assert list(out.glob("overlay_*.png"))
    with open(out / "cases.csv") as f:
        rows = list(csv.DictReader(f))
    # 2 trainers x 3 test cases x (organ, lesion, mean)
    assert len(rows) == 18 and {r["trainer"] for r in rows} == {"nnUNetTrainer", "nnUNetTrainerDWD"}
    cost = json.loads((out / "cost.json").read_text())
    # same network, different loss: parameters and FLOPs must agree exactly
    assert cost["nnUNetTrainer"]["parameters"] == cost["nnUNetTrainerDWD"]["parameters"] > 0
    assert cost["nnUNetTrainer"]["flops_per_patch"] == cost["nnUNetTrainerDWD"]["flops_per_patch"] > 0
    assert cost["nnUNetTrainer"]["predict_seconds_per_case"] > 0
    for trainer in ("nnUNetTrainer", "nnUNetTrainerDWD"):  # the trainer's own train_step, 2 repeats after a warm-up
        steps = cost[trainer]["train_step_seconds_all"]
        assert len(steps) == 2 and cost[trainer]["train_step_seconds"] == pytest.approx(sorted(steps)[0] / 2 +
                                                                                       sorted(steps)[1] / 2)
    assert "train s/iter = median of the trainer's own train_step" in text
    # the cost job's trainer logged into a scratch folder: each run folder holds only its run's training log
    results = tmp_path / "nnunet" / "nnUNet_results"
    assert [len(list(f.glob("training_log_*.txt"))) for f in results.glob("*/*/fold_0")] == [1, 1]
    assert "| nnUNetTrainer | 16x32x32 |" in text and "1.00x" in text
    curves = json.loads((out / "learning_curves.json").read_text())
    assert len(curves["nnUNetTrainer"]["train_losses"]) == 4

    # the held-out convergence check: each run kept its model after epoch 1 (the criterion's 3-epoch window starts
    # there), predicted the test cases with it too, and the report's change is the mean per-case difference
    for trainer in ("nnUNetTrainer", "nnUNetTrainerDWD"):
        fold = next(results.glob(f"*/{trainer}_ep4it2val1__nnUNetPlans__3d_fullres/fold_0"))
        assert load_checkpoint(fold / "checkpoint_ep1.pth")["current_epoch"] == 1
        assert len(list((fold / "test_predictions_window_start").glob("*.nii.gz"))) == 3
        final, start = ({r["case"]: r["dice"] for r in json.loads((fold / name).read_text()) if r["class"] == "mean"}
                        for name in ("benchmark_cases.json", "benchmark_cases_window_start.json"))
        assert len(final) == len(start) == 3
        change = sum(final[c] - start[c] for c in final) / 3
        assert f"| {trainer} | 0 | mean | 1 -> 4 | 3 | {change:+.4f} |" in text
        assert f"| {trainer} | 0 | organ | 1 -> 4 |" in text and f"| {trainer} | 0 | lesion | 1 -> 4 |" in text
    assert "### Held-out check" in text
    with open(out / "cases_window_start.csv") as f:
        assert len(list(csv.DictReader(f))) == 18  # as cases.csv, scored by the window-start models

    # a second invocation finds every run finished and trains or predicts nothing
    folders = prepare_workspace(cfg, log=lambda m: None)
    assert all(execute_run(spec)["skipped"] for spec in plan_runs(cfg, folders, "test"))

