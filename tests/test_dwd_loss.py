"""DWD loss, focal loss, their Eq. 6 compounds and the DWDFocalLoss mixin, on tiny hand-computable tensors.

Notation in the comments: I = sum(y p), P = sum(p^2), G = sum(y^2), C_P = I/P, C_R = I/G,
d = C_P - C_R, w_P = 1 - d, w_R = 1 + d. "corrected": 1 - 2I/(w_P P + w_R G); "printed": 1 - 2I/(w_P G + w_R P).
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist

from nnunet_ext.losses.compound import DWD_and_BinaryFocal_loss, DWD_and_Focal_loss
from nnunet_ext.losses.dwd import DynamicallyWeightedDiceLoss, dwd_weights
from nnunet_ext.losses.focal import BinaryFocalLoss, FocalLoss
from nnunet_ext.registry import entries
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.dwd import DWDFocalLoss, FocalDiceLoss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss
from nnunetv2.utilities.label_handling.label_handling import LabelManager


def probs(*values):
    """A (1, 1, n) probability / target tensor, fed to DWD without a non-linearity."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, -1)


def dwd(weighting="corrected", **kwargs):
    kwargs = {"apply_nonlin": None, "do_bg": True, "smooth": 0.0, "ddp": False, **kwargs}
    return DynamicallyWeightedDiceLoss(weighting=weighting, **kwargs)


def softmax(x):
    return torch.softmax(x, 1)


# ---------------------------------------------------------------- DWD: hand-computed values

def test_dwd_under_segmentation_1x1x4_by_hand():
    # y = [1,1,0,0], p = [1,.5,.5,0]: I = 1.5, P = 1 + .25 + .25 = 1.5, G = 2
    # C_P = 1, C_R = .75, d = .25 -> w_P = .75, w_R = 1.25
    # corrected: 1 - 3 / (.75*1.5 + 1.25*2) = 1 - 3/3.625 = 5/29
    # printed:   1 - 3 / (.75*2 + 1.25*1.5) = 1 - 3/3.375 = 1/9
    # Dice:      1 - 3 / 3.5 = 1/7
    p, y = probs(1, .5, .5, 0), probs(1, 1, 0, 0)
    assert dwd("corrected")(p, y).item() == pytest.approx(5 / 29, abs=1e-6)
    assert dwd("printed")(p, y).item() == pytest.approx(1 / 9, abs=1e-6)
    assert dwd("none")(p, y).item() == pytest.approx(1 / 7, abs=1e-6)


def test_dwd_over_segmentation_penalised_more_when_corrected():
    # y = [1,0,0,0], p = [1,1,0,0]: I = 1, P = 2, G = 1; C_P = .5 < C_R = 1, d = -.5 -> w_P = 1.5, w_R = .5
    # corrected: 1 - 2/(1.5*2 + .5*1) = 1 - 2/3.5 = 3/7   (false positives weigh more)
    # Dice:      1 - 2/3 = 1/3
    # printed:   1 - 2/(1.5*1 + .5*2) = 1 - 2/2.5 = 1/5  (false positives weigh less: the typo)
    p, y = probs(1, 1, 0, 0), probs(1, 0, 0, 0)
    corrected, dice, printed = (dwd(w)(p, y).item() for w in ("corrected", "none", "printed"))
    assert corrected == pytest.approx(3 / 7, abs=1e-6)
    assert dice == pytest.approx(1 / 3, abs=1e-6)
    assert printed == pytest.approx(1 / 5, abs=1e-6)
    assert corrected > dice > printed


def test_dwd_equals_dice_when_precision_and_recall_coefficients_match():
    # y = [1,1,0,0], p = [1,0,1,0]: I = 1, P = G = 2 -> C_P = C_R = .5, w = 1: every reading is 1 - 2/4
    p, y = probs(1, 0, 1, 0), probs(1, 1, 0, 0)
    for weighting in ("corrected", "printed", "none"):
        assert dwd(weighting)(p, y).item() == pytest.approx(0.5, abs=1e-6)


def test_unit_weights_equal_nnunet_soft_dice():
    # weighting="none" with nnU-Net's unsquared sums is nnU-Net's MemoryEfficientSoftDiceLoss (which returns -dice).
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 4, 5, 6), torch.randint(0, 3, (2, 1, 4, 5, 6))
    for batch_dice in (False, True):
        ours = DynamicallyWeightedDiceLoss(softmax, batch_dice=batch_dice, do_bg=False, ddp=False, weighting="none",
                                           squared=False)(x, y)
        nnunet = MemoryEfficientSoftDiceLoss(softmax, batch_dice=batch_dice, do_bg=False, smooth=1e-5, ddp=False)(x, y)
        assert ours.item() == pytest.approx(1 + nnunet.item(), abs=1e-6)


