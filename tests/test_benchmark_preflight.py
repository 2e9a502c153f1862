"""Benchmark: nothing in the system temp directory, the user's trainer folders kept, every name and fold checked
before anything is submitted, and per-run logs that the progress bar counts in epochs."""
import io
import json
import os
import tempfile
from pathlib import Path

import pytest

from nnunet_ext.benchmark import runner
from nnunet_ext.benchmark.runner import BenchmarkConfig, WorkspaceFolders, check_runs, execute_run, plan_runs
from nnunet_ext.workspace import trainers_dir
from nnunet_ext.progress import EpochCounter, RunProgress, log_name
from nnunet_ext.trainer_lookup import TrainerNotFound, check_trainers
from nnunet_ext.workspace import NnUNetWorkspace


def user_folders(tmp_path):
    """nnU-Net folders a user named freely (not <root>/nnUNet_raw ...), with one dataset's plans."""
    f = WorkspaceFolders(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), 0)
    pre = tmp_path / "pre" / "Dataset870_Fake"
    pre.mkdir(parents=True)
    (tmp_path / "raw" / "Dataset870_Fake").mkdir(parents=True)
    (pre / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}}))
    return f


def config(tmp_path, **kw):
    return BenchmarkConfig(**{"workdir": tmp_path / "work", "dataset_id": 870, "trainers": ("nnUNetTrainerDWD",),
                              "folds": (0,), "epochs": 2, "iterations": 3, "val_iterations": 1, **kw})


def test_user_named_folders_make_nothing_in_the_system_temp_directory(tmp_path, monkeypatch):
    tmp = tmp_path / "systemtmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    ws = user_folders(tmp_path).open()
    assert list(tmp.iterdir()) == []
    assert (ws.raw, ws.preprocessed, ws.results) == (tmp_path / "raw", tmp_path / "pre", tmp_path / "res")
    assert ws.env["nnUNet_raw"] == str(tmp_path / "raw") and ws.env["nnUNet_results"] == str(tmp_path / "res")
    assert not (tmp_path / "res").exists()  # the user's folders are used as they are, not made


def test_workspace_keeps_the_users_own_trainer_folders_after_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", os.pathsep.join(["/lab/trainers", trainers_dir()]))
    ws = NnUNetWorkspace(tmp_path / "ws", extra_trainer_dirs=[tmp_path / "extra"])
    assert ws.env["nnUNet_extTrainer"].split(os.pathsep) == [trainers_dir(), str(tmp_path / "extra"),
                                                              "/lab/trainers"]
    with pytest.raises(ValueError, match="either a workspace root or the three nnU-Net folders"):
        NnUNetWorkspace(tmp_path, folders=(tmp_path,) * 3)


def test_trainer_lookup_finds_ours_and_names_every_unknown_one():
    found = check_trainers(["nnUNetTrainer_ep2it3val1", "ESUNetDWDTrainer_ep1it1"])
    assert found["ESUNetDWDTrainer_ep1it1"].__name__ == "ESUNetDWDTrainer_ep1it1"
    with pytest.raises(TrainerNotFound, match=r"unknown trainers 'ESUNetDWDTrainerr_ep2it3', 'Nope'"):
        check_trainers(["ESUNetDWDTrainerr_ep2it3", "nnUNetTrainer", "Nope"])


def test_trainer_typo_fails_before_any_nnunet_command_or_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(NnUNetWorkspace, "run", lambda self, *cmd, **kw: calls.append(cmd))
    cfg = config(tmp_path, trainers=("ESUNetDWDTrainer", "ESUNetDWDTrainerr"), generate=True)
    with pytest.raises(TrainerNotFound, match="'ESUNetDWDTrainerr_ep2it3val1'"):
        runner.run_benchmark(cfg, log=lambda m: None)
    assert calls == [] and not (tmp_path / "work").exists()


