"""ELANRes loss family (Table 1) against hand-computed values on tiny tensors.

Most tests feed probabilities directly (apply_nonlin=None) so the arithmetic is easy to follow.
The reference example, one class, four voxels:
    p = [0.8, 0.6, 0.2, 0.0], g = [1, 1, 0, 0]
    TP = 0.8 + 0.6 = 1.4, FP = 0.2 + 0.0 = 0.2, FN = 0.2 + 0.4 = 0.6
"""
import math

import pytest
import torch

from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunet_ext.losses.region_losses import (DiceLoss, ExpLogDiceLoss, HybridLoss, JaccardLoss, RegionLossSettings,
                                             SensitivitySpecificityLoss, TverskyLoss, WeightedRegionLoss, TERMS)
from nnunet_ext.registry import entries

P = torch.tensor([0.8, 0.6, 0.2, 0.0]).view(1, 1, 4)
G = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 4)


def make(cls, **kw):
    kw.setdefault("smooth", 0.0)
    return cls(apply_nonlin=None, batch_dice=False, do_bg=True, ddp=False, **kw)


# ---------------------------------------------------------------- single losses, reference example
def test_dice_reference():
    # Dice = 2 TP / (2 TP + FP + FN) = 2.8 / (2.8 + 0.2 + 0.6) = 2.8 / 3.6
    assert make(DiceLoss)(P, G).item() == pytest.approx(1 - 2.8 / 3.6)


def test_tversky_reference_weights_fp_0_3_and_fn_0_7():
    # TP / (TP + 0.3 FP + 0.7 FN) = 1.4 / (1.4 + 0.06 + 0.42) = 1.4 / 1.88
    assert make(TverskyLoss)(P, G).item() == pytest.approx(1 - 1.4 / 1.88)
    # swapping the weights must change the value: 1.4 / (1.4 + 0.14 + 0.18) = 1.4 / 1.72
    assert make(TverskyLoss, alpha=0.7, beta=0.3)(P, G).item() == pytest.approx(1 - 1.4 / 1.72)


def test_jaccard_reference_is_soft_iou():
    # TP / (TP + FP + FN) = 1.4 / 2.2
    assert make(JaccardLoss)(P, G).item() == pytest.approx(1 - 1.4 / 2.2)


def test_eldice_reference():
    # (-ln(2.8 / 3.6))^0.3 = 0.2513144^0.3 = exp(0.3 * ln 0.2513144) = exp(0.3 * -1.381058) = 0.660793
    assert make(ExpLogDiceLoss)(P, G).item() == pytest.approx(0.2513144 ** 0.3, rel=1e-5)
    assert make(ExpLogDiceLoss)(P, G).item() == pytest.approx(0.660793, abs=1e-5)


def test_ss_loss_reference():
    # target voxels: squared errors (1-0.8)^2 + (1-0.6)^2 = 0.04 + 0.16 = 0.20 over 2 voxels -> 0.10
    # non-target voxels: 0.2^2 + 0^2 = 0.04 over 2 voxels -> 0.02
    # 0.05 * 0.10 + 0.95 * 0.02 = 0.005 + 0.019 = 0.024
    assert make(SensitivitySpecificityLoss)(P, G).item() == pytest.approx(0.024)


# ---------------------------------------------------------------- perfect, empty, all wrong
ALL_REGION_LOSSES = [DiceLoss, TverskyLoss, JaccardLoss, ExpLogDiceLoss, SensitivitySpecificityLoss]


@pytest.mark.parametrize("cls", ALL_REGION_LOSSES)
def test_perfect_prediction_scores_zero_with_finite_gradient(cls):
    p = G.clone().requires_grad_(True)
    loss = make(cls, smooth=1e-5)(p, G)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("cls", ALL_REGION_LOSSES)
def test_empty_class_predicted_empty_is_zero_not_nan(cls):
    # g = 0 and p = 0 everywhere: every ratio is eps / eps = 1, the SS terms 0 / eps = 0
    p = torch.zeros(1, 1, 4, requires_grad=True)
    loss = make(cls, smooth=1e-5)(p, torch.zeros(1, 1, 4))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(p.grad).all()