def test_unsquared_sums_by_hand():
    # squared=False: P = sum p = 2, G = 2, I = 1.5 (same p, y as the under-segmentation case)
    # C_P = .75, C_R = .75 -> w = 1 -> 1 - 3/4
    p, y = probs(1, .5, .5, 0), probs(1, 1, 0, 0)
    assert dwd("corrected", squared=False)(p, y).item() == pytest.approx(0.25, abs=1e-6)


def test_corrected_never_below_dice_printed_never_above_on_random_soft_predictions():
    torch.manual_seed(1)
    for _ in range(20):
        p, y = torch.rand(1, 1, 16), (torch.rand(1, 1, 16) > 0.6).float()
        y[0, 0, 0] = 1
        dice = dwd("none")(p, y).item()
        assert dwd("corrected")(p, y).item() >= dice - 1e-6
        assert dwd("printed")(p, y).item() <= dice + 1e-6


# ---------------------------------------------------------------- DWD: bounds, empty classes, reduction

def test_clamping_keeps_both_readings_in_unit_interval_for_a_small_confident_miss():
    # y = [1], p = [.1]: I = .1, P = .01, G = 1 -> C_P = 10 clamped to 1, C_R = .1, d = .9 -> w_P = .1, w_R = 1.9
    # corrected: 1 - .2/(.1*.01 + 1.9*1) = 1 - .2/1.901
    # printed: 2I/(.1*1 + 1.9*.01) = .2/.119 > 1 is capped at 1 -> loss 0 (unclamped, the printed denominator is
    # negative)
    p, y = probs(.1), probs(1)
    assert dwd("corrected")(p, y).item() == pytest.approx(1 - .2 / 1.901, abs=1e-6)
    assert dwd("printed")(p, y).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_prediction_on_all_foreground_keeps_the_false_positive_weight():
    # Issue 12's example: p = .3 on every voxel of an all-foreground target, n = 10 voxels.
    # I = 3, P = .9, G = 10 -> C_P = 3.33 clamped to 1, C_R = .3, d = .7 -> w_P = .3, w_R = 1.7.
    # corrected: 1 - 6/(.3*.9 + 1.7*10) = 1 - 6/17.27 = 0.652577 (Dice: 1 - 6/10.9 = 0.449541).
    # Clamping d instead (the old rule) gave w_P = 0 and 1 - 6/20 = .7 = 1 - C_R: no false-positive term.
    p, y = torch.full((1, 1, 10), .3), torch.ones(1, 1, 10)
    w_p, w_r = dwd_weights(torch.tensor(3.0), torch.tensor(.9), torch.tensor(10.0), smooth=0.0)
    assert (w_p.item(), w_r.item()) == (pytest.approx(.3, abs=1e-6), pytest.approx(1.7, abs=1e-6))
    assert dwd("corrected")(p, y).item() == pytest.approx(1 - 6 / 17.27, abs=1e-6)
    assert dwd("none")(p, y).item() == pytest.approx(1 - 6 / 10.9, abs=1e-6)


