"""The plugin's plumbing: trainer discovery, short schedules, catalogue, CLI, base hooks."""
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_ext import registry
from nnunet_ext.workspace import env_with_trainers, trainers_dir
from nnunet_ext.training.base import nnunet_deep_supervision_weights
from nnunet_ext.training.short_schedule import (SHORT_NAME, STOP_ENV, ShortSchedule, find_base_trainer,
                                                 make_short_schedule_trainer, short_schedule_name)

REPO = Path(__file__).resolve().parents[1]


def test_trainers_dir_is_the_repository_folder_and_holds_only_trainer_modules():
    assert Path(trainers_dir()) == REPO / "trainers"
    for module in Path(trainers_dir()).glob("*.py"):
        assert module.name == "__init__.py" or module.name.endswith("_trainers.py"), module.name


def test_env_with_trainers_prepends_once_and_keeps_user_entries():
    env = env_with_trainers({"nnUNet_extTrainer": "/somewhere/else"})
    assert env["nnUNet_extTrainer"].split(":") == [trainers_dir(), "/somewhere/else"]
    assert env_with_trainers(env)["nnUNet_extTrainer"] == env["nnUNet_extTrainer"]


@pytest.mark.parametrize("name, expected", [
    ("nnUNetTrainer_ep5it10", ("nnUNetTrainer", "5", "10", None)),
    ("ESUNetDWDRSSTrainer_ep12it3val2", ("ESUNetDWDRSSTrainer", "12", "3", "2")),
    ("My_Trainer_x_ep1it1", ("My_Trainer_x", "1", "1", None)),
])
def test_short_schedule_names_parse(name, expected):
    m = SHORT_NAME.match(name)
    assert (m["base"], m["epochs"], m["iters"], m["val"]) == expected


@pytest.mark.parametrize("name", ["nnUNetTrainer", "nnUNetTrainer_5epochs", "nnUNetTrainer_ep5", "x_epait3"])
def test_other_names_are_not_short_schedules(name):
    assert SHORT_NAME.match(name) is None


def test_short_schedule_name_round_trip():
    assert short_schedule_name("nnUNetTrainer", 3, 7, 2) == "nnUNetTrainer_ep3it7val2"


def test_short_schedule_rejects_zero_lengths():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    with pytest.raises(ValueError, match="must be >= 1"):
        make_short_schedule_trainer(nnUNetTrainer, 0, 5, None, "nnUNetTrainer_ep0it5", __name__)


