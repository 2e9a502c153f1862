"""Mixed precision: every trainer loss on float16 logits, every network under bfloat16 autocast.

nnU-Net trains under ``autocast`` on CUDA, so the losses receive float16 network outputs. Our losses cast
them to float32 first, so a float16 input must give exactly the loss of its float32 cast (1e-6), also at
extreme logits (+-60000, near float16's limit), and with more voxels per sum (131072) than float16 can
count (65504): the sums are kept in float32. nnU-Net's own Dice + CE (the default and the DLKUNet
schedules' base loss) is checked as nnU-Net calls it, inside autocast. Networks (CPU: bfloat16 autocast)
must give finite outputs and gradients close to float32.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn import functional as F


from network_matrix import CASES, outputs_as_list, trainer_loss

from nnunet_ext.training.base import ExtTrainer
from nnunet_ext_trainers.dlkunet_trainers import nnUNetTrainerDynamicLoss, nnUNetTrainerPhaseLoss
from nnunet_ext_trainers.elanres_trainers import nnUNetTrainerELANResLoss
from nnunet_ext_trainers.es_unet_trainers import nnUNetTrainerDWD, nnUNetTrainerFocalDice

# our losses cast to float32 before anything else; nnU-Net's compounds run as in its train_step


class ELANResAllTermsTrainer(nnUNetTrainerELANResLoss):
    loss_terms = {"dice": 1.0, "tversky": 1.0, "jaccard": 1.0, "ss": 1.0, "eldice": 1.0, "ce": 1.0}


OUR_TRAINERS = {"dwd_focal": nnUNetTrainerDWD, "focal_dice": nnUNetTrainerFocalDice,
                "elanres_family": nnUNetTrainerELANResLoss, "elanres_all_terms": ELANResAllTermsTrainer}
NNUNET_TRAINERS = {"nnunet_default": ExtTrainer, "phase": nnUNetTrainerPhaseLoss, "dynamic": nnUNetTrainerDynamicLoss}


def uniform_case(regions: bool, logit: float, n_voxels: int = 131072):
    """Two channels of constant logits (0 and ``logit``), every voxel of the second class / both regions."""
    shape = (1, 2, n_voxels // 4096, 64, 64)
    logits = torch.zeros(shape)
    logits[:, 1] = logit
    target = torch.ones(shape) if regions else torch.ones((1, 1) + shape[2:], dtype=torch.long)
    return logits.half(), target


def test_uniform_logits_give_the_hand_computed_losses_in_float16_with_sums_beyond_its_range():
    """p = 0.8 on every one of 131072 voxels (more than float16 counts): every term by hand."""
    logits, target = uniform_case(regions=False, logit=math.log(4.0))
    q = 1.0 / (1.0 + math.exp(-float(logits[0, 1, 0, 0, 0])))  # softmax of (0, fp16 log 4): 0.8 to fp16 rounding
    ce = -math.log(q)
    focal = (1 - q) ** 2 * ce
    # DWD (squared sums, foreground only): I = qN, P = q^2 N, G = N; C_P = I / P = 1/q and C_R = I / G = q,
    # each clamped to [0, 1] (docs/dwd_loss.md), d = C_P - C_R = 1 - q; w_P = 1 - d, w_R = 1 + d
    d = min(1.0, 1 / q) - min(1.0, q)
    dwd = 1 - 2 * q / ((1 - d) * q * q + (1 + d))
    dice = 2 * q / (q + 1)  # soft Dice with sums of p: 2 qN / (qN + N)
    tversky = q / (q + 0.7 * (1 - q))  # TP = qN, FP = 0, FN = (1 - q) N
    expected = {"dwd_focal": focal + dwd, "elanres_family": (1 - dice) + (1 - tversky) + ce,
                "nnunet_default": -dice + ce, "phase": 0.6 * -dice + 0.4 * ce}
    for name, value in expected.items():
        loss = trainer_loss({**OUR_TRAINERS, **NNUNET_TRAINERS}[name], regions=False)
        got = loss(logits, target) if name in OUR_TRAINERS else _under_autocast(loss, logits, target)
        assert got.dtype == torch.float32, name
        # ours: exact to float32 rounding; nnU-Net's softmax runs in float16 under CPU autocast (CUDA: float32)
        tolerance = 1e-6 if name in OUR_TRAINERS else 2e-3
        assert abs(got.item() - value) <= tolerance * max(1.0, abs(value)), (name, got.item(), value)


def _under_autocast(loss, logits, target):
    with torch.autocast("cpu", dtype=torch.float16):
        return loss(logits, target)


def random_case(regions: bool, extreme: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    channels = 2
    logits = torch.randn((2, channels, 4, 8, 8), generator=generator) * 4
    if extreme:  # near float16's largest value (65504), of both signs, on right and wrong classes
        logits[0, 0, 0, :2, :2] = 60000
        logits[1, 1, 1, :2, :2] = -60000
        logits[0, 1, 2, 3, :] = 60000
    if regions:
        target = (torch.rand((2, channels, 4, 8, 8), generator=generator) > 0.5).float()
    else:
        target = torch.randint(0, channels, (2, 1, 4, 8, 8), generator=generator)
    return logits.half(), target


@pytest.mark.parametrize("regions", [False, True], ids=["labels", "regions"])
@pytest.mark.parametrize("extreme", [False, True], ids=["normal", "extreme"])
@pytest.mark.parametrize("name", list(OUR_TRAINERS))
def test_our_losses_on_float16_logits_equal_their_float32_cast(name, extreme, regions):
    loss = trainer_loss(OUR_TRAINERS[name], regions)
    logits16, target = random_case(regions, extreme)
    x16 = logits16.clone().requires_grad_()
    x32 = logits16.float().requires_grad_()
    value16, value32 = loss(x16, target), loss(x32, target)
    assert value16.dtype == torch.float32 and torch.isfinite(value16), value16
    torch.testing.assert_close(value16, value32, rtol=1e-6, atol=1e-6)
    value16.backward()
    value32.backward()
    assert x16.grad.dtype == torch.float16 and torch.isfinite(x16.grad).all()
    # the float16 gradient is the float32 one rounded to float16
    torch.testing.assert_close(x16.grad, x32.grad.half(), rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("regions", [False, True], ids=["labels", "regions"])
@pytest.mark.parametrize("name", list(NNUNET_TRAINERS))
def test_nnunet_dice_ce_losses_under_autocast_stay_finite_at_extreme_float16_logits(name, regions):
    """nnU-Net's DC_and_CE / DC_and_BCE as its train_step calls them (inside autocast), schedules' weights set."""
    loss = trainer_loss(NNUNET_TRAINERS[name], regions, epoch=9)
    if name == "phase":
        assert (loss.weight_dice, loss.weight_ce) == (0.7, 0.3)  # epoch 9 of 10: second phase
    for extreme in (False, True):
        logits16, target = random_case(regions, extreme)
        x16 = logits16.clone().requires_grad_()
        value = _under_autocast(loss, x16, target)
        value.backward()
        assert value.dtype == torch.float32 and torch.isfinite(value), (extreme, value)
        assert torch.isfinite(x16.grad).all()
        reference = loss(logits16.float(), target)
        assert abs(value.item() - reference.item()) <= 5e-3 * max(1.0, abs(reference.item())), (value, reference)


def network_loss(outputs, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on every output against the nearest-resized labels (nnU-Net's deep supervision)."""
    total = 0
    for o in outputs:
        t = F.interpolate(target.float(), size=o.shape[2:], mode="nearest").long()[:, 0]
        total = total + F.cross_entropy(o.float(), t)
    return total


