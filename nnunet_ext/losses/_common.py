"""Helpers shared by the soft region losses (DWD, the ELANRes family): target, mask and batch sums.

One place for the input checks and nnU-Net's conventions, so every soft loss accepts the same targets,
rejects the same bad input with the same message and pools over the batch (and DDP ranks) the same way.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional

import torch
from torch import nn


class SoftLossBase(nn.Module):
    """The settings of nnU-Net's soft Dice (``MemoryEfficientSoftDiceLoss``), so every soft loss is a drop-in for it."""

    def __init__(self, apply_nonlin: Optional[Callable] = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1e-5, ddp: bool = True):
        super().__init__()
        if smooth < 0:
            raise ValueError(f"{type(self).__name__} smooth must be >= 0, got {smooth}")
        self.apply_nonlin = apply_nonlin
        self.batch_dice = batch_dice
        self.do_bg = do_bg
        self.smooth = float(smooth)
        self.ddp = ddp


def target_as_one_hot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` (label map (b, 1, ...) / (b, ...), or one-hot shaped like ``x``) as a float one-hot like ``x``."""
    if x.ndim < 3:
        raise ValueError(f"prediction must be (b, c, *spatial); got shape {tuple(x.shape)}")
    if x.ndim != y.ndim:
        y = y.view((y.shape[0], 1, *y.shape[1:]))
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f"prediction {tuple(x.shape)} and target {tuple(y.shape)} differ in batch or spatial size")
    if x.shape == y.shape:
        return y.to(torch.float32)
    if y.shape[1] != 1:
        raise ValueError(f"target {tuple(y.shape)} is neither a label map (one channel) nor one-hot with "
                         f"{x.shape[1]} channels like the prediction")
    # meta tensors (the memory estimator's shapes-only probe) have no values to check
    if y.numel() and not y.is_meta and (int(y.min()) < 0 or int(y.max()) >= x.shape[1]):
        raise ValueError(f"target labels must lie in [0, {x.shape[1] - 1}] for a {x.shape[1]}-channel prediction; "
                         f"got [{int(y.min())}, {int(y.max())}] (an ignore label must be masked out first)")
    one_hot = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
    one_hot.scatter_(1, y.long(), 1)
    return one_hot


def check_loss_mask(loss_mask: Optional[torch.Tensor], x: torch.Tensor) -> None:
    """A loss mask must be (b, 1, *spatial) of the prediction ``x`` (nnU-Net's ignore-label mask)."""
    if loss_mask is not None and (loss_mask.shape[0] != x.shape[0] or loss_mask.shape[1] != 1
                                  or loss_mask.shape[2:] != x.shape[2:]):
        raise ValueError(f"loss_mask {tuple(loss_mask.shape)} must be (b, 1, *spatial) of the prediction "
                         f"{tuple(x.shape)}")


def pool_over_batch(stats: Mapping[str, torch.Tensor], ddp: bool) -> Dict[str, torch.Tensor]:
    """Per-(sample, class) sums -> per-class sums over the batch, all-gathered over DDP ranks as nnU-Net does."""
    if ddp and torch.distributed.is_available() and torch.distributed.is_initialized():
        from nnunetv2.utilities.ddp_allgather import AllGatherGrad
        stats = {k: AllGatherGrad.apply(v).sum(0, dtype=torch.float32) for k, v in stats.items()}
    return {k: v.sum(0, dtype=torch.float32) for k, v in stats.items()}
