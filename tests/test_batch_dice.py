"""BatchDice: nnU-Net's Dice over the batch whatever the plans say (the remedy for study A's dead UNet 3+ channel)."""
from types import SimpleNamespace

import pytest
import torch
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.batch_dice import BatchDice
from nnunet_ext.training.dwd import DWDFocalLoss
from nnunet_ext_trainers.es_unet_trainers import UNet3PlusBatchDiceTrainer, UNet3PlusTrainer, nnUNetTrainerBatchDice

S = 1e-5  # nnU-Net's Dice smoothing


def make_trainer(cls, plans_batch_dice):
    """A trainer object without nnU-Net's __init__: just what the loss hooks read."""
    trainer = object.__new__(cls)
    trainer.label_manager = LabelManager({"background": 0, "node": 1}, None)
    trainer.configuration_manager = SimpleNamespace(batch_dice=plans_batch_dice)
    trainer.is_ddp, trainer.device, trainer.enable_deep_supervision = False, torch.device("cpu"), False
    trainer.logged = []
    trainer.print_to_log_file = lambda *args, **kwargs: trainer.logged.append(" ".join(map(str, args)))
    return trainer


def two_cases():
    """Logits 0 everywhere (softmax 0.5 per class); case 0 has the node at 2 of its 4 voxels, case 1 has none."""
    target = torch.zeros(2, 1, 1, 1, 4)
    target[0, 0, 0, 0, :2] = 1
    return torch.zeros(2, 2, 1, 1, 4), target


def test_per_case_dice_counts_the_empty_case_batch_dice_does_not():
    logits, target = two_cases()
    per_case = make_trainer(UNet3PlusTrainer, plans_batch_dice=False).build_segmentation_loss()
    # case 0: intersection 2 x 0.5 = 1, predicted 2, true 2 -> (2 + s) / (4 + s); case 1: (0 + s) / (2 + s)
    expected = -((2 + S) / (4 + S) + S / (2 + S)) / 2
    assert per_case.dc(logits, target).item() == pytest.approx(expected, rel=1e-6)
    for cls in (UNet3PlusBatchDiceTrainer, nnUNetTrainerBatchDice):
        batch = make_trainer(cls, plans_batch_dice=False).build_segmentation_loss()
        # one Dice over both cases: intersection 1, predicted 4, true 2 -> (2 + s) / (6 + s)
        assert batch.dc(logits, target).item() == pytest.approx(-(2 + S) / (6 + S), rel=1e-6)


def test_overriding_the_plans_is_logged_once():
    trainer = make_trainer(UNet3PlusBatchDiceTrainer, plans_batch_dice=False)
    trainer.build_segmentation_loss(), trainer.dice_over_batch()
    assert trainer.logged == ["BatchDice: every Dice term is one Dice over the batch "
                              "(the plans say batch_dice = False)"]
    agreeing = make_trainer(UNet3PlusBatchDiceTrainer, plans_batch_dice=True)
    agreeing.build_segmentation_loss()
    assert agreeing.logged == []


def test_without_the_mixin_the_plans_decide():
    assert make_trainer(UNet3PlusTrainer, True).build_segmentation_loss().dc.batch_dice is True
    assert make_trainer(UNet3PlusTrainer, False).build_segmentation_loss().dc.batch_dice is False
    assert make_trainer(nnUNetTrainerBatchDice, False).dice_over_batch() is True


def test_the_mixin_reaches_the_other_losses_through_the_hook():
    class DWDBatchDice(BatchDice, DWDFocalLoss, ExtTrainer):
        pass

    assert make_trainer(DWDBatchDice, False).build_segmentation_loss().dc.batch_dice is True