def test_all_wrong_prediction():
    p, eps = 1 - G, 1e-5  # TP = 0, FP = 2, FN = 2
    assert make(DiceLoss, smooth=eps)(p, G).item() == pytest.approx(1 - eps / (4 + eps))
    assert make(TverskyLoss, smooth=eps)(p, G).item() == pytest.approx(1 - eps / (0.3 * 2 + 0.7 * 2 + eps))
    assert make(JaccardLoss, smooth=eps)(p, G).item() == pytest.approx(1 - eps / (0 + 2 + 2 + eps))
    # -ln(1e-5 / 4.00001) = ln(400001) = 12.89922; ^0.3 = 2.153
    assert make(ExpLogDiceLoss, smooth=eps)(p, G).item() == pytest.approx(math.log(400001) ** 0.3, rel=1e-5)
    # every voxel's squared error is 1: target 2 / 2 = 1, non-target 2 / 2 = 1 -> 0.05 + 0.95 = 1
    assert make(SensitivitySpecificityLoss, smooth=0.0)(p, G).item() == pytest.approx(1.0)


# ---------------------------------------------------------------- multi-class, mask, batch
# 3 classes, labels [0, 1, 2, 2]; probabilities per voxel (bg, c1, c2):
PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.0, 0.5, 0.5]]).T.reshape(1, 3, 4)
LABELS = torch.tensor([0, 1, 2, 2]).view(1, 1, 4)
# class 1: p = [.2, .8, .2, .5], g = [0, 1, 0, 0]: TP .8, FP .9, FN .2 -> Dice 1.6 / 2.7
# class 2: p = [.1, .1, .6, .5], g = [0, 0, 1, 1]: TP 1.1, FP .2, FN .9 -> Dice 2.2 / 3.3
MULTICLASS_DICE_LOSS = 1 - (1.6 / 2.7 + 2.2 / 3.3) / 2


def test_multiclass_without_background():
    loss = DiceLoss(apply_nonlin=None, do_bg=False, smooth=0.0, ddp=False)
    assert loss(PROBS, LABELS).item() == pytest.approx(MULTICLASS_DICE_LOSS)
    # one-hot targets give the same value as label maps
    one_hot = torch.nn.functional.one_hot(LABELS[:, 0], 3).permute(0, 2, 1).float()
    assert loss(PROBS, one_hot).item() == pytest.approx(MULTICLASS_DICE_LOSS)


@pytest.mark.parametrize("cls", ALL_REGION_LOSSES)
def test_loss_mask_removes_voxels(cls):
    # a fifth voxel with a confident wrong prediction is masked out: the loss equals the 4-voxel one
    probs = torch.cat([PROBS, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1)], dim=2)
    labels = torch.cat([LABELS, torch.tensor([1]).view(1, 1, 1)], dim=2)
    mask = torch.tensor([1, 1, 1, 1, 0]).view(1, 1, 5).bool()
    loss = cls(apply_nonlin=None, do_bg=False, smooth=0.0, ddp=False)
    assert loss(probs, labels, loss_mask=mask).item() == pytest.approx(loss(PROBS, LABELS).item())
    assert loss(probs, labels).item() != pytest.approx(loss(PROBS, LABELS).item())


def test_batch_dice_pools_the_sums():
    # sample 1: p = [.8, .6], g = [1, 1]; sample 2: p = [.2, 0], g = [0, 0]
    p, g = P.view(2, 1, 2), G.view(2, 1, 2)
    # pooled: TP 1.4, FP .2, FN .6 -> the reference Dice 2.8 / 3.6
    assert DiceLoss(None, batch_dice=True, smooth=0.0, ddp=False)(p, g).item() == pytest.approx(1 - 2.8 / 3.6)
    # per sample: 2.8 / (2.8 + 0 + .6) and 0 / (0 + .2 + 0) = 0, averaged
    assert DiceLoss(None, batch_dice=False, smooth=0.0, ddp=False)(p, g).item() == pytest.approx(1 - (2.8 / 3.4) / 2)