@pytest.mark.parametrize("change, splits, message", [
    ({"folds": (0, 5)}, None, r"fold 5 does not exist: nnU-Net's default 5-fold split has folds 0-4"),
    ({"folds": (2,)}, 2, r"fold 2 does not exist: .*splits_final.json has folds 0-1"),
    ({"configuration": "2d"}, None, r"configuration '2d' is not in nnUNetPlans.json \(available: \['3d_fullres'\]\)"),
    ({"resenc": "M"}, None, r"nnUNetTrainer \[nnUNetResEncUNetMPlans\]: no plans file .*nnUNetResEncUNetMPlans.json"),
])
def test_plans_configuration_and_fold_are_checked_before_submitting(tmp_path, change, splits, message):
    f = user_folders(tmp_path)
    if splits:
        (Path(f.preprocessed) / "Dataset870_Fake" / "splits_final.json").write_text(
            json.dumps([{"train": [], "val": []}] * splits))
    with pytest.raises(ValueError, match=message):
        check_runs(plan_runs(config(tmp_path, **change), f, "validation"), f)
    last = (splits or 5) - 1
    check_runs(plan_runs(config(tmp_path, folds=(last, "all")), f, "validation"), f)  # these exist


def test_each_run_streams_nnunet_output_to_its_own_log(tmp_path, monkeypatch):
    def fake_run(self, *cmd, on_line=None, **kw):
        for line in ("2026-01-01 10:00:00.000000: Epoch 0", "2026-01-01 10:00:01.000000: Epoch time: 1.0 s"):
            on_line(line)
        raise runner.CommandFailed("stop here")
    monkeypatch.setattr(NnUNetWorkspace, "run", fake_run)
    f = user_folders(tmp_path)
    spec = plan_runs(config(tmp_path, resenc="M"), f, "validation")[2]
    assert spec.log_file == str((tmp_path / "work" / "logs" / "nnUNetTrainer_nnUNetResEncUNetMPlans_fold_0.log"))
    with pytest.raises(runner.CommandFailed):
        execute_run(spec)
    assert Path(spec.log_file).read_text().splitlines()[1].endswith("Epoch time: 1.0 s")


def test_epoch_counter_follows_nnunet_log_lines_including_a_resume():
    counter = EpochCounter()
    assert counter.finished == 0
    counter.feed("2026-01-01 10:00:00.000000: Epoch 0")
    assert counter.finished == 0           # epoch 0 running
    counter.feed("2026-01-01 10:00:03.000000: Epoch time: 3.1 s")
    assert counter.finished == 1
    counter.feed("2026-01-01 11:00:00.000000: Epoch 7")   # resumed with --c from the epoch-7 checkpoint
    assert counter.finished == 7
    counter.feed("train_loss -0.1")        # other lines change nothing
    counter.feed("2026-01-01 11:00:01.000000: Epoch time: 1.0 s")
    assert counter.finished == 8


def test_progress_bar_counts_finished_epochs_over_all_runs(tmp_path):
    logs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}
    stream = io.StringIO()
    progress = RunProgress({"a": 3, "b": 2}, logs, stream=stream, enabled=True)
    assert progress.bar.total == 5
    logs["a"].write_text("x: Epoch 0\nx: Epoch time: 1 s\nx: Epoch 1\nx: Epo")  # the last line is half written
    progress.poll()
    assert progress.bar.n == 1 and "a epoch 2/3" in stream.getvalue()
    with open(logs["a"], "a") as handle:
        handle.write("ch time: 1 s\n")
    progress.poll()
    assert progress.bar.n == 2
    progress.done("b", "  b: FAILED")      # a failed run counts as done: the bar still reaches its total
    assert progress.bar.n == 4 and progress.finished_runs == 1 and "  b: FAILED" in stream.getvalue()
    progress.close()


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path):
    printed = []
    progress = RunProgress({"a": 3}, {"a": tmp_path / "a.log"}, log=printed.append, stream=io.StringIO())
    assert progress.bar is None
    progress.poll()
    progress.done("a", "  a: done (4 cases)")
    assert printed == ["  a: done (4 cases)"]
    assert log_name("nnUNetTrainer [nnUNetResEncUNetMPlans]") == "nnUNetTrainer_nnUNetResEncUNetMPlans"


def test_submit_all_polls_while_jobs_run():
    class Job:
        def __init__(self, polls):
            self.polls = polls

        def done(self):
            self.polls -= 1
            return self.polls < 0

        def result(self):
            return "ok"

    class Executor:
        def submit(self, fn, item):
            return Job(item)

    polls = []
    outcomes = runner.submit_all(Executor(), None, [2, 0], 2, on_poll=lambda: polls.append(1), poll_seconds=0)
    assert [o.result for o in outcomes] == ["ok", "ok"] and len(polls) == 3  # job 2 is done on its 3rd check
