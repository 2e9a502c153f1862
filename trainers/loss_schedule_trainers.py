"""Loss schedules of the DLKUNet paper and the ELANRes-MSCA-UNet loss family on vanilla nnU-Net's network.

``nnUNetTrainerPhaseLoss`` / ``nnUNetTrainerDynamicLoss``: nnU-Net's Dice + CE with DLKUNet's
phase-based / sigmoid weights. ``nnUNetTrainerELANResLoss``: the weighted Table 1 loss family.
``nnUNetTrainerDecayingDS``: nnU-Net's loss with ELANRes's decaying deep-supervision weights.
Details and configuration: docs/losses.md.
"""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.loss_schedules import (DecayingDeepSupervision, DynamicLossSchedule, ELANResLossFamily,
                                                PhaseLossSchedule)


class nnUNetTrainerPhaseLoss(PhaseLossSchedule, ExtTrainer):
    """nnU-Net with DLKUNet's phase-based Dice/CE weights: 0.6/0.4 for the first half, 0.7/0.3 after."""


class nnUNetTrainerPhaseLossPhaseLR(PhaseLossSchedule, ExtTrainer):
    """Phase-based Dice/CE weights plus the paper's learning-rate drop (x0.01) in the second phase."""

    phase_learning_rate = True


class nnUNetTrainerDynamicLoss(DynamicLossSchedule, ExtTrainer):
    """nnU-Net with DLKUNet's sigmoid Dice/CE weights: (0.3, 1) -> (1, 0.7) centred on mid-training."""


class nnUNetTrainerELANResLoss(ELANResLossFamily, ExtTrainer):
    """nnU-Net with ELANRes's weighted loss family (Dice + Tversky + CE) on every output."""


class nnUNetTrainerDecayingDS(DecayingDeepSupervision, ExtTrainer):
    """nnU-Net's loss with ELANRes's deep-supervision weights: 1 on full resolution, 0.4 x 0.8 per 30 epochs on the rest."""


class nnUNetTrainerELANResLossDecayingDS(DecayingDeepSupervision, ELANResLossFamily, ExtTrainer):
    """ELANRes's training recipe on nnU-Net's network: the weighted loss family with decaying deep supervision."""
