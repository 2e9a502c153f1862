"""Trainer mixins: DLKUNet's phase-based / sigmoid Dice-CE schedules, ELANRes's loss family and its
decaying deep-supervision weights.

Every weight is a pure function of ``self.current_epoch`` (and ``self.num_epochs``), set in
``on_train_epoch_start``. nnU-Net restores ``current_epoch`` from the checkpoint, so a run resumed
with ``nnUNetv2_train --c`` continues the schedule exactly where it stopped. Each mixin writes the
weights it set into the training log ("loss weights ..." / "deep supervision weights ...").

Configure by subclassing and replacing the class attribute, e.g.
``class MyTrainer(nnUNetTrainerPhaseLoss): loss_schedule = PhaseDiceCESchedule(boundary_fraction=0.6)``.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from torch import nn

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_ext.losses.region_losses import RegionLossSettings, WeightedRegionLoss
from nnunet_ext.losses.weight_schedules import (DecayingDeepSupervisionSchedule, PhaseDiceCESchedule, PhaseLRScheduler,
                                         SigmoidDiceCESchedule)
from nnunet_ext.training.loss_checkpointing import unwrap_checkpointed


def segmentation_loss_of(loss: nn.Module) -> nn.Module:
    """The per-output loss inside nnU-Net's deep-supervision wrapper and ``CheckpointedLoss`` (or the loss itself)."""
    return unwrap_checkpointed(loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss)


class _DiceCEWeightSchedule:
    """Sets ``weight_dice`` / ``weight_ce`` of nnU-Net's DC_and_CE_loss / DC_and_BCE_loss every epoch."""

    def dice_ce_weights(self, epoch: int) -> Tuple[float, float]:
        return self.loss_schedule.weights(epoch, self.num_epochs)

    def build_segmentation_loss(self) -> nn.Module:
        loss = super().build_segmentation_loss()
        if not (hasattr(loss, "weight_dice") and hasattr(loss, "weight_ce")):
            raise RuntimeError(f"{type(self).__name__}: a Dice/CE weight schedule needs a loss with weight_dice and "
                               f"weight_ce (nnU-Net's DC_and_CE_loss / DC_and_BCE_loss); got {type(loss).__name__}. "
                               f"Put the schedule mixin in front of any other loss mixin only if that loss has them.")
        loss.weight_dice, loss.weight_ce = self.dice_ce_weights(self.current_epoch)
        return loss

    def apply_loss_weights(self) -> Tuple[float, float]:
        loss = segmentation_loss_of(self.loss)
        loss.weight_dice, loss.weight_ce = self.dice_ce_weights(self.current_epoch)
        return loss.weight_dice, loss.weight_ce

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        dice, ce = self.apply_loss_weights()
        self.print_to_log_file(f"loss weights (epoch {self.current_epoch}): dice {dice:.6f} ce {ce:.6f}")


class PhaseLossSchedule(_DiceCEWeightSchedule):
    """DLKUNet phase-based loss (Eq. 10-11): Dice/CE 0.6/0.4, then 0.7/0.3; optional per-phase learning rate."""

    loss_schedule: PhaseDiceCESchedule = PhaseDiceCESchedule()
    # The paper also drops its learning rate at the boundary (1e-3 -> 1e-5): a factor 0.01 on nnU-Net's poly
    # schedule in the second phase. Off by default: nnU-Net's own schedule already anneals.
    phase_learning_rate: bool = False
    phase_lr_factors: Tuple[float, float] = (1.0, 0.01)

    def configure_optimizers(self):
        optimizer, scheduler = super().configure_optimizers()
        if self.phase_learning_rate:
            scheduler = PhaseLRScheduler(optimizer, self.initial_lr, self.num_epochs,
                                         self.loss_schedule.boundary_epoch(self.num_epochs), self.phase_lr_factors)
        return optimizer, scheduler


class DynamicLossSchedule(_DiceCEWeightSchedule):
    """DLKUNet dynamic loss (Eq. 12-13): sigmoid hand-over from Dice/CE (0.3, 1) to (1, 0.7) around mid-training."""

    loss_schedule: SigmoidDiceCESchedule = SigmoidDiceCESchedule()


class ELANResLossFamily:
    """Per-output loss: a weighted sum of ELANRes's Table 1 losses (default Dice + Tversky + CE, each weight 1)."""

    # names: dice, tversky, jaccard, ss, eldice, ce (CE for labels, BCE for regions)
    loss_terms: Dict[str, float] = {"dice": 1.0, "tversky": 1.0, "ce": 1.0}
    loss_settings: RegionLossSettings = RegionLossSettings()

    def build_segmentation_loss(self) -> nn.Module:
        return WeightedRegionLoss(self.loss_terms, has_regions=self.label_manager.has_regions,
                                  ignore_label=self.label_manager.ignore_label,
                                  batch_dice=self.dice_over_batch(), ddp=self.is_ddp,
                                  settings=self.loss_settings)


class DecayingDeepSupervision:
    """ELANRes deep supervision (Eq. 1-2): final output weight 1, others alpha = 0.4 x 0.8^(epoch // period)."""

    deep_supervision_schedule: DecayingDeepSupervisionSchedule = DecayingDeepSupervisionSchedule()

    def deep_supervision_weights(self) -> np.ndarray:
        return self.deep_supervision_schedule.weights(len(self._get_deep_supervision_scales()), self.current_epoch)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        if isinstance(self.loss, DeepSupervisionWrapper):
            weights = self.deep_supervision_weights()
            self.loss.weight_factors = tuple(float(w) for w in weights)
            self.print_to_log_file(f"deep supervision weights (epoch {self.current_epoch}): "
                                   + " ".join(f"{w:.6f}" for w in weights))
