"""ELANRes-MSCA-UNet trainers (3d_fullres as in the paper; 2d works too).

``ELANResMSCAUNetTrainer`` swaps only the network (trained multi-branch, predicted with fused
convolutions); ``...PaperLoss`` adds the paper's loss family and decaying deep-supervision weights;
``...Inplane...`` uses per-slice (2D) MSCA strips; ``...DWD...`` / ``...RSS...`` add the ES-UNet
paper's loss and augmentation. ``nnUNetTrainerELANResLoss`` / ``...DecayingDS`` put the paper's loss family
and deep-supervision weights on nnU-Net's own network (docs/losses.md). The paper's liver -> tumour cascade
trains any of these on both stages (``nnunet-ext cascade``, docs/cascade.md). docs/elanres_msca_unet.md.
"""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.checkpointing import NoActivationCheckpointing
from nnunet_ext.training.dwd import DWDFocalLoss
from nnunet_ext.training.elanres import ELANResMSCAUNetArchitecture
from nnunet_ext.training.loss_schedules import DecayingDeepSupervision, ELANResLossFamily
from nnunet_ext.training.optimizers import ELANResPaperOptimizer
from nnunet_ext.training.rss import RSSAugmentation


class ELANResMSCAUNetTrainer(ELANResMSCAUNetArchitecture, ExtTrainer):
    """ELANRes-MSCA-UNet with nnU-Net's loss, augmentation and schedule."""


class ELANResMSCAUNetInplaneTrainer(ELANResMSCAUNetTrainer):
    """ELANRes-MSCA-UNet with MSCA strips in-plane only (the paper's 3D-to-2D transformation)."""

    elanres_msca_axes = "inplane"


class ELANResMSCAUNetPaperLossTrainer(DecayingDeepSupervision, ELANResLossFamily, ELANResMSCAUNetTrainer):
    """ELANRes-MSCA-UNet with the paper's loss family and decaying deep-supervision weights (Eq. 1-2)."""


class ELANResMSCAUNetDWDTrainer(DWDFocalLoss, ELANResMSCAUNetTrainer):
    """ELANRes-MSCA-UNet trained with the DWD + focal loss (ES-UNet paper)."""


class ELANResMSCAUNetRSSTrainer(RSSAugmentation, ELANResMSCAUNetTrainer):
    """ELANRes-MSCA-UNet with Region Specific Scaling added to nnU-Net's augmentation."""


class ELANResMSCAUNetDWDRSSTrainer(RSSAugmentation, DWDFocalLoss, ELANResMSCAUNetTrainer):
    """ELANRes-MSCA-UNet with DWD + focal loss and Region Specific Scaling."""


class ELANResMSCAUNetPaperLossPaperScheduleTrainer(ELANResPaperOptimizer, ELANResMSCAUNetPaperLossTrainer):
    """ELANRes-MSCA-UNet's training recipe: loss family, decaying deep supervision, Adam 1e-4 x0.8 / 30 epochs."""


class ELANResMSCAUNetNoCheckpointingTrainer(NoActivationCheckpointing, ELANResMSCAUNetTrainer):
    """ELANRes-MSCA-UNet without activation checkpointing: faster, several times the memory."""


# ---- the paper's loss family on vanilla nnU-Net's own network (docs/losses.md)

class nnUNetTrainerELANResLoss(ELANResLossFamily, ExtTrainer):
    """nnU-Net with ELANRes's weighted loss family (Dice + Tversky + CE) on every output."""


class nnUNetTrainerDecayingDS(DecayingDeepSupervision, ExtTrainer):
    """nnU-Net's loss, ELANRes's deep-supervision weights: 1 at full resolution, the rest 0.4 x 0.8 per 30 epochs."""


class nnUNetTrainerELANResLossDecayingDS(DecayingDeepSupervision, ELANResLossFamily, ExtTrainer):
    """ELANRes's training recipe on nnU-Net's network: the weighted loss family with decaying deep supervision."""
