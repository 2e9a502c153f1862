"""Issue 15: untrusted files load safely, folders stay where the user put them, small losses of data, CLI habits."""
import argparse
import json
import pickle
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnunet_ext.cascade.detector import (DetectorCheckpointError, DetectorConfig, SliceBoxDetector, load_detector,
                                         save_detector)
from nnunet_ext.cli import all_parsers, build_parser, main
from nnunet_ext.commands.arguments import resolve_device
from nnunet_ext.data import lesion_stats
from nnunet_ext.dataset_names import (DatasetNameError, check_dataset_id, check_dataset_name, dataset_folder_name,
                                      parse_dataset, resolve_dataset_name)
from nnunet_ext.safe_load import UnsafeCheckpointError, load_checkpoint
from nnunet_ext.training.short_schedule import TIMING_FILE, make_short_schedule_trainer


class _Payload:
    """Pickles as 'call open(marker, "w")': loading it with weights_only=False would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _crafted_checkpoint(tmp_path) -> tuple:
    marker = tmp_path / "code_ran"
    path = tmp_path / "detector.pt"
    torch.save({"state_dict": {}, "config": _Payload(marker)}, path)
    return path, marker


# ------------------------------------------------------------------------------------------- checkpoints
def test_crafted_checkpoint_runs_nothing_and_fails_in_one_line(tmp_path):
    path, marker = _crafted_checkpoint(tmp_path)
    with pytest.raises(DetectorCheckpointError) as caught:
        load_detector(path)
    assert not marker.exists()
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert message.endswith("Unsupported global: GLOBAL io.open was not an allowed global by default")
    # the same file would run its code under weights_only=False: the test's payload is live
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_crafted_checkpoint_through_the_cli_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    path, marker = _crafted_checkpoint(tmp_path)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    assert main(["detector", "predict", "-i", str(tmp_path), "--checkpoint", str(path)]) == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("\n") == 1 and err.startswith("nnunet-ext detector predict: error: not a detector checkpoint:")


def test_detector_checkpoint_round_trips_under_weights_only(tmp_path):
    torch.manual_seed(0)
    detector = SliceBoxDetector(2, DetectorConfig(view_size=16, width=4))
    summary = {"mean_held_out_iou": np.float64(0.75), "train_cases": ["a"]}  # numpy scalar goes through JSON
    path = save_detector(tmp_path / "d.pt", detector, dataset_name="Dataset012_Liver", plans="nnUNetPlans",
                         configuration="3d_fullres", region_labels=[np.int64(1), 2], summary=summary)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    loaded, meta = load_detector(path)
    assert meta["summary"]["mean_held_out_iou"] == 0.75 and type(meta["summary"]["mean_held_out_iou"]) is float
    assert meta["region_labels"] == [1, 2] and loaded.config.width == 4 and loaded.input_channels == 2
    for a, b in zip(detector.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("content, reason", [
    (None, "does not exist"),
    (b"not a torch file", "does not load as tensors and plain data"),
    ({"state_dict": {}}, "it lacks config, input_channels, dataset_name, plans, configuration"),
    ({"state_dict": {}, "config": {}, "input_channels": 1, "dataset_name": "../../etc", "plans": "p",
      "configuration": "c"}, "does not hold a valid detector: a dataset name looks like Dataset001_Name"),
])
def test_bad_detector_checkpoints_name_the_problem(tmp_path, content, reason):
    path = tmp_path / "d.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(DetectorCheckpointError, match=reason):
        load_detector(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_nnunet_style_checkpoint_with_numpy_scalars_loads(tmp_path):
    """nnU-Net logs numpy floats; the safe loader rebuilds those and nothing else."""
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"logging": {"mean_fg_dice": [np.float32(0.5), np.float64(0.25)]}, "init_args": {
        "device": torch.device("cpu")}, "network_weights": {"w": torch.ones(2)}}, path)
    loaded = load_checkpoint(path)
    assert [float(v) for v in loaded["logging"]["mean_fg_dice"]] == [0.5, 0.25]
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(_Payload(tmp_path / "marker2"), f)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(tmp_path / "plain.pkl")
    assert not (tmp_path / "marker2").exists()


# ------------------------------------------------------------------------------------- dataset ids, names
@pytest.mark.parametrize("value", [0, -1, 1000, 1500, "12a", "", None, True, 3.5])
def test_dataset_ids_outside_1_to_999_are_refused(value):
    with pytest.raises(DatasetNameError, match="dataset id must be"):
        check_dataset_id(value)


@pytest.mark.parametrize("name", ["x/../../y", "..", ".hidden", "a b", "", "-lead", "é", "a" * 101])
def test_dataset_names_that_could_leave_the_folder_are_refused(name):
    with pytest.raises(DatasetNameError, match="dataset name must be"):
        check_dataset_name(name)


def test_folder_names_and_parsing_by_hand(tmp_path, monkeypatch):
    assert dataset_folder_name(7, "Liver-2_b") == "Dataset007_Liver-2_b"
    assert check_dataset_id("999") == 999 and check_dataset_id(4.0) == 4
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
        (tmp_path / var).mkdir()
    (tmp_path / "nnUNet_raw" / "Dataset012_Liver").mkdir()
    (tmp_path / "nnUNet_raw" / "Dataset1500_Big").mkdir()  # nnU-Net's prefix lookup of id 150 would see it
    assert parse_dataset("12") == 12 and parse_dataset("Dataset012_Liver") == 12
    assert resolve_dataset_name(12) == "Dataset012_Liver"
    with pytest.raises(DatasetNameError, match="no dataset Dataset012_Lung; dataset id 12 is Dataset012_Liver"):
        parse_dataset("Dataset012_Lung")
    with pytest.raises(DatasetNameError, match="three-digit id"):
        parse_dataset("Dataset1500_Big")
    with pytest.raises(DatasetNameError, match="no folder has dataset id 13"):
        resolve_dataset_name("13")


def test_cascade_prepare_refuses_traversing_names_and_big_ids_before_writing(tmp_path):
    from nnunet_ext.cascade.prepare import prepare_stage2_dataset
    from nnunet_ext.data.phantoms import generate_dataset

    raw = tmp_path / "raw"
    generate_dataset(raw, 31, "Src", num_cases=1, shape=(8, 16, 16), spacing=(1, 1, 1))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DatasetNameError, match="dataset name must be"):
        prepare_stage2_dataset(raw, 31, 32, "x/../../y")
    with pytest.raises(DatasetNameError, match=r"1\.\.999"):
        prepare_stage2_dataset(raw, 31, 1500)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ------------------------------------------------------------------------------------------ numbers, CLI
@pytest.mark.parametrize("value", ["0", "-1", "1.5", "x"])
def test_plans_refuses_optimizer_states_below_one(value, capsys):
    assert main(["plans", "-d", "1", "-a", "ESUNet", "--optimizer-states", value]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nnunet-ext plans: error: argument --optimizer-states: ") and err.count("\n") == 1


def test_every_option_has_help_that_states_its_default():
    parser = build_parser()
    checked = 0
    for p in all_parsers(parser):
        exclusive_required = {a for g in p._mutually_exclusive_groups if g.required for a in g._group_actions}
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{p.prog} {action.option_strings or action.dest} has no help"
            if action.required or action in exclusive_required or action.default is None or action.default is False:
                continue  # nothing to state: required, one of a required choice, unset or a flag
            text = p._get_formatter()._get_help_string(action)
            assert "default" in text.lower(), f"{p.prog} {action.option_strings}: {text!r}"
            checked += 1
    assert checked > 50


def test_version_and_user_facing_top_level_help(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nnunet-ext 0.1.0 (nnU-Net 2.")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "export nnUNet_extTrainer=$(nnunet-ext trainers-dir)" in out and "nnUNetv2_train DATASET" in out
    assert "see `nnunet-ext" not in out  # one real summary per command, not a stub


def test_device_defaults_to_cuda_when_available_and_says_when_it_falls_back(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == "cuda" and capsys.readouterr().err == ""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == "cpu"
    assert "no CUDA device found, running on cpu" in capsys.readouterr().err
    assert resolve_device("mps") == "mps"


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(DatasetNameError):
        main(["--debug", "cascade", "predict", "-i", ".", "-o", "out", "--stage2", "x", "3d", "T", "--detector", "d"])


# ---------------------------------------------------------------------------------------- small data losses
def test_lesion_cache_writes_from_many_threads_never_collide(tmp_path):
    cache = tmp_path / "stats.json"
    errors = []

    def write(i):
        try:
            for _ in range(20):
                assert lesion_stats.write_cache(cache, {"writer": i, "pad": "x" * 10000})
        except Exception as error:  # noqa: BLE001 - collected for the assert below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(cache.read_text())["writer"] in range(8)
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]  # no temporary file left behind


def test_lesion_stats_in_a_read_only_folder_warn_and_still_return(tmp_path, monkeypatch):
    from nnunet_ext.data.phantoms import LESION
    from nnunet_ext.data.lesion_stats import LesionStats, load_or_compute_lesion_stats

    stats = LesionStats(LESION, 3, "image", {"a": 1})
    monkeypatch.setattr(lesion_stats, "compute_lesion_stats", lambda *a, **k: stats)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lesion_stats.tempfile, "mkstemp", refuse)
    with pytest.warns(UserWarning, match="lesion statistics are not cached: cannot write in .*Permission denied"):
        assert load_or_compute_lesion_stats(tmp_path / "data", LESION, 3) is stats
    assert list(tmp_path.iterdir()) == []


class _FakeTrainer:
    """What the short-schedule subclass touches of nnU-Net's trainer."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cpu")):
        self.device, self.local_rank, self.batch_size, self.current_epoch = device, 0, 2, 0
        self.output_folder = plans["folder"]
        self.configuration_manager = SimpleNamespace(patch_size=(8, 8))
        self.logger = SimpleNamespace(plot_progress_png=lambda folder: None)  # nnU-Net's progress.png

    def train_step(self, batch):
        return {"loss": 0.0}

    def on_epoch_end(self):
        self.current_epoch += 1

    def save_checkpoint(self, filename):  # the short schedule keeps its window-start model
        Path(filename).write_bytes(b"")

    def on_train_end(self):
        pass