@pytest.mark.parametrize("weighting", ["corrected", "printed", "none"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_loss_is_finite_and_in_unit_interval_for_extreme_logits(weighting, scale):
    torch.manual_seed(2)
    x = (torch.randn(2, 3, 4, 4, 4) * scale).requires_grad_()
    y = torch.randint(0, 3, (2, 1, 4, 4, 4))
    loss = DynamicallyWeightedDiceLoss(softmax, do_bg=False, ddp=False, weighting=weighting)(x, y)
    assert 0.0 <= loss.item() <= 1.0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_empty_class_in_prediction_and_target_counts_as_perfect_without_nan():
    # class 2 is absent from the target and (nearly) from the prediction: smooth terms make its ratio 1.
    x = torch.full((1, 3, 4), -30.0)
    x[0, 0, :2] = 30.0
    x[0, 1, 2:] = 30.0
    y = torch.tensor([[[0, 0, 1, 1]]])
    x.requires_grad_()
    loss = DynamicallyWeightedDiceLoss(softmax, do_bg=False, ddp=False)(x, y)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_empty_target_with_false_positives_is_a_full_loss():
    # G = 0, P = 1: C_R = s/s = 1, C_P ~ 0 -> ratio ~ s/(2P) ~ 0 -> loss ~ 1 (as Dice)
    assert dwd("corrected", smooth=1e-5)(probs(1, 0), probs(0, 0)).item() == pytest.approx(1.0, abs=1e-4)


def test_batch_dice_versus_per_sample_by_hand():
    # sample 1: y = [1,0], p = [1,1]: I=1, P=2, G=1, d = -.5 -> w_P 1.5, w_R .5 -> ratio 2/(3 + .5) = 4/7
    # sample 2: y = [1,1], p = [1,1]: ratio 1
    # per sample: 1 - (4/7 + 1)/2 = 3/14
    # batch: I=3, P=4, G=3, C_P=.75, C_R=1, d=-.25 -> w_P 1.25, w_R .75 -> ratio 6/(5 + 2.25) = 24/29 -> 5/29
    p = torch.tensor([[[1., 1.]], [[1., 1.]]])
    y = torch.tensor([[[1., 0.]], [[1., 1.]]])
    assert dwd(batch_dice=False)(p, y).item() == pytest.approx(3 / 14, abs=1e-6)
    assert dwd(batch_dice=True)(p, y).item() == pytest.approx(5 / 29, abs=1e-6)


def test_multi_class_is_the_mean_over_foreground_classes():
    # Two-voxel label map, classes 0..2, do_bg=False -> classes 1 and 2 separately, then averaged.
    # probabilities: voxel 0 = (0, 1, 0), voxel 1 = (0, .5, .5); target [1, 2]
    # class 1: y=[1,0], p=[1,.5]: I=1, P=1.25, G=1, C_P=.8, C_R=1, d=-.2, w_P=1.2, w_R=.8 -> 2/(1.5+.8) = 2/2.3
    # class 2: y=[0,1], p=[0,.5]: I=.5, P=.25, G=1, C_P=2->1 (clamped), C_R=.5, d=.5, w_P=.5, w_R=1.5
    #          -> 1/(.5*.25 + 1.5) = 1/1.625
    # loss = 1 - (2/2.3 + 1/1.625)/2
    p = torch.tensor([[[0., 0.], [1., .5], [0., .5]]])
    y = torch.tensor([[[1, 2]]])
    loss = DynamicallyWeightedDiceLoss(None, do_bg=False, smooth=0.0, ddp=False)(p, y)
    assert loss.item() == pytest.approx(1 - (2 / 2.3 + 1 / 1.625) / 2, abs=1e-6)


def test_ddp_all_reduce_path_matches_single_process(tmp_path):
    # A one-rank gloo group exercises the AllGatherGrad path: it must equal the non-DDP value and gradient.
    torch.manual_seed(3)
    x, y = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        results = []
        for ddp in (False, True):
            xi = x.clone().requires_grad_()
            loss = DynamicallyWeightedDiceLoss(softmax, batch_dice=True, do_bg=False, ddp=ddp)(xi, y)
            loss.backward()
            results.append((loss.item(), xi.grad))
    finally:
        dist.destroy_process_group()
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-7)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-7)


# ---------------------------------------------------------------- DWD: gradients

def test_detached_weights_give_the_gradient_of_a_constant_weighted_dice():
    # y = [1,0,0,0], p = [1,1,0,0] -> w_P = 1.5, w_R = .5 (see the over-segmentation test).
    y = probs(1, 0, 0, 0)
    p = probs(1, 1, 0, 0).requires_grad_()
    dwd("corrected")(p, y).backward()
    q = probs(1, 1, 0, 0).requires_grad_()
    (1 - 2 * (q * y).sum() / (1.5 * (q * q).sum() + 0.5 * (y * y).sum())).backward()
    assert torch.allclose(p.grad, q.grad, atol=1e-6)
    # with the weights in the graph the gradient changes (they depend on p)
    r = probs(1, 1, 0, 0).requires_grad_()
    dwd("corrected", detach_weights=False)(r, y).backward()
    assert torch.isfinite(r.grad).all()
    assert not torch.allclose(r.grad, p.grad, atol=1e-4)