@pytest.mark.parametrize("cls", ALL_REGION_LOSSES)
def test_ddp_all_gathers_the_sums(monkeypatch, cls):
    """With ddp and batch_dice, rank 0 (sample 1) must see the sums of rank 1 (sample 2): same as one big batch."""
    import nnunetv2.utilities.ddp_allgather as ddp_allgather

    p, g = P.view(2, 1, 2), G.view(2, 1, 2)
    loss = cls(None, batch_dice=True, smooth=1e-5, ddp=True)
    other_rank = iter(loss.statistics(p[1:], g[1:], (2,), None).values())
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(ddp_allgather.AllGatherGrad, "apply",
                        staticmethod(lambda t: torch.stack([t, next(other_rank)])))
    on_rank0 = loss(p[:1], g[:1])
    single_process = cls(None, batch_dice=True, smooth=1e-5, ddp=False)(p, g)
    assert on_rank0.item() == pytest.approx(single_process.item())


# ---------------------------------------------------------------- the weighted combination
LN3 = math.log(3.0)
# two classes, two voxels, both labelled 1; logits give softmax p1 = [0.75, 0.25]
LOGITS = torch.tensor([[0.0, LN3], [LN3, 0.0]]).T.reshape(1, 2, 2)
TARGET = torch.tensor([1, 1]).view(1, 1, 2)
# CE = (-ln .75 - ln .25) / 2 = (0.2876821 + 1.3862944) / 2 = 0.8369882
CE_VALUE = 0.8369882
# class 1 Dice: TP = 1.0, FP = 0, FN = 1.0 -> 2 / 3
DICE_VALUE = 2 / 3


def test_hybrid_is_dice_plus_lambda_ce():
    assert HybridLoss(ddp=False)(LOGITS, TARGET).item() == pytest.approx(1 - DICE_VALUE + CE_VALUE, abs=1e-5)
    assert HybridLoss(ddp=False, ce_weight=0.5)(LOGITS, TARGET).item() == pytest.approx(
        1 - DICE_VALUE + 0.5 * CE_VALUE, abs=1e-5)


def test_hybrid_matches_nnunet_dice_ce_up_to_its_minus_dice_convention():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 1, 6, 6))
    ours = HybridLoss(ddp=False)(x, y)
    nnunet = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                            dice_class=MemoryEfficientSoftDiceLoss)(x, y)
    assert ours.item() == pytest.approx(nnunet.item() + 1.0, abs=1e-5)  # nnU-Net returns -Dice, we 1 - Dice