def test_nnunet_finds_short_schedule_variant_through_nnUNet_extTrainer(tmp_path):
    """nnU-Net's own lookup (as nnUNetv2_train/predict use it) resolves <Trainer>_ep<E>it<I>."""
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
            "c = f('nnUNetTrainer_ep3it4val1')\n"
            "print(c.__name__, c.__bases__[-1].__name__)\n")
    env = env_with_trainers({k: v for k, v in __import__("os").environ.items() if k != "nnUNet_extTrainer"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "nnUNetTrainer_ep3it4val1 nnUNetTrainer"


def test_unknown_base_trainer_is_not_found():
    import importlib

    module = importlib.import_module("nnunet_ext_trainers.short_schedule_trainers")
    assert not hasattr(module, "NoSuchTrainer_ep1it1")


class _Trainer:
    """What ShortSchedule touches of nnU-Net's trainer, with nnU-Net's default lengths."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cpu")):
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1000, 250, 50
        self.save_every, self.current_epoch, self.log, self.saved = 50, 0, [], []
        self.device = torch.device("meta")  # a named short schedule also reads the device (CPU thread count)
        self.plotted, self.output_folder, self.checkpoints = [], "out", []
        self.logger = types.SimpleNamespace(plot_progress_png=lambda folder: self.plotted.append(self.current_epoch))

    def save_checkpoint(self, filename):
        self.checkpoints.append((filename, self.current_epoch))

    def on_epoch_end(self):  # nnU-Net's checkpoint rule, progress.png, then the epoch count
        if (self.current_epoch + 1) % self.save_every == 0 and self.current_epoch != self.num_epochs - 1:
            self.saved.append(self.current_epoch + 1)  # the epoch a resume starts from
        self.logger.plot_progress_png("output folder")
        self.current_epoch += 1

    def perform_actual_validation(self, save_probabilities=False):
        self.log.append("validated")

    def print_to_log_file(self, *args):
        self.log.append(" ".join(args))


def _short(**attributes):
    return type("Short", (ShortSchedule, _Trainer), attributes)({}, "2d", 0, {})


def test_short_schedule_sets_lengths_from_class_attributes():
    trainer = _short()  # the defaults: two epochs of two iterations, one validation iteration
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (2, 2, 1)
    assert trainer.save_every == 50  # nnU-Net's
    trainer = _short(short_epochs=4, short_iterations=11, short_save_every=1)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (4, 11, 2)
    assert trainer.save_every == 1
    assert _short(short_val_iterations=3).num_val_iterations_per_epoch == 3
    named = make_short_schedule_trainer(_Trainer, 5, 20, None, "_Trainer_ep5it20", __name__)({}, "2d", 0, {})
    assert (named.num_epochs, named.num_iterations_per_epoch, named.num_val_iterations_per_epoch) == (5, 20, 4)


@pytest.mark.parametrize("attribute, value", [("short_epochs", 0), ("short_iterations", 2.5), ("stop_at_epoch", 0),
                                              ("short_save_every", -1), ("short_val_iterations", True),
                                              ("short_plot_every", 0)])
def test_short_schedule_refuses_bad_lengths(attribute, value):
    with pytest.raises(ValueError, match=f"'Short': {attribute} must be an integer >= 1, got {value!r}"):
        _short(**{attribute: value})


def test_short_schedule_redraws_progress_png_about_ten_times_and_after_the_last_epoch(monkeypatch):
    monkeypatch.delenv(STOP_ENV, raising=False)

    def plotted(**attributes):  # 0-based epochs after which nnU-Net's plot ran
        trainer = _short(**attributes)
        for _ in range(trainer.num_epochs):
            trainer.on_epoch_end()
        return trainer.plotted

    assert plotted(short_epochs=25) == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 24]  # every 25 // 10 = 2, + last
    assert plotted(short_epochs=25, short_plot_every=10) == [9, 19, 24]
    assert plotted(short_epochs=3) == [0, 1, 2]  # fewer than ten epochs: every epoch, as nnU-Net
    trainer = _short(short_epochs=25, short_plot_every=10, stop_at_epoch=4)
    with pytest.raises(SystemExit):  # a simulated interruption plots the epoch it stops after
        for _ in range(4):
            trainer.on_epoch_end()
    assert trainer.plotted == [3]


def test_short_schedule_stops_on_purpose_after_the_epoch_it_is_told(monkeypatch):
    monkeypatch.delenv(STOP_ENV, raising=False)
    trainer = _short(short_epochs=4, stop_at_epoch=2)
    trainer.on_epoch_end()
    with pytest.raises(SystemExit, match=r"simulated interruption before epoch 2 \(epochs 0..1 done"):
        trainer.on_epoch_end()
    assert trainer.saved == [2]  # checkpoint_latest of epoch 1 written first (nnU-Net's own rule: every 50)
    monkeypatch.setenv(STOP_ENV, "1")  # the environment wins over the class attribute
    with pytest.raises(SystemExit, match="before epoch 1"):
        _short(stop_at_epoch=2).on_epoch_end()
    monkeypatch.setenv(STOP_ENV, "one")
    with pytest.raises(ValueError, match=f"{STOP_ENV}='one': expected an epoch number >= 1"):
        _short().on_epoch_end()
    monkeypatch.setenv(STOP_ENV, "")  # empty: not set
    trainer = _short()
    for _ in range(3):
        trainer.on_epoch_end()
    assert trainer.current_epoch == 3


def test_short_schedule_keeps_the_model_where_the_convergence_window_starts():
    trainer = _short(short_epochs=10)  # window: the last max(3, ceil(0.2 x 10)) = 3 epochs
    for _ in range(10):
        trainer.on_epoch_end()
    # saved during epoch 6, before nnU-Net counts it: the file says 7 epochs done, as nnU-Net's checkpoints do
    assert trainer.checkpoints == [(os.path.join("out", "checkpoint_ep7.pth"), 6)]
    off = _short(short_epochs=10, keep_window_checkpoint=False)
    for _ in range(10):
        off.on_epoch_end()
    assert off.checkpoints == [] and off.window_checkpoint() is None
    short = _short(short_epochs=3)  # the window is the whole run: nothing to keep
    for _ in range(3):
        short.on_epoch_end()
    assert short.checkpoints == []


def test_short_schedule_skips_the_final_validation_only_when_told():
    trainer = _short()
    trainer.perform_actual_validation()
    assert trainer.log == ["validated"]
    trainer = _short(skip_final_validation=True)
    trainer.perform_actual_validation()
    assert trainer.log == ["final validation skipped (Short.skip_final_validation)"]


def test_short_schedule_base_found_in_any_nnUNet_extTrainer_folder(tmp_path, monkeypatch):
    """`<Trainer>_ep..` for a trainer in a user's own nnUNet_extTrainer folder, not only in nnU-Net's or ours."""
    (tmp_path / "my_lab_trainers.py").write_text(
        "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n\n\n"
        "class MyLabTrainer(nnUNetTrainer):\n    pass\n")
    monkeypatch.setenv("nnUNet_extTrainer", f"{trainers_dir()}:{tmp_path}")
    from nnunet_ext_trainers import short_schedule_trainers

    cls = getattr(short_schedule_trainers, "MyLabTrainer_ep3it2")
    assert cls.__bases__[-1].__name__ == "MyLabTrainer" and cls.short_epochs == 3 and cls.short_iterations == 2
    assert find_base_trainer("ESUNetDWDTrainer").__module__ == "nnunet_ext_trainers.es_unet_trainers"
    assert find_base_trainer("nnUNetTrainerNoDeepSupervision") is not None  # nnU-Net's own first
    monkeypatch.setenv("nnUNet_extTrainer", "")
    assert find_base_trainer("MyLabTrainer") is None
    assert find_base_trainer("ESUNetDWDTrainer") is not None  # ours is always searched


def test_every_test_trainer_is_found_by_nnunet_in_its_own_module(monkeypatch):
    """nnU-Net imports tests/trainers' modules alphabetically and takes the first that has the name: every test
    trainer name is defined once, and the lookup (as nnUNetv2_train runs it) returns that class."""
    import contextlib
    import io
    import re

    from e2e_utils import TEST_TRAINERS
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    defined = {}
    for module in sorted(TEST_TRAINERS.glob("*.py")):
        for name in re.findall(r"^class (\w+)\(", module.read_text(), re.M):
            assert name not in defined, f"{name} defined in {defined.get(name)} and {module.name}"
            defined[name] = module.stem
    trainers = [n for n in defined if n.endswith("_test")]
    assert len(trainers) >= 25
    monkeypatch.setenv("nnUNet_extTrainer", f"{trainers_dir()}:{TEST_TRAINERS}")
    for name in trainers:
        with contextlib.redirect_stdout(io.StringIO()):
            cls = recursive_find_trainer_class_by_name(name)
        assert (cls.__name__, cls.__module__) == (name, defined[name])
        assert issubclass(cls, ShortSchedule) and cls.check_short_schedule() is None


def test_nnunet_deep_supervision_weights_match_nnunet_rule():
    # 4 outputs: 1, 1/2, 1/4, 0 -> normalised by 1.75
    np.testing.assert_allclose(nnunet_deep_supervision_weights(4, False, False), [1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0])
    w = nnunet_deep_supervision_weights(3, True, False)
    assert w[-1] > 0 and math.isclose(w.sum(), 1.0)


def test_paper_schedule_learning_rate_curve():
    """Cosine warm restarts every 25 epochs from 1e-3 to 1e-5, stepped by epoch as nnU-Net does."""
    from nnunet_ext.training.schedule import PaperSchedule

    class Fake(PaperSchedule):  # only the attributes configure_optimizers reads; no trainer needed
        weight_decay = 0.0
        network = torch.nn.Linear(2, 2)
        num_epochs = 100
        initial_lr = PaperSchedule.paper_initial_lr

    optimizer, scheduler = Fake.configure_optimizers(object.__new__(Fake))
    assert optimizer.defaults["betas"] == (0.9, 0.99)
    lrs = {}
    for epoch in range(60):
        scheduler.step(epoch)
        lrs[epoch] = optimizer.param_groups[0]["lr"]
    expected = lambda t: 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / 25)) / 2  # noqa: E731
    for epoch in (0, 10, 24, 25, 37, 50):
        assert lrs[epoch] == pytest.approx(expected(epoch % 25), rel=1e-9)


def test_cli_lists_every_kind_and_our_trainers():
    out = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "list"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for header in ("architectures (", "losses (", "transforms (", "trainers ("):
        assert header in out.stdout
    for trainer in ("ESUNetDWDTrainer", "ESUNetDWDRSSTrainer", "UNet3PlusTrainer", "nnUNetTrainerDWDRSS"):
        assert f"  {trainer} " in out.stdout


def _loss_class(doc):
    """A fresh class object with the same module and qualname on every call, as a module reload makes."""
    class Loss:
        pass
    Loss.__doc__ = doc
    return Loss


def test_register_refuses_a_name_taken_by_another_class_but_allows_a_reload(monkeypatch):
    monkeypatch.setattr(registry, "_ENTRIES", {k: {} for k in registry.KINDS})
    first = registry.register("loss")(_loss_class("first version"))
    # the same module.qualname again (module reloaded): replaces the entry, no error
    again = registry.register("loss")(_loss_class("reloaded version"))
    assert again is not first
    assert [(e.name, e.summary) for e in registry._ENTRIES["loss"].values()] == [("Loss", "reloaded version")]

    class Loss:  # another class with the same name (qualname ends in this test function)
        """impostor"""
    with pytest.raises(ValueError) as err:
        registry.register("loss")(Loss)
    message = str(err.value)
    assert f"{first.__module__}.{first.__qualname__}" in message
    assert f"{Loss.__module__}.{Loss.__qualname__}" in message
    assert registry._ENTRIES["loss"]["Loss"].summary == "reloaded version"  # the refused class left no trace
    # an explicit name collides the same way; another kind is a separate namespace
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("loss", name="Loss")(_make_other())
    registry.register("transform")(Loss)
    assert registry._ENTRIES["transform"]["Loss"].dotted_path.endswith("<locals>.Loss")


def _make_other():
    class Other:
        pass
    return Other


def test_workspace_passes_the_device_to_train_and_predict(tmp_path, monkeypatch):
    from nnunet_ext.workspace import NnUNetWorkspace

    ws = NnUNetWorkspace(tmp_path)
    commands = []
    monkeypatch.setattr(ws, "run", lambda *cmd, **kw: commands.append([str(c) for c in cmd]))

    def device_of(cmd):
        return cmd[len(cmd) - 1 - cmd[::-1].index("-device") + 1]  # argparse: the last -device wins

    ws.train(7, "2d", 0, "nnUNetTrainer")
    ws.train(7, "2d", 0, "nnUNetTrainer", device="cuda")
    ws.predict(7, "2d", "nnUNetTrainer", tmp_path / "in", tmp_path / "out")
    ws.predict(7, "2d", "nnUNetTrainer", tmp_path / "in", tmp_path / "out", device="mps")
    ws.train(7, "2d", 0, "nnUNetTrainer", "-device", "cuda")  # callers that pass it in extra still win
    assert [(c[0], device_of(c)) for c in commands] == [
        ("nnUNetv2_train", "cpu"), ("nnUNetv2_train", "cuda"), ("nnUNetv2_predict", "cpu"),
        ("nnUNetv2_predict", "mps"), ("nnUNetv2_train", "cuda")]
    with pytest.raises(ValueError, match="'cuda:1' is not one nnU-Net accepts"):
        ws.train(7, "2d", 0, "nnUNetTrainer", device="cuda:1")


def test_prediction_on_a_cpu_runs_in_one_process():
    from nnunet_ext.cascade.predict import NnUNetModel, predict_args
    from nnunet_ext.workspace import NnUNetWorkspace, predict_workers

    assert predict_workers("cpu") == ["-npp", "0", "-nps", "0"]  # nnUNetv2_predict's sequential path
    assert predict_workers("cuda") == predict_workers("mps") == ["-npp", "1", "-nps", "1"]
    with pytest.raises(ValueError, match="'cuda:0' is not one nnU-Net accepts"):
        predict_workers("cuda:0")
    args = predict_args(NnUNetWorkspace("/nonexistent"), NnUNetModel(7, "3d_fullres", "nnUNetTrainer", device="cpu"),
                        "in", "out")
    assert args[args.index("-npp") + 1] == args[args.index("-nps") + 1] == "0"


def test_demo_parameter_count_keeps_nnunet_lookup_lines_off_stdout(tmp_path, monkeypatch, capsys):
    from torch import nn

    from nnunet_ext import trainer_lookup
    from nnunet_ext.benchmark import demo
    from nnunet_ext.workspace import NnUNetWorkspace

    ws = NnUNetWorkspace(tmp_path)
    (ws.preprocessed / "Dataset123_Tiny").mkdir()

    class Trainer:
        @staticmethod
        def build_network_architecture(plans_manager, configuration_manager, n_in, n_out, deep_supervision):
            return nn.Conv3d(n_in, n_out, 3)  # 2 x 3 x 27 weights + 3 biases = 165

    def lookup(folder, plans, configuration, trainer):
        print(f"Searching in: {folder}")  # what nnU-Net's recursive_find_trainer_class_by_name prints
        return Trainer, None, None, 2, 3

    monkeypatch.setattr(trainer_lookup, "load_trainer_context", lookup)
    assert demo.count_parameters(ws, 123, "3d_fullres", "Trainer") == 165
    assert capsys.readouterr().out == ""

    def failing_lookup(*args):
        print("Searching in: /nowhere")
        raise RuntimeError("Could not find requested nnunet trainer")

    monkeypatch.setattr(trainer_lookup, "load_trainer_context", failing_lookup)
    with pytest.raises(RuntimeError, match="Could not find"):
        demo.count_parameters(ws, 123, "3d_fullres", "Missing")
    assert capsys.readouterr().err == "Searching in: /nowhere\n"  # kept for the failure's diagnosis


def test_cli_trainers_dir_prints_the_folder():
    out = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "trainers-dir"], capture_output=True, text=True)
    assert out.stdout.strip() == trainers_dir()
