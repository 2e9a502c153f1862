"""ELANRes-MSCA-UNet's loss family (Table 1) as drop-ins for nnU-Net's soft Dice, and their weighted sum.

Each region loss takes ``(x, y, loss_mask=None)`` exactly like nnU-Net's ``MemoryEfficientSoftDiceLoss``:
``x`` the network output (``apply_nonlin`` turns it into probabilities), ``y`` a label map (b, 1, ...) or
a one-hot / region target shaped like ``x``, ``loss_mask`` (b, 1, ...) 1 where the loss counts. Sums run
per sample and class, or over the batch with ``batch_dice`` (all-gathered across DDP ranks, as nnU-Net
does), and the per-class losses are averaged. With smooth terms in numerator and denominator an empty
class predicted empty scores a perfect 0, never NaN. Formulas and typo decisions: docs/losses.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional

import torch
from torch import nn

from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1

from nnunet_ext.losses._common import SoftLossBase, check_loss_mask, pool_over_batch, target_as_one_hot
from nnunet_ext.registry import register


class SoftRegionLoss(SoftLossBase):
    """Base of the soft region losses: probabilities, one-hot, mask, per-class sums, DDP, class mean."""

    def statistics(self, p: torch.Tensor, g: torch.Tensor, axes: tuple,
                   mask: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Per-(sample, class) sums over ``axes`` of the masked probabilities ``p`` and one-hot ``g``."""
        raise NotImplementedError

    def per_class_loss(self, stats: Dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor, loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.apply_nonlin is not None:
            x = self.apply_nonlin(x)
        with torch.no_grad():
            g = target_as_one_hot(x, y)
            check_loss_mask(loss_mask, x)
        if not self.do_bg:
            if x.shape[1] < 2:
                raise ValueError("do_bg=False needs at least two channels (background + one class)")
            x, g = x[:, 1:], g[:, 1:]
        if loss_mask is not None:
            # multiply both: masked voxels then add nothing to any sum (also not to 1 - p or 1 - g terms,
            # which the subclasses form as mask - p and mask - g)
            mask = loss_mask.to(x.dtype)
            x, g = x * mask, g * mask
        else:
            mask = None
        stats = self.statistics(x, g, tuple(range(2, x.ndim)), mask)
        if self.batch_dice:
            stats = pool_over_batch(stats, self.ddp)
        return self.per_class_loss(stats).mean()


class _OverlapLoss(SoftRegionLoss):
    """Losses of true positives, false positives and false negatives (soft, from probabilities)."""

    def statistics(self, p, g, axes, mask):
        tp = (p * g).sum(axes, dtype=torch.float32)
        # fp = sum p (1 - g), fn = sum (1 - p) g, from three sums as nnU-Net's memory-efficient Dice does
        sum_pred = p.sum(axes, dtype=torch.float32)
        sum_gt = g.sum(axes, dtype=torch.float32)
        return {"tp": tp, "fp": (sum_pred - tp).clamp_min(0), "fn": (sum_gt - tp).clamp_min(0)}

    def ratio(self, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        return (numerator + self.smooth) / (denominator + self.smooth).clamp_min(1e-8)

    def dice(self, s):
        return self.ratio(2 * s["tp"], 2 * s["tp"] + s["fp"] + s["fn"])


@register("loss")
class DiceLoss(_OverlapLoss):
    """Soft Dice loss 1 - (2 TP + eps) / (2 TP + FP + FN + eps) (ELANRes Table 1, DLKUNet Eq. 8)."""

    def per_class_loss(self, s):
        return 1.0 - self.dice(s)


@register("loss")
class TverskyLoss(_OverlapLoss):
    """Tversky loss 1 - (TP + eps) / (TP + alpha FP + beta FN + eps); alpha 0.3, beta 0.7 favour recall."""

    def __init__(self, apply_nonlin: Optional[Callable] = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1e-5, ddp: bool = True, alpha: float = 0.3, beta: float = 0.7):
        super().__init__(apply_nonlin, batch_dice, do_bg, smooth, ddp)
        if alpha < 0 or beta < 0:
            raise ValueError(f"Tversky alpha (FP weight) and beta (FN weight) must be >= 0; got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)

    def per_class_loss(self, s):
        return 1.0 - self.ratio(s["tp"], s["tp"] + self.alpha * s["fp"] + self.beta * s["fn"])


@register("loss")
class JaccardLoss(_OverlapLoss):
    """Soft Jaccard (IoU) loss 1 - (TP + eps) / (TP + FP + FN + eps); Table 1's '1 - Intersection' is a typo."""

    def per_class_loss(self, s):
        return 1.0 - self.ratio(s["tp"], s["tp"] + s["fp"] + s["fn"])


@register("loss")
class ExpLogDiceLoss(_OverlapLoss):
    """ELDice: (-ln Dice)^0.3 per class (exponential-logarithmic Dice); 0, not NaN, at a perfect Dice."""

    def __init__(self, apply_nonlin: Optional[Callable] = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1e-5, ddp: bool = True, gamma: float = 0.3):
        super().__init__(apply_nonlin, batch_dice, do_bg, smooth, ddp)
        if gamma <= 0:
            raise ValueError(f"ELDice gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)

    def per_class_loss(self, s):
        neg_log = -torch.log(self.dice(s).clamp(1e-12, 1.0))
        # d/dx x^gamma is infinite at x = 0 (Dice = 1): give those classes loss 0 and gradient 0
        positive = neg_log > 1e-12
        safe = torch.where(positive, neg_log, torch.ones_like(neg_log))
        return torch.where(positive, safe ** self.gamma, torch.zeros_like(neg_log))


@register("loss")
class SensitivitySpecificityLoss(SoftRegionLoss):
    """SSLoss: 0.05 x mean squared error on the target + 0.95 x mean squared error on the non-target region."""

    def __init__(self, apply_nonlin: Optional[Callable] = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1e-5, ddp: bool = True, target_weight: float = 0.05,
                 background_weight: float = 0.95):
        super().__init__(apply_nonlin, batch_dice, do_bg, smooth, ddp)
        if target_weight < 0 or background_weight < 0 or target_weight + background_weight <= 0:
            raise ValueError(f"SSLoss weights must be >= 0 and not both 0; got {target_weight}, {background_weight}")
        self.target_weight, self.background_weight = float(target_weight), float(background_weight)

    def statistics(self, p, g, axes, mask):
        # p and g are already masked; the non-target indicator is mask - g (1 - g without a mask)
        not_g = (1.0 - g) if mask is None else (mask - g)
        return {"target_error": ((g - p) ** 2 * g).sum(axes, dtype=torch.float32),
                "background_error": ((g - p) ** 2 * not_g).sum(axes, dtype=torch.float32),
                "target_size": g.sum(axes, dtype=torch.float32),
                "background_size": not_g.sum(axes, dtype=torch.float32)}

    def per_class_loss(self, s):
        # an empty region has error 0 and size 0: 0 / smooth = 0, never NaN
        sensitivity_term = s["target_error"] / (s["target_size"] + self.smooth).clamp_min(1e-8)
        specificity_term = s["background_error"] / (s["background_size"] + self.smooth).clamp_min(1e-8)
        return self.target_weight * sensitivity_term + self.background_weight * specificity_term


REGION_TERMS = {"dice": DiceLoss, "tversky": TverskyLoss, "jaccard": JaccardLoss, "ss": SensitivitySpecificityLoss,
                "eldice": ExpLogDiceLoss}
TERMS = tuple(REGION_TERMS) + ("ce",)


@dataclass(frozen=True)
class RegionLossSettings:
    """Hyper-parameters of the Table 1 losses (the paper's values are the defaults)."""

    smooth: float = 1e-5
    tversky_alpha: float = 0.3  # on false positives
    tversky_beta: float = 0.7  # on false negatives
    ss_target_weight: float = 0.05
    ss_background_weight: float = 0.95
    eldice_gamma: float = 0.3

    def term_kwargs(self, name: str) -> dict:
        return {"tversky": {"alpha": self.tversky_alpha, "beta": self.tversky_beta},
                "ss": {"target_weight": self.ss_target_weight, "background_weight": self.ss_background_weight},
                "eldice": {"gamma": self.eldice_gamma}}.get(name, {})


@register("loss")
class WeightedRegionLoss(nn.Module):
    """Weighted sum of the ELANRes loss family (dice, tversky, jaccard, ss, eldice) and CE / BCE for one output."""

    def __init__(self, weights: Mapping[str, float], has_regions: bool = False, ignore_label: Optional[int] = None,
                 batch_dice: bool = False, ddp: bool = True, settings: RegionLossSettings = RegionLossSettings()):
        """
        ``weights``: term name -> weight, names from ``TERMS`` ("ce" is cross-entropy for label maps and
        BCE for regions). ``has_regions``: sigmoid + BCE and every channel counts (nnU-Net's region training;
        the ignore label is then the target's last channel); otherwise softmax + CE, background left out of
        the region terms. ``ignore_label``: label value (label maps) or not None (regions) to mask out.
        """
        super().__init__()
        unknown = set(weights) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown loss term(s) {sorted(unknown)}; expected names from {TERMS}")
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"loss weights must be >= 0 with at least one > 0; got {dict(weights)}")
        self.weights = {k: float(v) for k, v in weights.items() if v != 0}
        self.has_regions = has_regions
        self.ignore_label = ignore_label
        # probabilities are computed once here, so the terms get apply_nonlin=None
        self.terms = nn.ModuleDict({
            name: REGION_TERMS[name](apply_nonlin=None, batch_dice=batch_dice, do_bg=has_regions,
                                     smooth=settings.smooth, ddp=ddp, **settings.term_kwargs(name))
            for name in self.weights if name != "ce"})
        if has_regions:
            self.ce = nn.BCEWithLogitsLoss(reduction="none")
        else:
            self.ce = RobustCrossEntropyLoss(ignore_index=ignore_label if ignore_label is not None else -100)

    def split_target(self, target: torch.Tensor):
        """(target without ignored voxels, loss mask or None), nnU-Net's conventions for labels and regions."""
        if self.ignore_label is None:
            return target, None
        if self.has_regions:
            mask = ~target[:, -1:].bool()
            return target[:, :-1], mask
        mask = target != self.ignore_label
        return torch.where(mask, target, 0), mask

    def cross_entropy(self, net_output, target, mask):
        if self.has_regions:
            bce = self.ce(net_output, target.float())
            if mask is None:
                return bce.mean()
            return (bce * mask).sum() / mask.sum().clamp_min(1) / net_output.shape[1]
        if mask is not None and not mask.any():
            return net_output.sum() * 0  # everything ignored: CE would be 0 / 0
        return self.ce(net_output, target)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim != net_output.ndim:
            raise ValueError(f"target {tuple(target.shape)} must have the prediction's {net_output.ndim} dimensions "
                             f"(b, 1, ...) for labels or (b, c, ...) for regions")
        if not self.has_regions and target.shape[1] != 1:
            raise ValueError(f"label training needs a label-map target (b, 1, ...), got {tuple(target.shape)}")
        # float16 logits (autocast) in float32, as the other losses: fp16 cross-entropy overflows to inf at large logits
        net_output = net_output.float()
        target_clean, mask = self.split_target(target)
        probabilities = torch.sigmoid(net_output) if self.has_regions else softmax_helper_dim1(net_output)
        total = 0
        for name, term in self.terms.items():
            total = total + self.weights[name] * term(probabilities, target_clean, loss_mask=mask)
        if "ce" in self.weights:
            ce_target = target if (mask is not None and not self.has_regions) else target_clean
            total = total + self.weights["ce"] * self.cross_entropy(net_output, ce_target, mask)
        return total


@register("loss")
class HybridLoss(WeightedRegionLoss):
    """ELANRes Hybrid loss: (1 - Dice) + lambda x CE (BCE for regions), lambda = 1."""

    def __init__(self, has_regions: bool = False, ignore_label: Optional[int] = None, batch_dice: bool = False,
                 ddp: bool = True, ce_weight: float = 1.0, settings: RegionLossSettings = RegionLossSettings()):
        super().__init__({"dice": 1.0, "ce": ce_weight}, has_regions, ignore_label, batch_dice, ddp, settings)
