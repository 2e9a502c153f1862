"""Study commands without running them (study C trains for over an hour, a toy run for ~45 min on 2 busy cores:
docs/benchmarks/study_c_two_stage; study A's batch-Dice remedy shares study A's runs): a stand-in `nnunet-ext`
records the arguments the script passes, and the benchmark's own parser, config checks and trainer lookup read
them."""
import os
import subprocess
from pathlib import Path

import pytest

from nnunet_ext.benchmark.runner import WorkspaceFolders, check_trainer_names
from nnunet_ext.cascade.compare import PIPELINES, benchmark_pipeline_job
from nnunet_ext.cli import build_parser
from nnunet_ext.commands.benchmark import config_from_args
from nnunet_ext.trainer_lookup import check_trainers

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "scripts" / "studies"
SCRIPT = STUDIES / "study_c_two_stage.sh"
RECORD_ARGS = '#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$ARGS_OUT"\n'


def script_argv(tmp_path, size: str, script: Path = SCRIPT):
    """The argument list a study script (default study_c_two_stage.sh) hands to nnunet-ext at this STUDY_SIZE."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nnunet-ext").write_text(RECORD_ARGS)
    (bin_dir / "nnunet-ext").chmod(0o755)
    out = tmp_path / "argv"
    env = dict(os.environ, BIN=str(bin_dir), STUDY_SIZE=size, ARGS_OUT=str(out))
    proc = subprocess.run(["bash", str(script), str(tmp_path / "work")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out.read_text().split("\0")[:-1]


def settings(cfg, keys) -> dict:
    """The named fields of a benchmark config, to compare two studies' shared settings."""
    return {k: getattr(cfg, k) for k in keys}


def study_config(tmp_path, script: str):
    """The benchmark config a study script's full-size command builds."""
    (tmp_path / script).mkdir()
    argv = script_argv(tmp_path / script, "full", STUDIES / script)
    return config_from_args(build_parser().parse_args(argv), argv=argv[1:])


@pytest.mark.parametrize("size", ["full", "tiny"])
def test_study_c_command_passes_the_benchmark_checks(tmp_path, size):
    argv = script_argv(tmp_path, size)
    assert argv[0] == "benchmark"
    cfg = config_from_args(build_parser().parse_args(argv), argv=argv[1:])
    cfg.validate()
    check_trainer_names(cfg)  # every arm's short-schedule trainer, as nnUNetv2_train looks it up
    job = benchmark_pipeline_job(cfg, WorkspaceFolders("/r", "/p", "/s", 0), "test", tmp_path)
    check_trainers([job.settings.trainer, job.settings.segmentor_trainer])
    # the pipelines train on the arms' schedule: single_stage is the vanilla arm's own fold-0 model
    schedule = f"_ep{cfg.epochs}it{cfg.iterations}val{cfg.val_iterations}"
    assert (job.settings.trainer, job.settings.segmentor_trainer) == \
        ("nnUNetTrainer" + schedule, "StageSkippingSegmentorTrainer" + schedule)
    assert [a.trainer for a in cfg.arms()] == ["nnUNetTrainer", "ELANResMSCAUNetTrainer"]
    assert (cfg.task, cfg.configuration, cfg.generate, job.settings.pipelines) == \
        ("organ_lesion", "3d_fullres", True, PIPELINES)
    assert job.settings.nsd_tolerance_mm == cfg.nsd_tolerance_mm
    assert (cfg.shape, cfg.spacing) == ((16, 32, 32), (8.0, 3.0, 3.0))  # both sizes: the README's budget grid
    if size == "full":
        assert cfg.folds == (0, 1, 2) and cfg.report_dir == Path("docs/benchmarks/study_c_two_stage")
        assert (cfg.num_train_cases, cfg.num_test_cases, cfg.epochs, cfg.iterations) == (60, 50, 70, 10)  # README
    else:
        assert cfg.folds == (0,) and (cfg.epochs, cfg.iterations) == (1, 2) and cfg.num_test_cases == 3
        assert cfg.report_dir == tmp_path / "work" / "report"


