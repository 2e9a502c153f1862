"""`--resenc nearest`: the ResEnc preset nearest in estimated training memory to the largest trainer."""
import json
import math

import pytest

from nnunet_ext.benchmark import runner
from nnunet_ext.benchmark.report import resenc_section
from nnunet_ext.benchmark.resenc import NetworkMemory, ResEncChoice, choose_nearest, make_choice
from nnunet_ext.benchmark.runner import RESENC_CHOICE_FILE, VANILLA, BenchmarkConfig, WorkspaceFolders
from nnunet_ext.workspace import NnUNetWorkspace

PRESETS = {"M": 6.0, "L": 12.0, "XL": 20.0}


@pytest.mark.parametrize("trainers, preset, target", [
    ({"nnUNetTrainer": 3.0, "ESUNetTrainer": 9.5}, "L", "ESUNetTrainer"),   # |12 - 9.5| = 2.5 < |6 - 9.5| = 3.5
    ({"nnUNetTrainer": 3.0, "UNet3PlusTrainer": 8.5}, "M", "UNet3PlusTrainer"),  # 2.5 < 3.5
    ({"nnUNetTrainer": 9.0}, "M", "nnUNetTrainer"),                          # tie 3 / 3: the smaller preset
    ({"nnUNetTrainer": 0.5}, "M", "nnUNetTrainer"),                          # below every preset
    ({"nnUNetTrainer": 2.0, "Big": 55.0}, "XL", "Big"),                      # above every preset
    ({"a": 16.5, "b": 15.0}, "XL", "a"),                                     # the largest decides: 3.5 < 4.5
])
def test_nearest_preset_to_the_largest_trainer(trainers, preset, target):
    assert choose_nearest(trainers, PRESETS) == (preset, target)


def test_a_subset_of_presets_is_allowed():
    assert choose_nearest({"t": 30.0}, {"M": 6.0, "L": 12.0}) == ("L", "t")


@pytest.mark.parametrize("trainers, presets, message", [
    ({}, PRESETS, "no trainer memory estimates"),
    ({"t": 1.0}, {"S": 2.0}, "among"),
    ({"t": 1.0}, {}, "among"),
    ({"t": math.nan}, PRESETS, "positive finite"),
    ({"t": 1.0}, {"M": 0.0, "L": 12.0}, "ResEnc M"),
])
def test_bad_estimates_name_the_problem(trainers, presets, message):
    with pytest.raises(ValueError, match=message):
        choose_nearest(trainers, presets)


def memory(name, gb, plans="nnUNetPlans"):
    return NetworkMemory(name, plans, [16, 32, 32], 2, gb, 1000)


def hand_choice():
    return make_choice([memory("nnUNetTrainer", 3.0), memory("ESUNetTrainer", 9.5)],
                       {p: memory(f"ResEnc {p}", gb, f"nnUNetResEncUNet{p}Plans") for p, gb in PRESETS.items()})


def test_choice_records_both_estimates_and_survives_json():
    choice = hand_choice()
    assert (choice.preset, choice.target, choice.target_gb, choice.preset_gb) == ("L", "ESUNetTrainer", 9.5, 12.0)
    assert ResEncChoice.from_dict(json.loads(json.dumps(choice.as_dict()))) == choice


def test_report_section_names_the_choice_and_every_estimate():
    text = "\n".join(resenc_section(hand_choice()))
    assert "**ResEnc L** (12.000 GB)" in text and "ESUNetTrainer (9.500 GB)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "GB" not in line]
    assert len(rows) == 2 + 3 and sum("**chosen**" in r for r in rows) == 1
    assert "| ResEnc L | nnUNetResEncUNetLPlans | 16x32x32 | 2 | 0.001 | 12.000 | **chosen** |" in rows


def test_config_accepts_nearest_but_arms_need_it_resolved(tmp_path):
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=870, resenc="nearest")
    cfg.validate()
    with pytest.raises(ValueError, match="resolved"):
        cfg.arms()
    with pytest.raises(ValueError, match="unknown ResEnc preset 'S'"):
        BenchmarkConfig(workdir=tmp_path, dataset_id=870, resenc="S").validate()


def test_choice_is_kept_in_the_workdir_while_trainers_stay_the_same(tmp_path, monkeypatch):
    calls = []

    def run(self, *cmd, **kw):
        calls.append(cmd)
        raise RuntimeError("no nnU-Net here")
    monkeypatch.setattr(NnUNetWorkspace, "run", run)
    root = tmp_path / "nnunet"
    folders = WorkspaceFolders(str(root / "nnUNet_raw"), str(root / "nnUNet_preprocessed"),
                               str(root / "nnUNet_results"), 0)
    (root / "nnUNet_raw" / "Dataset870_Fake").mkdir(parents=True)
    cfg = BenchmarkConfig(workdir=tmp_path, dataset_id=870, trainers=("ESUNetTrainer",), resenc="nearest")
    key = {"dataset_id": 870, "configuration": "3d_fullres", "trainers": [VANILLA, "ESUNetTrainer"]}
    (tmp_path / RESENC_CHOICE_FILE).write_text(json.dumps({"key": key, "choice": hand_choice().as_dict()}))
    assert runner.resolve_resenc(cfg, folders, log=lambda _: None) == hand_choice() and calls == []
    cfg.trainers = ("UNet3PlusTrainer",)  # other trainers: the cached choice does not apply, planning starts
    with pytest.raises(RuntimeError, match="no nnU-Net"):
        runner.resolve_resenc(cfg, folders, log=lambda _: None)
    assert calls[0] == ("nnUNetv2_plan_experiment", "-d", 870, "-pl", "nnUNetPlannerResEncM")


def test_a_checkpointed_network_is_estimated_by_the_estimator_with_its_recomputation():
    # ES-UNet as its trainers build it (checkpointing on) from narrow 3-stage plans; nothing trains
    import torch

    from hand_plans import configuration_manager
    from nnunet_ext.benchmark.resenc import network_memory
    from nnunet_ext.planning.memory import (GB, PROBE_BATCH, estimate_training_memory, meta_activation_bytes,
                                            parameter_bytes, saved_tensor_bytes)
    from nnunet_ext.training.checkpointing import is_checkpointed
    from nnunet_ext.training.es_unet import ESUNetArchitecture

    patch = [8, 16, 16]
    cm = configuration_manager(patch, [[1, 1, 1], [2, 2, 2], [2, 2, 2]], [[3, 3, 3]] * 3, [4, 8, 8], batch_size=2)
    torch.manual_seed(0)
    net = ESUNetArchitecture.build_network_architecture(None, cm, 1, 2, True)
    assert is_checkpointed(net)
    memory = network_memory(net, cm, 1, "ESUNetTrainer", "nnUNetPlans")
    estimate = estimate_training_memory(net, 1, patch, 2, (4, 4, 4))
    assert (memory.patch_size, memory.batch_size) == (patch, 2)
    assert memory.total_gb == estimate.total_gb  # the estimator's figure, by the same call
    # = parameters, gradients and SGD momentum + 2 samples' activations counted at the patch on the meta device
    assert memory.total_gb * GB == pytest.approx(3 * parameter_bytes(net) + 2 * meta_activation_bytes(net, 1, patch))
    # what checkpointing keeps between forward and backward (the former fallback) is less: it misses the peak
    kept = saved_tensor_bytes(net, torch.zeros(PROBE_BATCH, 1, *patch)) / PROBE_BATCH
    assert 3 * parameter_bytes(net) + 2 * kept < memory.total_gb * GB
