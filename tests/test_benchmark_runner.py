"""Benchmark runner: plan of runs, resumability from nnU-Net's own markers, submitit fan-out, presets, tables."""
import json
import math
import os
from pathlib import Path

import pytest

from nnunet_ext.benchmark import runner
from nnunet_ext.benchmark.ablations import ABLATIONS, ES_UNET_TABLE5, get_ablation
from nnunet_ext.benchmark import report
from nnunet_ext.benchmark.report import ablation_section, accuracy_section, dice_tests, verdict_section
from nnunet_ext.benchmark.runner import (CASES_FILE, VANILLA, Arm, BenchmarkConfig, WorkspaceFolders, execute_run,
                                         is_finished, plan_runs, submit_all)
from nnunet_ext.workspace import NnUNetWorkspace


def folders(tmp_path):
    root = tmp_path / "nnunet"
    f = WorkspaceFolders(str(root / "nnUNet_raw"), str(root / "nnUNet_preprocessed"), str(root / "nnUNet_results"), 0)
    (root / "nnUNet_raw" / "Dataset870_Fake").mkdir(parents=True)
    return f


def config(tmp_path, **kw):
    return BenchmarkConfig(workdir=tmp_path, dataset_id=870, trainers=("nnUNetTrainerDWD",), folds=(0, 1),
                           epochs=2, iterations=3, val_iterations=1, **kw)


def test_vanilla_is_always_first_and_resenc_is_its_own_arm(tmp_path):
    cfg = config(tmp_path, resenc="M")
    cfg.trainers = ("nnUNetTrainerDWD", VANILLA, "nnUNetTrainerDWD")
    arms = cfg.arms()
    assert [a.label for a in arms] == [VANILLA, "nnUNetTrainerDWD", "nnUNetTrainer [nnUNetResEncUNetMPlans]"]
    assert arms[0].is_vanilla and not arms[2].is_vanilla
    with pytest.raises(ValueError, match="ResEnc preset"):
        config(tmp_path, resenc="S").arms()


def test_plan_uses_one_short_schedule_for_every_trainer_and_fold(tmp_path):
    specs = plan_runs(config(tmp_path), folders(tmp_path), "validation")
    assert [(s.arm.trainer, s.fold, s.schedule_name) for s in specs] == [
        (VANILLA, 0, "nnUNetTrainer_ep2it3val1"), (VANILLA, 1, "nnUNetTrainer_ep2it3val1"),
        ("nnUNetTrainerDWD", 0, "nnUNetTrainerDWD_ep2it3val1"), ("nnUNetTrainerDWD", 1, "nnUNetTrainerDWD_ep2it3val1")]


@pytest.mark.parametrize("change, message", [(dict(eval_set="train"), "eval set"), (dict(executor="k8s"), "executor"),
                                             (dict(device="tpu"), "device"), (dict(epochs=0), ">= 1"),
                                             (dict(folds=(-1,)), "fold")])
def test_bad_config_names_the_problem(tmp_path, change, message):
    cfg = config(tmp_path)
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def fake_finished(spec, f, with_cases=True):
    """The markers nnU-Net leaves after training and validation, without training anything."""
    fold = spec.fold_folder(f.open())
    (fold / "validation").mkdir(parents=True)
    (fold / "checkpoint_final.pth").write_bytes(b"")
    (fold / "validation" / "summary.json").write_text("{}")
    if with_cases:
        (fold / CASES_FILE).write_text(json.dumps([{"case": "a", "class": "mean", "dice": 0.5}]))
    return fold


class CommandLog(Exception):
    pass


@pytest.fixture
def no_nnunet(monkeypatch):
    """Record nnU-Net commands instead of running them (raising stops the job right there)."""
    calls = []

    def run(self, *cmd, **kw):
        calls.append([str(c) for c in cmd])
        raise CommandLog(" ".join(map(str, cmd)))
    monkeypatch.setattr(NnUNetWorkspace, "run", run)
    return calls


def test_finished_run_is_skipped_without_any_nnunet_command(tmp_path, no_nnunet):
    f = folders(tmp_path)
    spec = plan_runs(config(tmp_path), f, "validation")[0]
    assert not is_finished(spec, f.open())
    fake_finished(spec, f)
    assert is_finished(spec, f.open())
    result = execute_run(spec)
    assert result["skipped"] and result["cases"] == 1 and no_nnunet == []


def test_checkpoint_without_predictions_is_not_finished(tmp_path, no_nnunet):
    f = folders(tmp_path)
    spec = plan_runs(config(tmp_path), f, "validation")[0]
    fold = fake_finished(spec, f)
    (fold / "validation" / "summary.json").unlink()
    assert not is_finished(spec, f.open())
    with pytest.raises(CommandLog):
        execute_run(spec)  # trained but not validated: only nnU-Net's validation is run
    assert no_nnunet[0][:2] == ["nnUNetv2_train", "870"] and "--val" in no_nnunet[0] and "--c" not in no_nnunet[0]