def test_study_c_refuses_an_unknown_size(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], env=dict(os.environ, STUDY_SIZE="huge"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "STUDY_SIZE must be full or tiny, got 'huge'" in proc.stderr


def test_study_a_batch_dice_trains_on_study_a_s_data_and_schedule(tmp_path):
    """Its per-case arms are study A's own runs when its workdir starts as a copy of study A's (the script's
    header): that needs the same dataset id, task, cases, seed, folds and schedule name."""
    study_a, remedy = study_config(tmp_path, "study_a_es_unet.sh"), study_config(tmp_path, "study_a_batch_dice.sh")
    remedy.validate()
    check_trainer_names(remedy)
    shared = ("dataset_id", "task", "configuration", "num_train_cases", "num_test_cases", "seed", "shape", "spacing",
              "folds", "epochs", "iterations", "val_iterations", "eval_set")
    assert settings(remedy, shared) == settings(study_a, shared)
    assert [a.trainer for a in remedy.arms()] == ["nnUNetTrainer", "UNet3PlusTrainer", "ESUNetTrainer",
                                                  "nnUNetTrainerBatchDice", "UNet3PlusBatchDiceTrainer",
                                                  "ESUNetBatchDiceTrainer"]
    assert remedy.report_dir == Path("docs/benchmarks/study_a_es_unet/batch_dice") and remedy.resenc is None


def test_study_b_converged_reruns_study_b_s_task_longer_with_the_learning_arms(tmp_path):
    """The converged re-run compares with study B's first run: same data, folds and evaluation; a longer schedule
    and more validation iterations; three of the first run's arms (the budget: the script's header)."""
    first = study_config(tmp_path, "study_b_small_targets.sh")
    converged = study_config(tmp_path, "study_b_converged.sh")
    converged.validate()
    check_trainer_names(converged)
    shared = ("dataset_id", "task", "configuration", "num_train_cases", "num_test_cases", "seed", "shape", "spacing",
              "folds", "eval_set")
    assert settings(converged, shared) == settings(first, shared)
    assert (converged.epochs, converged.iterations, converged.val_iterations) == (160, 10, 20)
    assert (first.epochs, first.iterations, first.val_iterations) == (80, 10, 3)
    assert [a.trainer for a in converged.arms()] == \
        ["nnUNetTrainer", "nnUNetTrainerAmplify", "nnUNetTrainerDWD"]
    assert set(a.trainer for a in converged.arms()) < set(a.trainer for a in first.arms())
    assert converged.report_dir == Path("docs/benchmarks/study_b_small_targets/converged")


def test_study_b_held_out_check_is_the_converged_rerun_plus_test_cases(tmp_path):
    """The converged re-run's data, folds, schedule and arms, evaluated on 50 added test cases instead of the
    validation cases; long enough to keep a window-start model."""
    from nnunet_ext.benchmark.convergence import window_checkpoint_name

    check = study_config(tmp_path, "study_b_held_out_check.sh")
    converged = study_config(tmp_path, "study_b_converged.sh")
    check.validate()
    shared = ("dataset_id", "task", "configuration", "num_train_cases", "seed", "shape", "spacing", "folds",
              "epochs", "iterations", "val_iterations")
    assert settings(check, shared) == settings(converged, shared)
    assert [a.trainer for a in check.arms()] == [a.trainer for a in converged.arms()]
    # eval set "auto": the test cases where the generated dataset has them (labelsTs), else the validation cases
    assert (converged.num_test_cases, check.num_test_cases, check.eval_set) == (0, 50, "auto")
    assert window_checkpoint_name(check.epochs) == "checkpoint_ep128.pth"
    assert check.report_dir == Path("docs/benchmarks/study_b_small_targets/held_out_check")


def test_study_b_vanilla_length_is_the_held_out_check_for_vanilla_at_twice_the_epochs(tmp_path):
    from nnunet_ext.benchmark.convergence import window_checkpoint_name

    probe = study_config(tmp_path, "study_b_vanilla_length.sh")
    check = study_config(tmp_path, "study_b_held_out_check.sh")
    probe.validate()
    shared = ("dataset_id", "task", "configuration", "num_train_cases", "num_test_cases", "seed", "shape", "spacing",
              "folds", "iterations", "val_iterations", "eval_set")
    assert settings(probe, shared) == settings(check, shared)
    assert (probe.epochs, check.epochs) == (320, 160)
    assert [a.trainer for a in probe.arms()] == ["nnUNetTrainer"]
    assert window_checkpoint_name(probe.epochs) == "checkpoint_ep256.pth"
    assert probe.report_dir == Path("docs/benchmarks/study_b_small_targets/held_out_check/vanilla_ep320")


def test_study_b_ep320_is_the_length_probe_with_study_b_s_arms_at_vanilla_s_cost(tmp_path):
    """The same runs as the length probe for vanilla (so a copy of its workdir resumes them), plus the held-out
    check's other arms and study B's other losses (the arms at vanilla's cost per step)."""
    long = study_config(tmp_path, "study_b_ep320.sh")
    probe = study_config(tmp_path, "study_b_vanilla_length.sh")
    check = study_config(tmp_path, "study_b_held_out_check.sh")
    long.validate()
    check_trainer_names(long)
    shared = ("dataset_id", "task", "configuration", "num_train_cases", "num_test_cases", "seed", "shape", "spacing",
              "folds", "epochs", "iterations", "val_iterations", "eval_set")
    assert settings(long, shared) == settings(probe, shared)
    first = study_config(tmp_path, "study_b_small_targets.sh")
    assert [a.trainer for a in long.arms()][:3] == [a.trainer for a in check.arms()]
    assert [a.trainer for a in long.arms()][3:] == ["nnUNetTrainerPhaseLoss", "nnUNetTrainerDynamicLoss"]
    assert set(a.trainer for a in long.arms()) < set(a.trainer for a in first.arms())
    assert long.arms()[0].label == probe.arms()[0].label
    assert long.report_dir == Path("docs/benchmarks/study_b_small_targets/held_out_check/ep320")


def test_study_a_held_out_check_runs_vanilla_on_study_a_s_test_cases_at_two_lengths(tmp_path):
    """Two benchmark calls, each in its own workdir: study A's data, test cases and schedule, then 4x the epochs;
    both long enough to keep a window-start model (the held-out check)."""
    from nnunet_ext.benchmark.convergence import window_checkpoint_name

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nnunet-ext").write_text(RECORD_ARGS.replace('> "$ARGS_OUT"', '>> "$ARGS_OUT"') +
                                        'printf "\\n" >> "$ARGS_OUT"\n')  # one line per call
    (bin_dir / "nnunet-ext").chmod(0o755)
    env = dict(os.environ, BIN=str(bin_dir), STUDY_SIZE="full", ARGS_OUT=str(tmp_path / "argv"))
    proc = subprocess.run(["bash", str(STUDIES / "study_a_held_out_check.sh"), str(tmp_path / "work")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = [line.split("\0")[:-1] for line in (tmp_path / "argv").read_text().splitlines()]
    configs = [config_from_args(build_parser().parse_args(argv), argv=argv[1:]) for argv in calls]
    study_a = study_config(tmp_path, "study_a_es_unet.sh")
    shared = ("dataset_id", "task", "configuration", "num_train_cases", "num_test_cases", "seed", "shape", "spacing",
              "iterations", "val_iterations")
    for cfg in configs:
        cfg.validate()
        assert settings(cfg, shared) == settings(study_a, shared)
        assert [a.trainer for a in cfg.arms()] == ["nnUNetTrainer"]
        assert window_checkpoint_name(cfg.epochs) is not None
    assert [(c.epochs, c.folds, str(c.workdir)) for c in configs] == [
        (80, (0, 1, 2), str(tmp_path / "work" / "ep80")), (320, (0, 1), str(tmp_path / "work" / "ep320"))]
    assert [c.report_dir for c in configs] == [Path("docs/benchmarks/study_a_es_unet/held_out_check/ep80"),
                                               Path("docs/benchmarks/study_a_es_unet/held_out_check/ep320")]


def test_study_c_held_out_check_runs_study_c_s_arms_without_the_pipelines(tmp_path):
    """Study C's data, test cases, plans, schedule and arms, long enough to keep a window-start model."""
    from nnunet_ext.benchmark.convergence import window_checkpoint_name

    check = study_config(tmp_path, "study_c_held_out_check.sh")
    study_c = study_config(tmp_path, "study_c_two_stage.sh")
    check.validate()
    shared = ("dataset_id", "task", "configuration", "num_train_cases", "num_test_cases", "seed", "shape", "spacing",
              "folds", "epochs", "iterations", "val_iterations")
    assert settings(check, shared) == settings(study_c, shared)
    assert [a.trainer for a in study_c.arms()] == ["nnUNetTrainer", "ELANResMSCAUNetTrainer"]
    assert [a.trainer for a in check.arms()] == [a.trainer for a in study_c.arms()] + ["nnUNetTrainerBatchDice"]
    assert study_c.pipelines and not check.pipelines
    assert window_checkpoint_name(check.epochs) == "checkpoint_ep56.pth"
    assert check.report_dir == Path("docs/benchmarks/study_c_two_stage/held_out_check")