def _run(cls, folder, start_epoch, epochs, iterations, clock, monkeypatch):
    """Epochs ``start_epoch`` .. ``epochs - 1``; each step takes the next value of ``clock`` seconds."""
    trainer = cls({"folder": str(folder)}, "2d", 0, {}, torch.device("cpu"))
    trainer.current_epoch = start_epoch
    ticks = iter(np.cumsum([[0.0, s] for s in clock]).tolist())
    monkeypatch.setattr("nnunet_ext.training.short_schedule.time.perf_counter", lambda: next(ticks))
    for _ in range(start_epoch, epochs):
        for _ in range(iterations):
            trainer.train_step({})
        trainer.on_epoch_end()
    return json.loads((folder / TIMING_FILE).read_text())


def test_step_timing_survives_an_interrupted_run_and_merges_on_resume(tmp_path, monkeypatch):
    cls = make_short_schedule_trainer(_FakeTrainer, 4, 2, None, "_FakeTrainer_ep4it2", __name__)
    # first process: epochs 0..2 (steps 1..6 s), killed before on_train_end: the file holds what it timed
    first = _run(cls, tmp_path, 0, 3, 2, [1, 2, 3, 4, 5, 6], monkeypatch)
    assert first["step_seconds"] == [1, 2, 3, 4, 5, 6] and first["step_epochs"] == [0, 0, 1, 1, 2, 2]
    # --c from the checkpoint of epoch 2: epoch 2 is redone (7, 8 s), epoch 3 is new (9, 10 s)
    merged = _run(cls, tmp_path, 2, 4, 2, [7, 8, 9, 10], monkeypatch)
    assert merged["step_seconds"] == [1, 2, 3, 4, 7, 8, 9, 10]
    assert merged["step_epochs"] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert merged["iterations_timed"] == 8 and merged["seconds_per_iteration_mean"] == 5.5
    assert merged["seconds_per_iteration_median"] == 7.5  # median of [3, 4, 7, 8, 9, 10] (first two skipped)
    # a fresh run (epoch 0) replaces the file
    fresh = _run(cls, tmp_path, 0, 1, 2, [1, 1], monkeypatch)
    assert fresh["step_seconds"] == [1, 1]


def test_detector_fold_outside_the_splits_is_named(tmp_path):
    from nnunet_ext.cascade.detector import held_out_split

    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ["a", "b"], "val": ["c"]}]))
    assert held_out_split(tmp_path, ["a", "b", "c"], 0) == (["a", "b"], ["c"])
    with pytest.raises(ValueError, match=r"fold 3 is not in .*splits_final.json \(folds 0..0\)"):
        held_out_split(tmp_path, ["a", "b", "c"], 3)
