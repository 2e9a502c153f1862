"""The papers' optimisers and learning-rate schedules (training/optimizers.py) and the ES-UNet paper's augmentation.

Learning rates are checked at chosen epochs against values computed by hand from each paper's numbers.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from nnunet_ext.training.optimizers import (DLKUNetPaperOptimizer, ELANResPaperOptimizer, ESUNetPaperSchedule,
                                            PaperOptimizer, StageSkippingPaperOptimizer, STSNetPaperOptimizer,
                                            StepDecayLR)
from nnunet_ext.training.paper_augmentation import NNUNET_INTENSITY_TRANSFORMS
from nnunet_ext.transforms.rss import RegionSpecificScaling


class _NnUNetDefaults:
    """What nnU-Net's __init__ sets that the optimiser mixins read or change; no plans needed."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cpu")):
        self.initial_lr, self.weight_decay, self.num_epochs = 1e-2, 3e-5, 1000
        self.configuration_manager = SimpleNamespace(configuration={"batch_size": 2})
        self.network = torch.nn.Linear(2, 2)


def trainer_with(mixin):
    cls = type(f"Fake{mixin.__name__}", (mixin, _NnUNetDefaults), {})
    return cls({}, "3d_fullres", 0, {})


def lrs_at(trainer, epochs):
    optimizer, scheduler = trainer.configure_optimizers()
    out = {}
    for epoch in epochs:  # nnU-Net: lr_scheduler.step(current_epoch) at every epoch start, also after --c
        scheduler.step(epoch)
        out[epoch] = optimizer.param_groups[0]["lr"]
    return optimizer, out


def test_dlkunet_paper_optimizer_by_hand():
    # 1e-3 x 0.9 every 20 epochs, then 1e-5 from epoch 200 on, again x 0.9 every 20 epochs
    trainer = trainer_with(DLKUNetPaperOptimizer)
    assert (trainer.initial_lr, trainer.weight_decay, trainer.num_epochs) == (1e-3, 1e-5, 400)
    assert trainer.configuration_manager.configuration["batch_size"] == 2  # the paper gives none: nnU-Net's
    optimizer, lrs = lrs_at(trainer, [0, 19, 20, 45, 199, 200, 219, 220, 399])
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 1e-5
    expected = {0: 1e-3, 19: 1e-3, 20: 9e-4, 45: 8.1e-4, 199: 1e-3 * 0.387420489, 200: 1e-5, 219: 1e-5,
                220: 9e-6, 399: 1e-5 * 0.387420489}
    for epoch, lr in expected.items():
        assert lrs[epoch] == pytest.approx(lr, rel=1e-12), epoch


def test_elanres_paper_optimizer_by_hand():
    # 1e-4, -20 % every 30 epochs; nnU-Net's epoch count (the paper gives none), no weight decay
    trainer = trainer_with(ELANResPaperOptimizer)
    assert (trainer.weight_decay, trainer.num_epochs) == (0.0, 1000)
    optimizer, lrs = lrs_at(trainer, [0, 29, 30, 60, 95])
    assert isinstance(optimizer, torch.optim.Adam)
    for epoch, lr in {0: 1e-4, 29: 1e-4, 30: 8e-5, 60: 6.4e-5, 95: 5.12e-5}.items():
        assert lrs[epoch] == pytest.approx(lr, rel=1e-12), epoch


def test_sts_net_paper_optimizer_by_hand():
    trainer = trainer_with(STSNetPaperOptimizer)
    assert trainer.num_epochs == 100 and trainer.configuration_manager.configuration["batch_size"] == 4
    optimizer, lrs = lrs_at(trainer, [0, 50, 99])
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["weight_decay"] == 1e-2
    assert lrs == {0: 1e-4, 50: 1e-4, 99: 1e-4}


def test_stage_skipping_paper_optimizer_by_hand():
    # nnU-Net's SGD + poly from the paper's 1.5e-3: lr(e) = 1.5e-3 (1 - e/1000)^0.9
    trainer = trainer_with(StageSkippingPaperOptimizer)
    assert trainer.configuration_manager.configuration["batch_size"] == 32
    optimizer, lrs = lrs_at(trainer, [0, 500, 900])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    assert lrs[0] == pytest.approx(1.5e-3, rel=1e-12)
    assert lrs[500] == pytest.approx(1.5e-3 * 0.5 ** 0.9, rel=1e-12)  # 8.0380e-4
    assert lrs[900] == pytest.approx(1.5e-3 * 0.1 ** 0.9, rel=1e-12)  # 1.8885e-4


def test_es_unet_paper_schedule_has_no_weight_decay():
    trainer = trainer_with(ESUNetPaperSchedule)
    assert (trainer.initial_lr, trainer.weight_decay, trainer.num_epochs) == (1e-3, 0.0, 100)
    optimizer, lrs = lrs_at(trainer, [0, 25])
    assert optimizer.defaults["weight_decay"] == 0.0 and lrs[25] == pytest.approx(1e-3)  # warm restart at 25


def test_bad_schedules_and_optimizers_are_named():
    with pytest.raises(ValueError, match="factor in"):
        StepDecayLR(initial_lr=1e-3, factor=1.5)
    with pytest.raises(ValueError, match="go together"):
        StepDecayLR(initial_lr=1e-3, restart_epoch=10)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        StepDecayLR(initial_lr=1e-3).lr(-1)
    bad = type("Bad", (PaperOptimizer,), {"paper_optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="rmsprop"):
        trainer_with(bad)


def test_es_unet_paper_trainer_augments_only_with_rss_rotation_and_mirroring():
    from nnunet_ext_trainers.es_unet_trainers import ESUNetDWDRSSPaperTrainer

    rotation = (-np.pi / 6, np.pi / 6)  # nnU-Net's 3d default (+-30 deg), replaced by the paper's +-15 deg
    pipeline = ESUNetDWDRSSPaperTrainer.get_training_transforms(
        (32, 32, 32), rotation, None, (0, 1, 2), False, foreground_labels=[1])
    steps = pipeline.transforms
    spatial = next(t for t in steps if isinstance(t, SpatialTransform))
    assert isinstance(steps[0], RegionSpecificScaling) and steps[1] is spatial
    assert spatial.rotation == pytest.approx((-math.radians(15), math.radians(15)))
    assert (spatial.p_rotation, spatial.p_scaling, spatial.p_elastic_deform) == (1.0, 0.0, 0.0)
    assert any(isinstance(t, MirrorTransform) and tuple(t.allowed_axes) == (0, 1, 2) for t in steps)
    assert not any(isinstance(t, RandomTransform) and isinstance(t.transform, NNUNET_INTENSITY_TRANSFORMS)
                   for t in steps)


def test_new_paper_trainers_are_found_by_nnunet(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_ext.workspace import trainers_dir

    monkeypatch.setenv("nnUNet_extTrainer", trainers_dir())
    names = ["ESUNetDWDRSSPaperTrainer", "DLKUNetLPhaseLossPaperScheduleTrainer",
             "DLKUNetLDynamicLossPaperScheduleTrainer", "DLKUNetLPaperScheduleTrainer",
             "ELANResMSCAUNetPaperLossPaperScheduleTrainer", "STSNetPaperScheduleTrainer",
             "STSNet25DPaperScheduleTrainer", "StageSkippingSegmentorPaperScheduleTrainer"]
    found = {n: recursive_find_trainer_class_by_name(n) for n in names}
    assert [n for n, c in found.items() if c is None] == []
    assert issubclass(found["DLKUNetLPhaseLossPaperScheduleTrainer"], DLKUNetPaperOptimizer)