def test_bad_dwd_arguments_are_named():
    with pytest.raises(ValueError, match="weighting"):
        DynamicallyWeightedDiceLoss(weighting="paper")
    with pytest.raises(ValueError, match="spatial"):
        dwd()(probs(1, 0), probs(1, 0, 0))
    with pytest.raises(ValueError, match="loss_mask"):
        dwd()(probs(1, 0), probs(1, 0), loss_mask=torch.ones(1, 2, 2))
    # a label outside the prediction's channels (e.g. an unmasked ignore label) is named, not a scatter error
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\].*got \[0, 3\]"):
        dwd()(torch.full((1, 3, 2), 1 / 3), torch.tensor([[[0, 3]]]))


# ---------------------------------------------------------------- focal loss

def test_softmax_focal_by_hand():
    # logits (0, ln 3) -> p = (1/4, 3/4).
    # target 1: p_t = 3/4 -> -(1/4)^2 ln(3/4);  target 0: p_t = 1/4 -> -(3/4)^2 ln(1/4); mean of the two
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), math.log(3)]]])
    target = torch.tensor([[[1, 0]]])
    expected = (-(0.25 ** 2) * math.log(0.75) - (0.75 ** 2) * math.log(0.25)) / 2
    assert FocalLoss(gamma=2)(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    torch.manual_seed(4)
    x, y = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 1, 4, 5))
    assert FocalLoss(gamma=0)(x, y).item() == pytest.approx(RobustCrossEntropyLoss()(x, y).item(), abs=1e-5)


def test_binary_focal_by_hand():
    # logit 0, y = 1: p_t = 1/2 -> -(1/2)^2 ln(1/2);  logit ln 3, y = 0: p = 3/4, p_t = 1/4 -> -(3/4)^2 ln(1/4)
    logits = torch.tensor([[[0.0, math.log(3)]]])
    target = torch.tensor([[[1.0, 0.0]]])
    expected = (-(0.5 ** 2) * math.log(0.5) - (0.75 ** 2) * math.log(0.25)) / 2
    assert BinaryFocalLoss(gamma=2)(logits, target).item() == pytest.approx(expected, abs=1e-6)
    # masking the second voxel leaves the first term alone
    mask = torch.tensor([[[True, False]]])
    assert BinaryFocalLoss(gamma=2)(logits, target, loss_mask=mask).item() == pytest.approx(
        -(0.5 ** 2) * math.log(0.5), abs=1e-6)


def test_focal_is_finite_for_huge_logits():
    x = torch.tensor([[[1e4, -1e4], [-1e4, 1e4]]], requires_grad=True)
    y = torch.tensor([[[1, 1]]])  # first voxel confidently wrong, second confidently right
    loss = FocalLoss(gamma=2)(x, y)
    assert loss.item() == pytest.approx(2e4 / 2, rel=1e-4)  # -(1-0)^2 * log softmax = 2e4, and ~0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_bad_focal_arguments_are_named():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="outside"):
        FocalLoss()(torch.zeros(1, 2, 3), torch.tensor([[[0, 1, 5]]]))
    with pytest.raises(ValueError, match="one-hot"):
        BinaryFocalLoss()(torch.zeros(1, 2, 3), torch.zeros(1, 1, 3))


# ---------------------------------------------------------------- compounds (Eq. 6) and the ignore label

def test_softmax_compound_is_focal_plus_alpha_dwd():
    torch.manual_seed(5)
    x, y = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    kwargs = {"batch_dice": True, "ddp": False}
    total = DWD_and_Focal_loss(kwargs, {"gamma": 2.0}, weight_dwd=0.5)(x, y)
    parts = FocalLoss(2.0)(x, y) + 0.5 * DynamicallyWeightedDiceLoss(softmax, do_bg=False, **kwargs)(x, y)
    assert total.item() == pytest.approx(parts.item(), abs=1e-6)


def test_ignored_voxels_do_not_change_softmax_compound():
    torch.manual_seed(6)
    y = torch.randint(0, 3, (2, 1, 4, 4))
    y[:, :, :2] = 3  # ignore label = 3 on the first two rows
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss_fn = DWD_and_Focal_loss({"batch_dice": False, "ddp": False}, {}, ignore_label=3)
    loss = loss_fn(x, y)
    loss.backward()
    assert (x.grad[:, :, :2] == 0).all() and (x.grad[:, :, 2:] != 0).any()
    x2 = x.detach().clone()
    x2[:, :, :2] = torch.randn(2, 3, 2, 4) * 10
    assert loss_fn(x2, y).item() == pytest.approx(loss.item(), abs=1e-6)
    # and it equals the loss on the labelled rows alone
    alone = DWD_and_Focal_loss({"batch_dice": False, "ddp": False}, {})(x.detach()[:, :, 2:], y[:, :, 2:])
    assert loss.item() == pytest.approx(alone.item(), abs=1e-6)


