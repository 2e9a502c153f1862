"""DLKUNet trainers: the paper's S / M / L networks (2d configuration) or their plans-driven depth (3d).

``DLKUNet{S,M,L}Trainer`` swap only the network; ``...PhaseLoss`` / ``...DynamicLoss`` add the paper's
Dice/CE weight schedules (Eq. 10-13), also on nnU-Net's own network (``nnUNetTrainerPhaseLoss`` ...);
``...DWD...`` / ``...RSS...`` add the ES-UNet paper's loss and augmentation. ``DLKUNetPlansTrainer`` follows
nnU-Net's plans for depth as well. ``...PaperSchedule...`` use the paper's optimiser (Adam 1e-3, weight decay
1e-5, x0.9 / 20 epochs, 1e-5 from epoch 200, 400 epochs). docs/dlkunet.md.
"""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.checkpointing import NoActivationCheckpointing
from nnunet_ext.training.dlkunet import DLKUNetArchitecture
from nnunet_ext.training.dwd import DWDFocalLoss
from nnunet_ext.training.loss_schedules import DynamicLossSchedule, PhaseLossSchedule
from nnunet_ext.training.optimizers import DLKUNetPaperOptimizer
from nnunet_ext.training.rss import RSSAugmentation


class DLKUNetSTrainer(DLKUNetArchitecture, ExtTrainer):
    """DLKUNet-S (3 stages, C=96; 1.13 M params in 2D) with nnU-Net's loss, augmentation and schedule."""

    dlkunet_preset = "S"


class DLKUNetMTrainer(DLKUNetArchitecture, ExtTrainer):
    """DLKUNet-M (4 stages, C=96; 4.49 M params in 2D) with nnU-Net's loss, augmentation and schedule."""

    dlkunet_preset = "M"


class DLKUNetLTrainer(DLKUNetArchitecture, ExtTrainer):
    """DLKUNet-L (5 stages, C=96; 17.7 M params in 2D) with nnU-Net's loss, augmentation and schedule."""

    dlkunet_preset = "L"


class DLKUNetPlansTrainer(DLKUNetArchitecture, ExtTrainer):
    """DLKUNet whose depth, strides, kernel sizes and widths all follow nnU-Net's plans (2d and 3d)."""

    dlkunet_preset = None


class DLKUNetLPhaseLossTrainer(PhaseLossSchedule, DLKUNetLTrainer):
    """DLKUNet-L with the paper's phase-based Dice/CE weights (0.6/0.4, then 0.7/0.3)."""


class DLKUNetLDynamicLossTrainer(DynamicLossSchedule, DLKUNetLTrainer):
    """DLKUNet-L with the paper's sigmoid (dynamic) Dice/CE weights."""


class DLKUNetLDWDTrainer(DWDFocalLoss, DLKUNetLTrainer):
    """DLKUNet-L trained with the DWD + focal loss (ES-UNet paper)."""


class DLKUNetLRSSTrainer(RSSAugmentation, DLKUNetLTrainer):
    """DLKUNet-L with Region Specific Scaling added to nnU-Net's augmentation."""


class DLKUNetLDWDRSSTrainer(RSSAugmentation, DWDFocalLoss, DLKUNetLTrainer):
    """DLKUNet-L with DWD + focal loss and Region Specific Scaling."""


class DLKUNetLPaperScheduleTrainer(DLKUNetPaperOptimizer, DLKUNetLTrainer):
    """DLKUNet-L with nnU-Net's loss and the paper's optimiser and learning-rate schedule."""


class DLKUNetLPhaseLossPaperScheduleTrainer(DLKUNetPaperOptimizer, DLKUNetLPhaseLossTrainer):
    """DLKUNet-L as the paper trains it on Synapse: phase-based Dice/CE weights and the paper's optimiser."""


class DLKUNetLDynamicLossPaperScheduleTrainer(DLKUNetPaperOptimizer, DLKUNetLDynamicLossTrainer):
    """DLKUNet-L as the paper trains it on ACDC: sigmoid Dice/CE weights and the paper's optimiser."""


class DLKUNetLNoCheckpointingTrainer(NoActivationCheckpointing, DLKUNetLTrainer):
    """DLKUNet-L without activation checkpointing: faster, about twice the memory at 3D plans."""


# ---- the paper's loss schedules on vanilla nnU-Net's own network (docs/losses.md)

class nnUNetTrainerPhaseLoss(PhaseLossSchedule, ExtTrainer):
    """nnU-Net with DLKUNet's phase-based Dice/CE weights: 0.6/0.4 for the first half, 0.7/0.3 after."""


class nnUNetTrainerPhaseLossPhaseLR(PhaseLossSchedule, ExtTrainer):
    """Phase-based Dice/CE weights plus the paper's learning-rate drop (x0.01) in the second phase."""

    phase_learning_rate = True


class nnUNetTrainerDynamicLoss(DynamicLossSchedule, ExtTrainer):
    """nnU-Net with DLKUNet's sigmoid Dice/CE weights: (0.3, 1) -> (1, 0.7) centred on mid-training."""
