"""ES-UNet's total loss (Eq. 6): mean focal + alpha * DWD, shaped like nnU-Net's DC_and_CE_loss / DC_and_BCE_loss.

Same call conventions and ignore-label handling as nnU-Net's compounds, so ``DeepSupervisionWrapper``
and the trainer's ``_build_loss`` (which compiles ``loss.dc``) treat them the same way.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nnunet_ext.losses.dwd import DynamicallyWeightedDiceLoss
from nnunet_ext.losses.focal import BinaryFocalLoss, FocalLoss
from nnunet_ext.registry import register


def _softmax_dim1(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, 1)


@register("loss")
class DWD_and_Focal_loss(nn.Module):
    """ES-UNet total loss (Eq. 6) for softmax labels: focal + alpha * DWD over foreground classes."""

    def __init__(self, dwd_kwargs: dict, focal_kwargs: dict, weight_focal: float = 1.0, weight_dwd: float = 1.0,
                 ignore_label: Optional[int] = None):
        """``weight_dwd`` is the paper's alpha. ``dwd_kwargs`` go to DynamicallyWeightedDiceLoss
        (do_bg defaults to False, as nnU-Net's Dice for labels), ``focal_kwargs`` to FocalLoss."""
        super().__init__()
        self.weight_focal = float(weight_focal)
        self.weight_dwd = float(weight_dwd)
        self.ignore_label = ignore_label
        self.focal = FocalLoss(ignore_index=ignore_label, **focal_kwargs)
        # Named ``dc`` like nnU-Net's compounds: ExtTrainer._build_loss compiles ``loss.dc``.
        self.dc = DynamicallyWeightedDiceLoss(apply_nonlin=_softmax_dim1, **{"do_bg": False, **dwd_kwargs})

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target`` is nnU-Net's label map (b, 1, ...)."""
        if target.ndim != net_output.ndim or target.shape[1] != 1:
            raise ValueError(f"DWD_and_Focal_loss expects a label map target (b, 1, ...) for output "
                             f"{tuple(net_output.shape)}, got {tuple(target.shape)}")
        if self.ignore_label is not None:
            mask = target != self.ignore_label
            # Ignored voxels get label 0 for the DWD one-hot; the mask removes them from every sum.
            target_dwd = torch.where(mask, target, 0)
        else:
            target_dwd, mask = target, None
        dwd = self.dc(net_output, target_dwd, loss_mask=mask) if self.weight_dwd != 0 else 0
        focal = self.focal(net_output, target) if self.weight_focal != 0 else 0
        return self.weight_focal * focal + self.weight_dwd * dwd


@register("loss")
class DWD_and_BinaryFocal_loss(nn.Module):
    """ES-UNet total loss (Eq. 6) for sigmoid regions: binary focal + alpha * DWD over every region."""

    def __init__(self, dwd_kwargs: dict, focal_kwargs: dict, weight_focal: float = 1.0, weight_dwd: float = 1.0,
                 use_ignore_label: bool = False):
        """As nnU-Net's DC_and_BCE_loss: the target is one-hot regions and, with ``use_ignore_label``, its
        last channel marks the ignored voxels. ``dwd_kwargs`` do_bg defaults to True (every region counts)."""
        super().__init__()
        self.weight_focal = float(weight_focal)
        self.weight_dwd = float(weight_dwd)
        self.use_ignore_label = use_ignore_label
        self.focal = BinaryFocalLoss(**focal_kwargs)
        self.dc = DynamicallyWeightedDiceLoss(apply_nonlin=torch.sigmoid, **{"do_bg": True, **dwd_kwargs})

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        expected = net_output.shape[1] + (1 if self.use_ignore_label else 0)
        if target.ndim != net_output.ndim or target.shape[1] != expected:
            raise ValueError(f"DWD_and_BinaryFocal_loss expects one-hot regions with {expected} channels "
                             f"({'regions + ignore channel' if self.use_ignore_label else 'one per region'}) "
                             f"for output {tuple(net_output.shape)}, got {tuple(target.shape)}")
        if self.use_ignore_label:
            ignored = target[:, -1:]
            mask = ~ignored if ignored.dtype == torch.bool else (1 - ignored).bool()
            target_regions = target[:, :-1]
        else:
            target_regions, mask = target, None
        dwd = self.dc(net_output, target_regions, loss_mask=mask) if self.weight_dwd != 0 else 0
        focal = self.focal(net_output, target_regions, loss_mask=mask) if self.weight_focal != 0 else 0
        return self.weight_focal * focal + self.weight_dwd * dwd