def test_interrupted_training_continues_with_c(tmp_path, no_nnunet):
    f = folders(tmp_path)
    spec = plan_runs(config(tmp_path, device="cpu"), f, "validation")[2]
    fold = spec.fold_folder(f.open())
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pth").write_bytes(b"")
    with pytest.raises(CommandLog):
        execute_run(spec)
    cmd = no_nnunet[0]
    assert "--c" in cmd and cmd[cmd.index("-tr") + 1] == "nnUNetTrainerDWD_ep2it3val1"
    assert cmd[len(cmd) - 1 - cmd[::-1].index("-device") + 1] == "cpu"  # the last -device wins in argparse


def test_submitit_local_executor_runs_jobs_in_subprocesses_one_at_a_time(tmp_path):
    executor = runner.make_executor(config(tmp_path, executor="local", timeout_min=5), tmp_path / "submitit")
    order = []
    outcomes = submit_all(executor, lambda x: (os.getpid(), 10 // x), [1, 5, 0], max_parallel=1,
                          on_done=lambda o: order.append(o.item))
    assert order == [1, 5, 0]  # one at a time, in submission order
    pids = {o.result[0] for o in outcomes[:2]}
    assert os.getpid() not in pids and len(pids) == 2  # a fresh process per job
    assert [o.result[1] for o in outcomes[:2]] == [10, 2]
    assert outcomes[2].result is None and "ZeroDivisionError" in outcomes[2].error  # a failure stays in its job


def test_slurm_options_are_passed_through(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"  # submitit checks that srun exists before it accepts parameters
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    cfg = config(tmp_path, executor="slurm", slurm_partition="gpu", slurm_account="lab", mem_gb=32,
                 slurm_additional={"constraint": "a100"}, device="cuda", cpus_per_run=8)
    params = runner.make_executor(cfg, tmp_path / "submitit")._executor.parameters
    assert params["partition"] == "gpu" and params["account"] == "lab" and params["mem"] == "32GB"
    assert params["cpus_per_task"] == 8 and params["gpus_per_node"] == 1
    assert params["additional_parameters"] == {"constraint": "a100"}


def test_default_parallelism_on_two_cores_is_one(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert runner.default_parallel(config(tmp_path)) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert runner.default_parallel(config(tmp_path, cpus_per_run=4)) == 4
    with pytest.raises(ValueError, match="max parallel"):
        runner.default_parallel(config(tmp_path, max_parallel=0))


def test_table5_preset_has_the_papers_shape():
    t5 = get_ablation("es_unet_table5")
    assert len(t5.rows) == 12 and len({r.group for r in t5.rows}) == 3
    full = next(r for r in t5.rows if r.trainer == "ESUNetDWDRSSTrainer")
    assert t5.group_baseline(full).trainer == "ESUNetFocalDiceTrainer"
    assert dict(full.settings) == {"RSS": "✓", "DWD loss": "✓"}
    assert get_ablation("es_unet_table4").trainers() == [
        "ESUNetSkipBaseFocalDiceTrainer", "ESUNetSkipEncOnlyFocalDiceTrainer", "ESUNetSkipDecOnlyFocalDiceTrainer",
        "ESUNetFocalDiceTrainer"]
    with pytest.raises(ValueError, match="unknown ablation"):
        get_ablation("table99")


def test_every_preset_trainer_exists(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_ext.workspace import trainers_dir

    monkeypatch.setenv("nnUNet_extTrainer", trainers_dir())
    names = sorted({t for a in ABLATIONS.values() for t in a.trainers()})
    missing = [n for n in names if recursive_find_trainer_class_by_name(n) is None]
    assert missing == []


def rows_for(scores_by_trainer):
    nan = {m: math.nan for m in ("hd95", "assd", "nsd", "rvd", "precision", "recall")}
    return [{"trainer": t, "fold": 0, "case": f"c{i}", "class": "mean", "dice": d, "iou": d / (2 - d), **nan}
            for t, ds in scores_by_trainer.items() for i, d in enumerate(ds)]


def test_ablation_table_deltas_against_the_group_base_row():
    base = [0.70, 0.72, 0.74, 0.76, 0.78, 0.80]
    rows = rows_for({"nnUNetTrainerFocalDice": base, "nnUNetTrainerFocalDiceRSS": [d + 0.01 for d in base],
                     "nnUNetTrainerDWD": [d - 0.02 for d in base], "nnUNetTrainerDWDRSS": base})
    text = "\n".join(ablation_section(ES_UNET_TABLE5, rows))
    line = next(l for l in text.splitlines() if "| nnUNetTrainerFocalDiceRSS |" in l)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "76.00" and cells[7] == "+1.00"  # DSC 75 + 1 (%), delta vs nnUNetTrainerFocalDice
    assert cells[9] == f"{2 / 64:.3g}"  # six positive pairs: the exact Wilcoxon p
    dwd = next(l for l in text.splitlines() if "| nnUNetTrainerDWD |" in l)
    assert "| -2.00 |" in dwd


def test_report_says_plainly_when_nothing_is_significant_or_testable():
    few = rows_for({VANILLA: [0.5, 0.6], "X": [0.7, 0.8]})
    assert "Too few cases to test" in "\n".join(accuracy_section(few, [VANILLA, "X"], []))
    same = rows_for({VANILLA: [0.5, 0.6, 0.7, 0.8, 0.9, 0.4], "X": [0.51, 0.59, 0.71, 0.79, 0.91, 0.39]})
    text = "\n".join(accuracy_section(same, [VANILLA, "X"], []))
    assert "No trainer differs significantly" in text
    assert "not significant" in text


def test_report_only_trains_nothing_and_lists_unfinished_runs(tmp_path, no_nnunet, monkeypatch):
    cfg = config(tmp_path, report_only=True)
    with pytest.raises(ValueError, match="no cost.json"):
        runner.run_benchmark(cfg, log=lambda _: None)
    f = runner.existing_folders(cfg)
    (Path(f.raw) / "Dataset870_Fake").mkdir(parents=True)
    specs = plan_runs(cfg, f, "validation")
    fake_finished(specs[0], f)
    (tmp_path / "cost.json").write_text(json.dumps({VANILLA: {"parameters": 7}}))
    seen = {}

    def write_report(cfg, specs, folders, costs, failures, out_dir, resenc_choice=None):
        seen.update(costs=costs, failures=failures, out_dir=out_dir, runs=len(specs))
        return out_dir / "report.md"
    monkeypatch.setattr("nnunet_ext.benchmark.report.write_report", write_report)
    assert runner.run_benchmark(cfg, log=lambda _: None) == tmp_path / "report" / "report.md"
    assert no_nnunet == [] and seen["costs"] == {VANILLA: {"parameters": 7}} and seen["runs"] == 4
    assert sorted(seen["failures"]) == [f"{VANILLA} fold 1", "nnUNetTrainerDWD fold 0", "nnUNetTrainerDWD fold 1"]


def test_verdict_says_when_holm_correction_removes_a_raw_difference():
    base = [0.70, 0.72, 0.74, 0.76, 0.78, 0.80]
    three = rows_for({VANILLA: base, **{f"X{i}": [d + 0.01 for d in base] for i in range(3)}})
    text = "\n".join(accuracy_section(three, [VANILLA, "X0", "X1", "X2"], []))
    # six positive pairs: exact two-sided Wilcoxon p = 2/64 each; Holm over 3 equal p values: 3 * 2/64
    line = next(l for l in text.splitlines() if "| X0 |" in l)
    assert line.rstrip(" |").endswith(f"significantly better (p = {2 / 64:.3g}); not after Holm (p = {3 * 2 / 64:.3g})")
    assert "After Holm correction for the 3 comparisons: **none is significant**." in text
    one = rows_for({VANILLA: base, "X0": [d + 0.01 for d in base]})  # one comparison: Holm p = raw p
    line = next(l for l in "\n".join(accuracy_section(one, [VANILLA, "X0"], [])).splitlines() if "| X0 |" in l)
    assert "not after Holm" not in line and "significantly better" in line


def test_verdict_and_accuracy_sections_read_one_dice_test_per_arm(monkeypatch):
    base = [0.70, 0.72, 0.74, 0.76, 0.78, 0.80]
    rows = rows_for({VANILLA: base, "X0": [d + 0.01 for d in base], "X1": [d + 0.01 for d in base]})
    labels = [VANILLA, "X0", "X1", "Y"]  # Y has no scored case: out of the tests and of Holm's count
    tests, holm = dice_tests(rows, report.scored_labels(rows, labels))
    # six positive pairs each: exact Wilcoxon p = 2/64; Holm over the 2 scored arms' equal p values: 2 * 2/64
    assert list(tests) == ["X0", "X1"] and holm == pytest.approx({"X0": 2 * 2 / 64, "X1": 2 * 2 / 64})
    other_metrics = report.paired_wilcoxon

    def no_second_dice_test(*args, **kwargs):
        assert "higher_is_better" in kwargs, "the Dice test was computed again"  # the other metrics pass it
        return other_metrics(*args, **kwargs)
    monkeypatch.setattr(report, "paired_wilcoxon", no_second_dice_test)
    verdict = "\n".join(verdict_section(rows, labels, {}, (tests, holm)))
    assert f"| {2 * 2 / 64:.3g} | **no detectable difference** | 0/0 |" in verdict
    accuracy = accuracy_section(rows, [VANILLA, "X0", "X1"], [], (tests, holm))
    assert any(f"not after Holm (p = {2 * 2 / 64:.3g})" in line for line in accuracy)


def test_train_time_comes_from_the_cost_job_when_every_arm_has_it(tmp_path, monkeypatch):
    """The runs' own step timings depend on which runs shared the cores with them (study A's batch-Dice run: 1.99x
    for the same network); the cost job times each trainer alone. Older cost.json files fall back to the runs'."""
    runs = {VANILLA: [0.2, 0.3, 0.25], "nnUNetTrainerDWD": [0.5]}
    monkeypatch.setattr(report, "step_seconds", lambda specs, folders: runs)
    costs = {VANILLA: {"train_step_seconds": 0.1}, "nnUNetTrainerDWD": {"train_step_seconds": 0.12}}
    timing, source = report.train_step_seconds(costs, [], None)
    assert timing == {VANILLA: 0.1, "nnUNetTrainerDWD": 0.12} and source.startswith("median of the trainer's own")
    costs["nnUNetTrainerDWD"] = {"train_step_seconds": None}   # one arm from before the cost job timed the step
    timing, source = report.train_step_seconds(costs, [], None)
    assert timing == {VANILLA: 0.25, "nnUNetTrainerDWD": 0.5} and source.startswith("median of the runs' own")
    costs["nnUNetTrainerDWD"] = {"train_step_seconds": None, "train_step_error": "FileNotFoundError: no stage 1"}
    assert report.train_step_seconds(costs, [], None)[1].endswith(
        "kept; the cost job could not time nnUNetTrainerDWD's step (FileNotFoundError: no stage 1))")


def test_a_trainer_whose_step_cannot_be_timed_keeps_its_other_costs(monkeypatch):
    import nnunet_ext.trainer_lookup as lookup
    from nnunet_ext.benchmark.cost_job import CostRequest, train_step_timing

    def no_previous_stage(*args, **kwargs):
        raise FileNotFoundError("folder with segmentations from the previous stage not found\nmore")

    monkeypatch.setattr(lookup, "initialized_trainer", no_previous_stage)
    steps, error = train_step_timing(CostRequest("/p", "nnUNetPlans", "3d_cascade_fullres", "nnUNetTrainer"), "cpu")
    assert steps == [] and error == "FileNotFoundError: folder with segmentations from the previous stage not found"


def test_a_false_positive_where_the_other_arm_is_rightly_empty_counts_against_it():
    """nnU-Net's Dice is NaN where a class is neither there nor predicted. Dropping such a case from the pairing
    (as long as the other arm scores 0 there) hid study B's amplification's false positives on lesion-free cases."""
    nan = math.nan
    def row(t, case, cls, d):
        return {"trainer": t, "fold": 0, "case": case, "class": cls, "dice": d, "iou": d}
    rows = [  # two classes; c0: both arms find both; c1: no lesion, X predicts one; c2: nothing anywhere
        row(VANILLA, "c0", "organ", 0.9), row(VANILLA, "c0", "lesion", 0.8), row(VANILLA, "c0", "mean", 0.85),
        row("X", "c0", "organ", 0.7), row("X", "c0", "lesion", 0.6), row("X", "c0", "mean", 0.65),
        row(VANILLA, "c1", "organ", 0.9), row(VANILLA, "c1", "lesion", nan), row(VANILLA, "c1", "mean", 0.9),
        row("X", "c1", "organ", 0.9), row("X", "c1", "lesion", 0.0), row("X", "c1", "mean", 0.45),
        row(VANILLA, "c2", "organ", nan), row(VANILLA, "c2", "lesion", nan), row(VANILLA, "c2", "mean", nan),
        row("X", "c2", "organ", nan), row("X", "c2", "lesion", nan), row("X", "c2", "mean", nan)]
    x, v = report.paired(rows, "X", VANILLA, "lesion", "dice")
    assert x[:2] == [0.6, 0.0] and v[:2] == [0.8, 1.0] and math.isnan(x[2]) and math.isnan(v[2])
    x, v = report.paired(rows, "X", VANILLA, "mean", "iou")
    # c1's mean: X (0.9 + 0) / 2 = 0.45 against vanilla (0.9 + 1) / 2 = 0.95, not 0.45 against 0.9
    assert x[:2] == pytest.approx([0.65, 0.45]) and v[:2] == pytest.approx([0.85, 0.95]) and math.isnan(x[2])
    hd = [dict(r, hd95=r["dice"]) for r in rows]  # other metrics keep the plain pairing, NaN included
    x, v = report.paired(hd, "X", VANILLA, "lesion", "hd95")
    assert x[:2] == [0.6, 0.0] and math.isnan(v[1])
