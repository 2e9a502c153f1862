"""Dynamically Weighted Dice (DWD) loss of ES-UNet (Park et al., BMC Med Imaging 2025, Eq. 3-5).

Per class, with I = sum(y p), P = sum(p^2) (predicted volume), G = sum(y^2) (target volume):

    C_P = I / P,  C_R = I / G,  d = C_P - C_R
    w_P = 1 - d,  w_R = 1 + d
    L = 1 - 2 I / (w_P * P + w_R * G)        ("corrected", the default)

The printed Eq. 3 pairs w_P with G and w_R with P; that form is never larger than the Dice loss and
eases off false positives when precision is low, the opposite of what the paper's text says DWD does.
It is available as ``weighting="printed"``; ``weighting="none"`` gives the plain Dice loss (Eq. 2),
the paper's "focal + Dice" baseline. See docs/dwd_loss.md for every decision.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from nnunet_ext.losses._common import SoftLossBase, check_loss_mask, pool_over_batch, target_as_one_hot
from nnunet_ext.registry import register

WEIGHTINGS = ("corrected", "printed", "none")


def dwd_weights(intersect: torch.Tensor, sum_pred: torch.Tensor, sum_gt: torch.Tensor, smooth: float):
    """(w_P, w_R) of Eq. 4 from the sums, with C_P and C_R each clamped to [0, 1] first.

    With squared sums C_P = I / sum(p^2) exceeds 1 for soft predictions; clamping the difference instead
    would set w_P = 0 whenever C_P >= 1 + C_R, removing the false-positive term exactly when predictions are
    worst. Clamping each coefficient keeps d in [-1, 1], both weights in [0, 2] and both terms alive
    (docs/dwd_loss.md)."""
    c_precision = ((intersect + smooth) / (sum_pred + smooth).clamp_min(1e-8)).clamp(0.0, 1.0)
    c_recall = ((intersect + smooth) / (sum_gt + smooth).clamp_min(1e-8)).clamp(0.0, 1.0)
    difference = c_precision - c_recall
    return 1.0 - difference, 1.0 + difference


@register("loss")
class DynamicallyWeightedDiceLoss(SoftLossBase):
    """ES-UNet's Dynamically Weighted Dice loss (Eq. 3-5), per class, a drop-in for nnU-Net's soft Dice."""

    def __init__(self, apply_nonlin: Optional[Callable] = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1e-5, ddp: bool = True, weighting: str = "corrected", squared: bool = True,
                 detach_weights: bool = True):
        """
        ``weighting``: "corrected" (w_P on the predicted volume; default), "printed" (Eq. 3 as printed),
        "none" (plain Dice, Eq. 2). ``squared``: sums of p^2 and y^2 as in the paper (False: sums of p and y
        as nnU-Net's Dice). ``detach_weights``: w_P, w_R re-weight each step but get no gradient.
        The loss is 1 - mean over classes of the (weighted) Dice ratio, so it lies in [0, 1].
        """
        super().__init__(apply_nonlin, batch_dice, do_bg, smooth, ddp)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"DWD weighting {weighting!r} is unknown; expected one of {WEIGHTINGS}")
        self.weighting = weighting
        self.squared = squared
        self.detach_weights = detach_weights

    def sums(self, x: torch.Tensor, y: torch.Tensor, loss_mask: Optional[torch.Tensor] = None):
        """I, P, G of shape (b, c) -- or (c,) with batch_dice, summed over all DDP ranks like nnU-Net."""
        x = x.float()  # float16 logits (autocast): the softmax / sigmoid in float32, as the focal term
        if self.apply_nonlin is not None:
            x = self.apply_nonlin(x)
        axes = tuple(range(2, x.ndim))
        with torch.no_grad():
            y_onehot = target_as_one_hot(x, y)
            check_loss_mask(loss_mask, x)
            if not self.do_bg:
                y_onehot = y_onehot[:, 1:]
            if loss_mask is not None:
                y_onehot = y_onehot * loss_mask
            sum_gt = (y_onehot * y_onehot if self.squared else y_onehot).sum(axes, dtype=torch.float32)
        if not self.do_bg:
            x = x[:, 1:]
        if loss_mask is not None:
            x = x * loss_mask
        # y_onehot already carries the mask, and the mask is 0/1, so (x m)(y m) = x y m.
        intersect = (x * y_onehot).sum(axes, dtype=torch.float32)
        sum_pred = (x * x if self.squared else x).sum(axes, dtype=torch.float32)

        if self.batch_dice:
            pooled = pool_over_batch({"i": intersect, "p": sum_pred, "g": sum_gt}, self.ddp)
            intersect, sum_pred, sum_gt = pooled["i"], pooled["p"], pooled["g"]
        return intersect, sum_pred, sum_gt

    def dice_ratio(self, intersect: torch.Tensor, sum_pred: torch.Tensor, sum_gt: torch.Tensor) -> torch.Tensor:
        """The (weighted) Dice ratio per class, in [0, 1]."""
        if self.weighting == "none":
            w_pred = w_gt = torch.ones_like(sum_pred)
        else:
            w_p, w_r = dwd_weights(intersect, sum_pred, sum_gt, self.smooth)
            if self.detach_weights:
                w_p, w_r = w_p.detach(), w_r.detach()
            w_pred, w_gt = (w_p, w_r) if self.weighting == "corrected" else (w_r, w_p)
        denominator = (w_pred * sum_pred + w_gt * sum_gt + self.smooth).clamp_min(1e-8)
        # "corrected" can never exceed 1 (its denominator is >= P + G); "printed" can (weights < 1 on a
        # large sum), and a Dice ratio above 1 is meaningless, so cap it there.
        return ((2 * intersect + self.smooth) / denominator).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor, loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return 1.0 - self.dice_ratio(*self.sums(x, y, loss_mask)).mean()
