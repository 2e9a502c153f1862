"""Trainer mixins: ES-UNet's focal + alpha * DWD loss (``DWDFocalLoss``) and its focal + Dice baseline
(``FocalDiceLoss``), in place of nnU-Net's Dice + CE.

Only ``build_segmentation_loss`` changes; ExtTrainer still wraps it in nnU-Net's
DeepSupervisionWrapper, so regions, the ignore label and deep supervision keep working.
Compose it left of the architecture: ``class T(DWDFocalLoss, ESUNetArchitecture, ExtTrainer)``.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from nnunet_ext.losses.compound import DWD_and_BinaryFocal_loss, DWD_and_Focal_loss


def build_dwd_focal_loss(has_regions: bool, ignore_label: Optional[int], batch_dice: bool, ddp: bool,
                         weighting: str = "corrected", alpha: float = 1.0, gamma: float = 2.0,
                         squared: bool = True, detach_weights: bool = True, smooth: float = 1e-5) -> nn.Module:
    """The loss for one network output: the region (sigmoid) or label (softmax) compound, as nnU-Net chooses."""
    dwd_kwargs = {"batch_dice": batch_dice, "smooth": smooth, "ddp": ddp, "weighting": weighting,
                  "squared": squared, "detach_weights": detach_weights}
    if has_regions:
        return DWD_and_BinaryFocal_loss(dwd_kwargs, {"gamma": gamma}, weight_focal=1.0, weight_dwd=alpha,
                                        use_ignore_label=ignore_label is not None)
    return DWD_and_Focal_loss(dwd_kwargs, {"gamma": gamma}, weight_focal=1.0, weight_dwd=alpha,
                              ignore_label=ignore_label)


class DWDFocalLoss:
    """Loss mixin: focal (gamma 2) + alpha * Dynamically Weighted Dice (alpha 1), ES-UNet Eq. 6."""

    dwd_weighting: str = "corrected"   # "printed" = Eq. 3 as printed; "none" = plain Dice (paper's baseline)
    dwd_alpha: float = 1.0             # Eq. 6 alpha
    focal_gamma: float = 2.0           # Eq. 1 gamma
    dwd_squared: bool = True           # sums of p^2, y^2 as Eq. 2-5 (False: nnU-Net's sums of p, y)
    dwd_detach_weights: bool = True    # w_P, w_R re-weight each step without a gradient of their own
    dwd_smooth: float = 1e-5           # nnU-Net's Dice smoothing

    def build_segmentation_loss(self) -> nn.Module:
        return build_dwd_focal_loss(
            has_regions=self.label_manager.has_regions, ignore_label=self.label_manager.ignore_label,
            batch_dice=self.dice_over_batch(), ddp=self.is_ddp, weighting=self.dwd_weighting,
            alpha=self.dwd_alpha, gamma=self.focal_gamma, squared=self.dwd_squared,
            detach_weights=self.dwd_detach_weights, smooth=self.dwd_smooth)


class FocalDiceLoss(DWDFocalLoss):
    """Loss mixin: focal (gamma 2) + plain Dice (Eq. 2), the ES-UNet paper's baseline loss (Tables 1-4).

    The same compound as ``DWDFocalLoss`` with unit weights, so a FocalDice trainer and its DWD twin differ
    in the Dice weighting alone (the paper's Table 3 and 5 comparisons)."""

    dwd_weighting: str = "none"