def test_weighted_sum_of_terms():
    torch.manual_seed(1)
    x, y = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 1, 5, 5))
    probs = torch.softmax(x, 1)
    weights = {"dice": 0.5, "tversky": 2.0, "jaccard": 1.0, "ss": 3.0, "eldice": 0.25, "ce": 1.5}
    expected = (0.5 * DiceLoss(None, do_bg=False, ddp=False)(probs, y)
                + 2.0 * TverskyLoss(None, do_bg=False, ddp=False)(probs, y)
                + 1.0 * JaccardLoss(None, do_bg=False, ddp=False)(probs, y)
                + 3.0 * SensitivitySpecificityLoss(None, do_bg=False, ddp=False)(probs, y)
                + 0.25 * ExpLogDiceLoss(None, do_bg=False, ddp=False)(probs, y)
                + 1.5 * torch.nn.functional.cross_entropy(x, y[:, 0]))
    assert WeightedRegionLoss(weights, ddp=False)(x, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ignore_label_masks_dice_and_ce():
    # a third voxel labelled 2 (the ignore label), confidently predicted as class 0: no effect
    logits = torch.cat([LOGITS, torch.tensor([5.0, -5.0]).view(1, 2, 1)], dim=2)
    target = torch.cat([TARGET, torch.tensor([2]).view(1, 1, 1)], dim=2)
    loss = WeightedRegionLoss({"dice": 1, "tversky": 1, "ss": 1, "ce": 1}, ignore_label=2, ddp=False)
    reference = WeightedRegionLoss({"dice": 1, "tversky": 1, "ss": 1, "ce": 1}, ddp=False)(LOGITS, TARGET)
    assert loss(logits, target).item() == pytest.approx(reference.item(), abs=1e-6)


def test_everything_ignored_gives_zero_and_a_gradient():
    x = torch.randn(1, 2, 3, requires_grad=True)
    loss = WeightedRegionLoss({t: 1.0 for t in TERMS}, ignore_label=2, ddp=False)(x, torch.full((1, 1, 3), 2))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(x.grad).all()


def test_regions_use_sigmoid_bce_and_background():
    # one region, logits [ln 3, -ln 3] -> sigmoid [.75, .25], target [1, 0]
    x = torch.tensor([LN3, -LN3]).view(1, 1, 2)
    y = torch.tensor([1.0, 0.0]).view(1, 1, 2)
    # Dice: TP .75, FP .25, FN .25 -> 1.5 / 2 = .75; BCE = -ln .75 on both voxels = 0.2876821
    expected = (1 - 0.75) + 0.2876821
    assert HybridLoss(has_regions=True, ddp=False)(x, y).item() == pytest.approx(expected, abs=1e-5)
    # nnU-Net's ignore channel is the target's last channel; an ignored confidently-wrong voxel changes nothing
    x3 = torch.cat([x, torch.tensor([-5.0]).view(1, 1, 1)], dim=2)
    y3 = torch.cat([torch.cat([y, torch.zeros(1, 1, 2)], 1), torch.tensor([1.0, 1.0]).view(1, 2, 1)], dim=2)
    assert HybridLoss(has_regions=True, ignore_label=3, ddp=False)(x3, y3).item() == pytest.approx(expected, abs=1e-5)


def test_region_bce_with_empty_ignore_channel_equals_plain_bce_mean():
    torch.manual_seed(2)
    x, y = torch.randn(2, 2, 4, 4), torch.randint(0, 2, (2, 2, 4, 4)).float()
    with_ignore = torch.cat([y, torch.zeros(2, 1, 4, 4)], 1)
    plain = WeightedRegionLoss({"ce": 1, "jaccard": 1}, has_regions=True, ddp=False)(x, y)
    masked = WeightedRegionLoss({"ce": 1, "jaccard": 1}, has_regions=True, ignore_label=3, ddp=False)(x, with_ignore)
    assert masked.item() == pytest.approx(plain.item(), rel=1e-6)


def test_settings_reach_the_terms():
    loss = WeightedRegionLoss({"tversky": 1, "ss": 1, "eldice": 1}, ddp=False,
                              settings=RegionLossSettings(tversky_alpha=0.9, tversky_beta=0.1, ss_target_weight=0.5,
                                                          ss_background_weight=0.5, eldice_gamma=1.0))
    assert (loss.terms["tversky"].alpha, loss.terms["tversky"].beta) == (0.9, 0.1)
    assert (loss.terms["ss"].target_weight, loss.terms["eldice"].gamma) == (0.5, 1.0)


# ---------------------------------------------------------------- bad input
def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown loss term"):
        WeightedRegionLoss({"dice": 1, "focal": 1})
    with pytest.raises(ValueError, match="at least one > 0"):
        WeightedRegionLoss({"dice": 0})
    with pytest.raises(ValueError, match="differ in batch or spatial size"):
        DiceLoss(None, ddp=False)(torch.rand(1, 2, 4), torch.zeros(1, 1, 5))
    with pytest.raises(ValueError, match="must lie in"):
        DiceLoss(None, ddp=False)(torch.rand(1, 2, 4), torch.full((1, 1, 4), 2))
    with pytest.raises(ValueError, match="label-map target"):
        HybridLoss(ddp=False)(torch.rand(1, 2, 4), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="loss_mask"):
        DiceLoss(None, ddp=False)(torch.rand(1, 2, 4), torch.zeros(1, 1, 4), loss_mask=torch.ones(1, 2, 4))
    with pytest.raises(ValueError, match="Tversky"):
        TverskyLoss(alpha=-1)


def test_every_loss_is_catalogued():
    names = {e.name for e in entries("loss")}
    for name in ("DiceLoss", "TverskyLoss", "JaccardLoss", "SensitivitySpecificityLoss", "ExpLogDiceLoss",
                 "HybridLoss", "WeightedRegionLoss", "PhaseDiceCESchedule", "SigmoidDiceCESchedule",
                 "DecayingDeepSupervisionSchedule"):
        assert name in names