def test_everything_ignored_gives_finite_loss():
    x = torch.randn(1, 3, 2, 2, requires_grad=True)
    y = torch.full((1, 1, 2, 2), 3)
    loss = DWD_and_Focal_loss({"ddp": False}, {}, ignore_label=3)(x, y)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(x.grad).all()


def test_region_compound_with_ignore_channel():
    torch.manual_seed(7)
    regions = (torch.rand(2, 2, 4, 4) > 0.5).float()
    ignore = torch.zeros(2, 1, 4, 4)
    ignore[:, :, :1] = 1  # first row ignored
    target = torch.cat([regions, ignore], 1)
    x = torch.randn(2, 2, 4, 4, requires_grad=True)
    loss_fn = DWD_and_BinaryFocal_loss({"batch_dice": True, "ddp": False}, {"gamma": 2.0}, use_ignore_label=True)
    loss = loss_fn(x, target)
    loss.backward()
    assert (x.grad[:, :, :1] == 0).all()
    no_ignore = DWD_and_BinaryFocal_loss({"batch_dice": True, "ddp": False}, {"gamma": 2.0})
    assert loss.item() == pytest.approx(no_ignore(x.detach()[:, :, 1:], regions[:, :, 1:]).item(), abs=1e-6)
    # parts: binary focal + DWD over every region (do_bg=True) with sigmoid
    parts = BinaryFocalLoss(2.0)(x.detach()[:, :, 1:], regions[:, :, 1:]) + DynamicallyWeightedDiceLoss(
        torch.sigmoid, batch_dice=True, do_bg=True, ddp=False)(x.detach()[:, :, 1:], regions[:, :, 1:])
    assert loss.item() == pytest.approx(parts.item(), abs=1e-6)


def test_compounds_reject_wrong_targets():
    with pytest.raises(ValueError, match="label map"):
        DWD_and_Focal_loss({"ddp": False}, {})(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="ignore channel"):
        DWD_and_BinaryFocal_loss({"ddp": False}, {}, use_ignore_label=True)(torch.zeros(1, 2, 2, 2),
                                                                              torch.zeros(1, 2, 2, 2))


def test_loss_classes_are_in_the_catalogue():
    names = {e.name for e in entries("loss")}
    assert {"DynamicallyWeightedDiceLoss", "FocalLoss", "BinaryFocalLoss", "DWD_and_Focal_loss",
            "DWD_and_BinaryFocal_loss"} <= names


# ---------------------------------------------------------------- the trainer mixin

class _ThreeScales:
    def _get_deep_supervision_scales(self):
        return [[1, 1], [0.5, 0.5], [0.25, 0.25]]


class _DWDTrainer(DWDFocalLoss, _ThreeScales, ExtTrainer):
    pass


class _CustomDSWeights:
    def deep_supervision_weights(self):
        return np.array([0.5, 0.5, 0.0])


class _ComposedTrainer(DWDFocalLoss, _CustomDSWeights, _ThreeScales, ExtTrainer):
    dwd_weighting = "printed"
    dwd_alpha = 2.0


def make_trainer(cls, label_dict, regions_class_order=None, batch_dice=True):
    """A trainer object without nnU-Net's __init__: just what the loss hooks read."""
    trainer = object.__new__(cls)
    trainer.label_manager = LabelManager(label_dict, regions_class_order)
    trainer.configuration_manager = SimpleNamespace(batch_dice=batch_dice)
    trainer.is_ddp = False
    trainer.device = torch.device("cpu")  # nnU-Net never compiles on CPU
    trainer.enable_deep_supervision = True
    return trainer


def test_mixin_builds_softmax_compound_for_labels():
    trainer = make_trainer(_DWDTrainer, {"background": 0, "a": 1, "b": 2}, batch_dice=False)
    loss = trainer.build_segmentation_loss()
    assert isinstance(loss, DWD_and_Focal_loss) and loss.ignore_label is None
    assert (loss.dc.weighting, loss.dc.batch_dice, loss.dc.do_bg, loss.dc.ddp) == ("corrected", False, False, False)
    assert (loss.focal.gamma, loss.weight_dwd) == (2.0, 1.0)


def test_mixin_passes_the_ignore_label():
    trainer = make_trainer(_DWDTrainer, {"background": 0, "a": 1, "ignore": 2})
    loss = trainer.build_segmentation_loss()
    assert isinstance(loss, DWD_and_Focal_loss) and loss.ignore_label == 2 and loss.focal.ignore_index == 2


