"""One small benchmark through the real nnU-Net commands: 2 trainers, 1 epoch x 2 iterations, tiny phantom."""
import csv
import json

import pytest

from nnunet_ext.benchmark.runner import BenchmarkConfig, execute_run, plan_runs, prepare_workspace, run_benchmark


@pytest.mark.e2e
def test_small_benchmark_writes_every_section_and_resumes(tmp_path):
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=873, dataset_name="BenchE2E", trainers=("nnUNetTrainerDWD",),
                          folds=(0,), epochs=1, iterations=2, val_iterations=1, generate=True, num_train_cases=6,
                          shape=(16, 32, 32), executor="local", cost_repeats=2, cost_cases=1,
                          plots_overlay_cases=2, command_line="(test)")
    report = run_benchmark(cfg, log=lambda m: None)
    text = report.read_text()
    for section in ("## Protocol", "## Accuracy", "Per class", "## Other metrics", "## Cost, measured side by side",
                    "### Dice per case", "### Cost vs Dice", "### Learning curves", "### Example cases", "## Files"):
        assert section in text, section
    assert "## Failed runs" not in text
    assert "Too few cases to test" in text  # 6 cases, 5 folds: 2 validation cases in fold 0
    out = report.parent
    for png in ("dice_boxplot.png", "cost_vs_dice.png", "learning_curves.png"):
        assert (out / png).stat().st_size > 10_000, png
    assert list(out.glob("overlay_*.png"))
    with open(out / "cases.csv") as f:
        rows = list(csv.DictReader(f))
    # 2 trainers x 2 validation cases x (organ, lesion, mean)
    assert len(rows) == 12 and {r["trainer"] for r in rows} == {"nnUNetTrainer", "nnUNetTrainerDWD"}
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
    assert len(curves["nnUNetTrainer"]["train_losses"]) == 1  # one epoch

    # a second invocation finds every run finished and trains nothing
    folders = prepare_workspace(cfg, log=lambda m: None)
    assert all(execute_run(spec)["skipped"] for spec in plan_runs(cfg, folders, "validation"))
