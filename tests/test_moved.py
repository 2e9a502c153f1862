"""What earlier versions named still resolves: old module paths, the networks plans files name, trainer names."""
import importlib
import json
import subprocess
import sys

import pytest

from nnunet_ext._moved import MOVED

# the networks plans files written by earlier versions name (nnunet-ext plans), by dotted path
PLANS_NETWORKS = ("nnunet_ext_architectures.es_unet.ESUNet", "nnunet_ext_architectures.es_unet.UNet3Plus",
                  "nnunet_ext_architectures.sts_net.STSNet", "nnunet_ext_architectures.sts_net.STSNet25D",
                  "nnunet_ext_architectures.dlkunet.DLKUNet",
                  "nnunet_ext_architectures.elanres_msca_unet.ELANResMSCAUNet",
                  "nnunet_ext_architectures.stage_skipping_segmentor.StageSkippingSegmentor")

# every trainer class of the version before the trainers were grouped by paper (checkpoints name their class)
EARLIER_TRAINERS = (
    "DLKUNetLDWDRSSTrainer", "DLKUNetLDWDTrainer", "DLKUNetLDynamicLossPaperScheduleTrainer",
    "DLKUNetLDynamicLossTrainer", "DLKUNetLNoCheckpointingTrainer", "DLKUNetLPaperScheduleTrainer",
    "DLKUNetLPhaseLossPaperScheduleTrainer", "DLKUNetLPhaseLossTrainer", "DLKUNetLRSSTrainer",
    "DLKUNetLTrainer", "DLKUNetMTrainer", "DLKUNetPlansTrainer", "DLKUNetSTrainer",
    "ELANResMSCAUNetDWDRSSTrainer", "ELANResMSCAUNetDWDTrainer", "ELANResMSCAUNetInplaneTrainer",
    "ELANResMSCAUNetNoCheckpointingTrainer", "ELANResMSCAUNetPaperLossPaperScheduleTrainer",
    "ELANResMSCAUNetPaperLossTrainer", "ELANResMSCAUNetRSSTrainer", "ELANResMSCAUNetTrainer",
    "ESUNetDWDRSSNoCheckpointingTrainer", "ESUNetDWDRSSPaperScheduleTrainer", "ESUNetDWDRSSPaperTrainer",
    "ESUNetDWDRSSTrainer", "ESUNetDWDTrainer", "ESUNetFocalDiceRSSTrainer", "ESUNetFocalDiceTrainer",
    "ESUNetNoCheckpointingTrainer", "ESUNetRSSTrainer", "ESUNetSkipBaseFocalDiceTrainer",
    "ESUNetSkipBaseTrainer", "ESUNetSkipDecOnlyFocalDiceTrainer", "ESUNetSkipDecOnlyTrainer",
    "ESUNetSkipEncOnlyFocalDiceTrainer", "ESUNetSkipEncOnlyTrainer", "ESUNetTrainer", "STSNet25DAmplifyTrainer",
    "STSNet25DDWDTrainer", "STSNet25DPaperScheduleTrainer", "STSNet25DTrainer", "STSNetAmplifyTrainer",
    "STSNetDWDTrainer", "STSNetPaperScheduleTrainer", "STSNetTrainer",
    "StageSkippingSegmentorPaperScheduleTrainer", "StageSkippingSegmentorTrainer", "UNet3PlusDWDRSSTrainer",
    "UNet3PlusDWDTrainer", "UNet3PlusFocalDiceRSSTrainer", "UNet3PlusFocalDiceTrainer",
    "UNet3PlusNoCheckpointingTrainer", "UNet3PlusRSSTrainer", "UNet3PlusTrainer", "nnUNetTrainerAmplify",
    "nnUNetTrainerAmplifyM1", "nnUNetTrainerAmplifyM2", "nnUNetTrainerAmplifyM3", "nnUNetTrainerAmplifyM4",
    "nnUNetTrainerDWD", "nnUNetTrainerDWDRSS", "nnUNetTrainerDecayingDS", "nnUNetTrainerDynamicLoss",
    "nnUNetTrainerELANResLoss", "nnUNetTrainerELANResLossDecayingDS", "nnUNetTrainerFocalDice",
    "nnUNetTrainerFocalDiceRSS", "nnUNetTrainerPhaseLoss", "nnUNetTrainerPhaseLossPhaseLR", "nnUNetTrainerRSS",
)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_imports_the_new_module_itself(old):
    new = importlib.import_module(MOVED[old])
    assert importlib.import_module(old) is new  # one module object: one class identity
    assert new.__name__ == MOVED[old] and new.__spec__.name == MOVED[old]  # the alias leaves the module as it was