@pytest.mark.parametrize("with_ignore", [False, True])
def test_mixin_builds_region_compound(with_ignore):
    labels = {"background": 0, "whole": [1, 2], "core": 2}
    if with_ignore:
        labels["ignore"] = 3
    trainer = make_trainer(_DWDTrainer, labels, regions_class_order=[1, 2])
    loss = trainer.build_segmentation_loss()
    assert isinstance(loss, DWD_and_BinaryFocal_loss) and loss.use_ignore_label is with_ignore
    assert loss.dc.do_bg is True and loss.dc.batch_dice is True


def test_deep_supervision_wrapper_around_the_mixin_loss():
    trainer = make_trainer(_DWDTrainer, {"background": 0, "a": 1, "b": 2})
    wrapped = trainer._build_loss()
    assert isinstance(wrapped, DeepSupervisionWrapper) and isinstance(wrapped.loss, DWD_and_Focal_loss)
    # nnU-Net's weights for 3 outputs: (1, 1/2, 0) / 1.5
    assert wrapped.weight_factors == pytest.approx((2 / 3, 1 / 3, 0.0))
    torch.manual_seed(8)
    outputs = [torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)]
    targets = [torch.randint(0, 3, (2, 1, 8, 8)), torch.randint(0, 3, (2, 1, 4, 4)), torch.randint(0, 3, (2, 1, 2, 2))]
    total = wrapped(outputs, targets)
    expected = 2 / 3 * wrapped.loss(outputs[0], targets[0]) + 1 / 3 * wrapped.loss(outputs[1], targets[1])
    assert total.item() == pytest.approx(expected.item(), abs=1e-6)
    total.backward()
    assert torch.isfinite(outputs[0].grad).all()


def test_mixin_cooperates_with_other_hooks_and_class_attributes():
    trainer = make_trainer(_ComposedTrainer, {"background": 0, "a": 1})
    wrapped = trainer._build_loss()
    assert wrapped.weight_factors == (0.5, 0.5, 0.0)
    assert wrapped.loss.dc.weighting == "printed" and wrapped.loss.weight_dwd == 2.0


def test_negative_smooth_is_rejected():
    with pytest.raises(ValueError, match="smooth"):
        DynamicallyWeightedDiceLoss(smooth=-1.0)


def test_region_targets_as_bool_int_or_float_give_the_same_loss():
    # nnU-Net's region conversion may hand over bool / integer one-hot targets.
    torch.manual_seed(9)
    target = torch.rand(2, 3, 4, 4) > 0.5  # 2 regions + ignore channel
    x = torch.randn(2, 2, 4, 4)
    loss_fn = DWD_and_BinaryFocal_loss({"ddp": False}, {}, use_ignore_label=True)
    reference = loss_fn(x, target.float()).item()
    assert loss_fn(x, target).item() == pytest.approx(reference, abs=1e-7)
    assert loss_fn(x, target.to(torch.int16)).item() == pytest.approx(reference, abs=1e-7)


class _FocalDiceTrainer(FocalDiceLoss, _ThreeScales, ExtTrainer):
    pass


def test_focal_dice_mixin_is_focal_plus_plain_dice_by_hand():
    # Two voxels, two classes (background + one), do_bg=False: the Dice term sees class 1 only.
    # logits (0, 0) and (0, ln 3): p1 = (.5, .75); target [1, 0]
    # Dice (squared sums): I = .5, P = .25 + .5625 = .8125, G = 1 -> 1 - 1/1.8125
    # focal (gamma 2): voxel 0 p_t = .5 -> -.25 ln .5; voxel 1 p_t = .25 -> -.5625 ln .25; mean of the two
    trainer = make_trainer(_FocalDiceTrainer, {"background": 0, "a": 1}, batch_dice=False)
    loss = trainer.build_segmentation_loss()
    assert isinstance(loss, DWD_and_Focal_loss) and loss.dc.weighting == "none" and loss.weight_dwd == 1.0
    loss.dc.smooth = 0.0
    x = torch.tensor([[[0.0, 0.0], [0.0, math.log(3)]]])
    y = torch.tensor([[[1, 0]]])
    focal = (-.25 * math.log(.5) - .5625 * math.log(.25)) / 2
    assert loss(x, y).item() == pytest.approx(focal + 1 - 1 / 1.8125, abs=1e-5)
