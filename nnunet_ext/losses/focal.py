"""Focal loss (Lin et al. 2017; ES-UNet Eq. 1): cross-entropy scaled by (1 - p_t)^gamma, from logits.

Eq. 1 is written for one binary channel; ``FocalLoss`` is its softmax multi-class form (p_t is the
probability of the true class), ``BinaryFocalLoss`` applies Eq. 1 to every sigmoid channel (regions).
Both take logits and use log-softmax / log-sigmoid, so log p_t never sees a rounded-to-zero probability.
No class-balance factor alpha_t: the paper has none (its alpha weights DWD against focal, Eq. 6).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.registry import register

# (1 - p_t) is floored here before the power, so gamma < 1 keeps a finite gradient at p_t -> 1.
_MODULATION_FLOOR = 1e-6


def focal_term(log_pt: torch.Tensor, gamma: float) -> torch.Tensor:
    """-(1 - p_t)^gamma * log p_t, element-wise, from log p_t."""
    one_minus_pt = (-torch.expm1(log_pt)).clamp_min(_MODULATION_FLOOR)
    return -(one_minus_pt ** gamma) * log_pt


def _check_gamma(gamma: float) -> float:
    if not gamma >= 0:
        raise ValueError(f"focal gamma must be >= 0 (the paper uses 2), got {gamma}")
    return float(gamma)


@register("loss")
class FocalLoss(nn.Module):
    """Softmax focal loss (ES-UNet Eq. 1, multi-class), mean over the voxels that are not ignored."""

    def __init__(self, gamma: float = 2.0, ignore_index: Optional[int] = None):
        super().__init__()
        self.gamma = _check_gamma(gamma)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (b, c, ...); ``target`` a label map (b, 1, ...) or (b, ...) as nnU-Net passes it."""
        if target.ndim == logits.ndim:
            if target.shape[1] != 1:
                raise ValueError(f"focal loss target {tuple(target.shape)} must be a label map with one channel")
            target = target[:, 0]
        if target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
            raise ValueError(f"focal loss logits {tuple(logits.shape)} and target {tuple(target.shape)} differ "
                             f"in batch or spatial size")
        target = target.long()
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        safe_target = torch.where(valid, target, 0)
        # meta tensors (the memory estimator's shapes-only probe) have no values to check
        if not target.is_meta and valid.any() and (safe_target.max() >= logits.shape[1] or safe_target.min() < 0):
            raise ValueError(f"focal loss target holds labels outside [0, {logits.shape[1] - 1}] "
                             f"(ignore_index={self.ignore_index})")
        log_pt = F.log_softmax(logits.float(), dim=1).gather(1, safe_target[:, None])[:, 0]
        per_voxel = focal_term(log_pt, self.gamma) * valid
        # All ignored: 0, still attached to the graph (like nnU-Net skipping CE when nothing is labelled).
        return per_voxel.sum() / valid.sum().clamp_min(1)


@register("loss")
class BinaryFocalLoss(nn.Module):
    """Sigmoid focal loss (ES-UNet Eq. 1) per channel, for region-based training; mean over channels and voxels."""

    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = _check_gamma(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, loss_mask: Optional[torch.Tensor] = None):
        """``target`` one-hot (b, c, ...) in {0, 1}; ``loss_mask`` (b, 1, ...) is 1 where the loss counts."""
        if target.shape != logits.shape:
            raise ValueError(f"binary focal loss target {tuple(target.shape)} must be one-hot shaped like the "
                             f"logits {tuple(logits.shape)}")
        logits = logits.float()
        target = target.float()
        # log p_t = log sigmoid(x) where y = 1, log sigmoid(-x) where y = 0 (soft y interpolates).
        log_pt = target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)
        per_element = focal_term(log_pt, self.gamma)
        if loss_mask is None:
            return per_element.mean()
        if loss_mask.shape[0] != logits.shape[0] or loss_mask.shape[1] != 1 or loss_mask.shape[2:] != logits.shape[2:]:
            raise ValueError(f"loss_mask {tuple(loss_mask.shape)} must be (b, 1, *spatial) of the logits "
                             f"{tuple(logits.shape)}")
        loss_mask = loss_mask.float()
        return (per_element * loss_mask).sum() / (loss_mask.sum() * logits.shape[1]).clamp_min(1)
