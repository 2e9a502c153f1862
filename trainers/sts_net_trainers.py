"""STS-Net paper (Sci Rep 2025) trainers: STS-Net on nnU-Net's 2d configuration, 2.5D on 3d_fullres, x DWD loss.

``STSNetTrainer`` swaps only the network (``-c 2d``). ``STSNet25DTrainer`` is the paper's 2.5D input
(three adjacent slices as channels) and runs on ``-c 3d_fullres`` (training and nnUNetv2_predict).
``...DWD...`` adds ES-UNet's DWD + focal loss. The paper's amplification blocks: ``nnUNetTrainerAmplify`` is
the paper's final choice (Table 7 method 4) on nnU-Net's own network, ``...M1`` to ``...M4`` the Table 7
ablation (which lesions count as small, N1 or N2, and which copies they get); ``STSNet...AmplifyTrainer`` add
them to the STS-Net network (docs/amplification.md).
"""
from nnunet_ext.training.amplification import SmallLesionAmplification
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


# ---- the paper's amplification blocks (Table 7), on nnU-Net's own network and on STS-Net

class nnUNetTrainerAmplify(SmallLesionAmplification, ExtTrainer):
    """nnU-Net with STS-Net amplification (method 4: 4 standard + 1 centre copy of images with lesion < N2)."""

    amplification_method = 4


class nnUNetTrainerAmplifyM1(nnUNetTrainerAmplify):
    """STS-Net Table 7 method 1: 4 standard copies of images with lesion < N1."""

    amplification_method = 1


class nnUNetTrainerAmplifyM2(nnUNetTrainerAmplify):
    """STS-Net Table 7 method 2: 4 standard copies of images with lesion < N2."""

    amplification_method = 2


class nnUNetTrainerAmplifyM3(nnUNetTrainerAmplify):
    """STS-Net Table 7 method 3: 8 standard copies (half cropped again while still < N2) of images with lesion < N2."""

    amplification_method = 3


class nnUNetTrainerAmplifyM4(nnUNetTrainerAmplify):
    """STS-Net Table 7 method 4: the same training as nnUNetTrainerAmplify, under the ablation's row name.

    A class of its own (not an alias) so that its results folder and checkpoints say which row of the
    Table 7 ablation (``nnunet-ext benchmark --ablation sts_net_table7``) they belong to.
    """


class STSNetAmplifyTrainer(SmallLesionAmplification, STSNetArchitecture, ExtTrainer):
    """STS-Net (2D) with its amplification blocks (method 4): the paper's Table 8 last row, on 2d."""

    amplification_method = 4


class STSNet25DAmplifyTrainer(SmallLesionAmplification, SliceStack25D, ExtTrainer):
    """STS-Net 2.5D on 3d_fullres with amplification: slice statistics, in-plane crops (the paper's setting)."""

    amplification_method = 4
    lesion_stats_ndim = 2  # the paper's unit is a (2.5D) slice
    amplification_axes = (-2, -1)  # never resample across the stacked slices
