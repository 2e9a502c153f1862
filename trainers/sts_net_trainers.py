"""STS-Net paper (Sci Rep 2025) trainers: STS-Net on nnU-Net's 2d configuration, 2.5D on 3d_fullres, x DWD loss.

``STSNetTrainer`` swaps only the network (``-c 2d``). ``STSNet25DTrainer`` is the paper's 2.5D input
(three adjacent slices as channels) and runs on ``-c 3d_fullres`` (training and nnUNetv2_predict).
``...DWD...`` adds ES-UNet's DWD + focal loss. The paper's amplification blocks are a separate mixin.
"""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.dwd import DWDFocalLoss
from nnunet_ext.training.optimizers import STSNetPaperOptimizer
from nnunet_ext.training.sts_net import SliceStack25D, STSNetArchitecture


class STSNetTrainer(STSNetArchitecture, ExtTrainer):
    """STS-Net (ResNeXt50 + ESCA, DeepLabV3) on a 2d configuration with nnU-Net's loss, augmentation, schedule."""


class STSNet25DTrainer(SliceStack25D, ExtTrainer):
    """STS-Net on 2.5D input (slice and both neighbours as channels); use with -c 3d_fullres."""


class STSNetDWDTrainer(DWDFocalLoss, STSNetArchitecture, ExtTrainer):
    """STS-Net (2d) trained with the DWD + focal loss."""


class STSNet25DDWDTrainer(DWDFocalLoss, SliceStack25D, ExtTrainer):
    """STS-Net 2.5D (-c 3d_fullres) trained with the DWD + focal loss."""


class STSNetPaperScheduleTrainer(STSNetPaperOptimizer, STSNetArchitecture, ExtTrainer):
    """STS-Net (2d) with the paper's optimiser: AdamW lr 1e-4, batch 4, 100 epochs."""


class STSNet25DPaperScheduleTrainer(STSNetPaperOptimizer, SliceStack25D, ExtTrainer):
    """STS-Net 2.5D (-c 3d_fullres) with the paper's optimiser: AdamW lr 1e-4, batch 4 windows, 100 epochs."""
