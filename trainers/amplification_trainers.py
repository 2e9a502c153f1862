"""STS-Net (Sci Rep 2025) small-lesion amplification trainers on nnU-Net's own network.

``nnUNetTrainerAmplify`` is the paper's final choice (Table 7 method 4); ``...M1`` to ``...M4`` are the
Table 7 ablation: which lesions count as small (N1 or N2) and which copies they get. ``STSNet...AmplifyTrainer``
add the amplification to the STS-Net network (2D on 2d, 2.5D on 3d_fullres).
"""
from nnunet_ext.training.amplification import SmallLesionAmplification
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.sts_net import SliceStack25D, STSNetArchitecture


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
    """STS-Net Table 7 method 4 (same as nnUNetTrainerAmplify): 4 standard + 1 centre-expansion copy, lesion < N2."""

    amplification_method = 4


class STSNetAmplifyTrainer(SmallLesionAmplification, STSNetArchitecture, ExtTrainer):
    """STS-Net (2D) with its amplification blocks (method 4): the paper's Table 8 last row, on 2d."""

    amplification_method = 4


class STSNet25DAmplifyTrainer(SmallLesionAmplification, SliceStack25D, ExtTrainer):
    """STS-Net 2.5D on 3d_fullres with amplification: slice statistics, in-plane crops (the paper's setting)."""

    amplification_method = 4
    lesion_stats_ndim = 2  # the paper's unit is a (2.5D) slice
    amplification_axes = (-2, -1)  # never resample across the stacked slices
