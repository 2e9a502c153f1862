"""Per-head diagnostics of full-scale networks (nnunet_ext.benchmark.head_diagnostics), against hand numbers."""
import numpy as np
import pytest
import torch
from torch import nn

from nnunet_ext.benchmark.head_diagnostics import DICE_SMOOTH, head_statistics
from nnunet_ext_architectures.es_unet import ESUNet, UNet3Plus

BIAS = np.array([0.0, 1.0, -3.0])  # every head predicts these logits everywhere: class 1 wins, class 2 is 4 below


def constant_heads(cls):
    torch.manual_seed(0)
    net = cls(1, 3, True, n_stages=3, features_per_stage=[4, 8, 16], conv_op=nn.Conv2d, kernel_sizes=3,
              strides=[[1, 1], [2, 2], [2, 2]], skip_channels=2)
    with torch.no_grad():
        for head in net.decoder.heads:
            head.weight.zero_()
            head.bias.copy_(torch.tensor(BIAS))
    return net


def cases():
    """One 8x12 case with 4 voxels of class 2 and 6 of class 1; one with 6 of class 1 and no class 2."""
    y_with = torch.zeros(1, 1, 8, 12)
    y_with[0, 0, 0, :6] = 1
    y_with[0, 0, 5, 2:6] = 2
    y_without = torch.zeros(1, 1, 8, 12)
    y_without[0, 0, 7, 6:] = 1
    torch.manual_seed(1)
    return [(torch.randn(1, 1, 8, 12), y_with), (torch.randn(1, 1, 8, 12), y_without)]


def dice_slope(p, g, v=96, s=DICE_SMOOTH):
    """d/dp of (2 p g + s) / (g + v p + s), the soft Dice of a class predicted with probability p everywhere."""
    return (2 * g * (g + v * p + s) - (2 * p * g + s) * v) / (g + v * p + s) ** 2


@pytest.mark.parametrize("cls", [UNet3Plus, ESUNet])
def test_head_statistics_by_hand(cls):
    p = np.exp(BIAS) / np.exp(BIAS).sum()
    stats = head_statistics(constant_heads(cls), cases(), label=2)
    assert len(stats) == 3  # the heads, finest first (ES-UNet's mean left out)
    # nnU-Net's loss on one case: -mean over classes 1, 2 of their soft Dice; the bias of class 2 moves p2 by
    # p2 (1 - p2) and p1 by -p1 p2
    with_class = -0.5 * (dice_slope(p[1], 6) * -p[1] * p[2] + dice_slope(p[2], 4) * p[2] * (1 - p[2]))
    without = -0.5 * (dice_slope(p[1], 6) * -p[1] * p[2] + dice_slope(p[2], 0) * p[2] * (1 - p[2]))
    for s in stats:
        assert s.dice == 0.0  # class 1 wins everywhere: 4 false negatives, nothing predicted
        assert s.margin == pytest.approx(-4.0, abs=1e-5)
        assert s.mass_without == pytest.approx(96 * p[2], rel=1e-5)
        assert s.grad_ce == pytest.approx((p[2] - 4 / 96) + p[2], rel=1e-4)  # mean over voxels of p2 - y2, per case
        assert s.grad_dice_with == pytest.approx(with_class, rel=1e-4)
        assert s.grad_dice_without == pytest.approx(without, rel=1e-4)


def test_refuses_networks_without_heads_and_bad_labels():
    with pytest.raises(ValueError, match="decoder.heads"):
        head_statistics(nn.Conv2d(1, 3, 1), cases(), label=2)
    with pytest.raises(ValueError, match="foreground class"):
        head_statistics(constant_heads(UNet3Plus), cases(), label=0)