# STS-Net's ResNeXt trunk in training mode normalises 4x4 feature maps of a batch of 2 (32 values per
# BatchNorm) through ~50 BatchNorms: bfloat16 rounding grows layer by layer (5 % by layer2, 100 % at the
# output, measured), as any rounding would at this tiny patch. Its training step is checked for finite,
# float32 loss and gradients only; its prediction (eval mode, running statistics) is compared like the others.
ILL_CONDITIONED_IN_TRAINING = {"sts_net_2d", "sts_net_25d"}


@pytest.mark.parametrize("name", list(CASES))
def test_network_under_bfloat16_autocast_is_finite_and_close_to_float32(name):
    case = CASES[name]
    network = case.build(deep_supervision=True)
    torch.manual_seed(0)
    x = torch.randn(case.input_shape())
    target = torch.randint(0, 3, (x.shape[0], 1, *x.shape[2:]))
    initial = copy.deepcopy(network.state_dict())
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        network.load_state_dict(initial)  # the same BatchNorm running statistics for both predictions
        network.train().zero_grad(set_to_none=True)
        torch.manual_seed(1)  # same dropout masks
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            outputs = outputs_as_list(network(x))
            loss = network_loss(outputs, target)
        loss.backward()
        grads = [p.grad for p in network.parameters() if p.grad is not None]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            prediction = outputs_as_list(network.eval()(x))[0]
        results[dtype] = (outputs, loss, grads, prediction)
    outputs, loss, grads, prediction = results[torch.bfloat16]
    assert outputs[0].dtype == torch.bfloat16, "autocast did not reach the network's convolutions"
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(o).all() for o in outputs) and all(torch.isfinite(g).all() for g in grads)
    assert all(g.dtype == torch.float32 for g in grads)  # parameters stay float32 (autocast casts copies)
    outputs32, loss32, grads32, prediction32 = results[torch.float32]
    # bfloat16 keeps 8 significant bits (relative rounding 2^-8 = 0.4 %): the prediction must stay within 5 % of
    # its float32 magnitude + 0.01 (logits; randomly initialised heads give logits near 0, STS-Net's ~0.04, as
    # sums of much larger terms); in training the loss within 2 % and the gradient pointing the same way
    error = (prediction.float() - prediction32).abs().max()
    assert error <= 0.05 * prediction32.abs().max() + 0.01, (name, error.item(), prediction32.abs().max().item())
    if name in ILL_CONDITIONED_IN_TRAINING:
        return
    assert abs(loss.item() - loss32.item()) <= 0.02 * loss32.item(), (loss.item(), loss32.item())
    cosine = F.cosine_similarity(torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in grads32]),
                                 dim=0)
    assert cosine > 0.95, f"{name}: bfloat16 gradient direction differs from float32 (cosine {cosine:.3f})"