def test_old_paths_work_in_a_fresh_process_with_every_import_form():
    # what a user's script does first thing, before anything else imported the new modules
    code = ("import nnunet_ext.cost as a; from nnunet_ext import demo; from nnunet_ext.paths import trainers_dir; "
            "from nnunet_ext.benchmark.cost import CostRequest, load_trainer_context; "
            "from nnunet_ext.losses.schedules import PhaseDiceCESchedule; "
            "from nnunet_ext.cascade.predict import NnUNetPaths; "
            "import json, nnunet_ext.network_cost as b; "
            "print(json.dumps([a is b, demo.__name__, trainers_dir.__module__, CostRequest.__module__, "
            "PhaseDiceCESchedule.__module__, NnUNetPaths.__name__]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [True, "nnunet_ext.benchmark.demo", "nnunet_ext.workspace",
                               "nnunet_ext.benchmark.cost_job", "nnunet_ext.losses.weight_schedules", "NnUNetFolders"]


def test_an_unknown_old_name_still_fails_as_python_does():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("nnunet_ext.no_such_module")


@pytest.mark.parametrize("dotted", PLANS_NETWORKS)
def test_plans_network_paths_of_earlier_versions_resolve_as_nnunet_resolves_them(dotted):
    import pydoc

    from torch import nn

    cls = pydoc.locate(dotted)  # nnU-Net's get_network_from_plans
    assert isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__name__ == dotted.rsplit(".", 1)[1]


def test_every_trainer_name_of_earlier_versions_is_found_by_nnunet():
    from nnunet_ext.registry import trainer_entries
    from nnunet_ext.trainer_lookup import check_trainers

    found = check_trainers(EARLIER_TRAINERS)  # nnU-Net's own lookup, one error naming every missing one
    assert {name: cls.__name__ for name, cls in found.items()} == {name: name for name in EARLIER_TRAINERS}
    modules = {e.dotted_path.rsplit(".", 1)[0] for e in trainer_entries()}
    # one trainer module per paper (trainers/ reads as the table of contents of the five papers)
    assert modules == {f"nnunet_ext_trainers.{m}_trainers" for m in
                       ("es_unet", "dlkunet", "elanres", "sts_net", "stage_skipping")}


SHORT_SCHEDULE_NAMES = ("SHORT_NAME", "TIMING_FILE", "make_short_schedule_trainer", "short_schedule_name",
                        "write_step_timing")


def test_short_schedule_names_import_from_their_earlier_home_but_the_package_uses_their_own():
    import ast
    from pathlib import Path

    from nnunet_ext.training import schedule, short_schedule

    assert all(getattr(schedule, n) is getattr(short_schedule, n) for n in SHORT_SCHEDULE_NAMES)
    package = Path(short_schedule.__file__).parents[1]
    through_old_home = [f"{path.relative_to(package.parent)}: {alias.name}" for path in package.rglob("*.py")
                        for node in ast.walk(ast.parse(path.read_text()))
                        if isinstance(node, ast.ImportFrom) and node.module == "nnunet_ext.training.schedule"
                        for alias in node.names if alias.name in SHORT_SCHEDULE_NAMES]
    assert through_old_home == []
