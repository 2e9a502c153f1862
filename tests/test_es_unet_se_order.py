"""ES-UNet's encoder-to-decoder paths apply SE before pooling (the paper's order), checked on the built network."""
import math

import torch
from torch import nn

from nnunet_ext_architectures.es_unet import ChannelSE, ESUNet, SkipPath


def test_se_gate_sees_the_full_resolution_encoder_feature_on_every_pooled_path():
    torch.manual_seed(0)
    net = ESUNet(1, 1, True, n_stages=3, features_per_stage=[2, 4, 4], conv_op=nn.Conv2d, kernel_sizes=3,
                 strides=[1, 2, 2])
    seen = []
    paths = [(j, int(i), p) for j, stage in net.decoder.stages.items() for i, p in stage.encoder_paths.items()
             if int(i) < int(j)]
    assert len(paths) == 3  # (i, j) = (0, 1), (0, 2), (1, 2)
    for j, i, path in paths:
        assert isinstance(path.attention, ChannelSE) and isinstance(path.pool, nn.MaxPool2d)
        gate = path.attention.gate
        path.attention.gate = lambda x, gate=gate, i=i: seen.append((i, tuple(x.shape[2:]))) or gate(x)
    net(torch.randn(1, 1, 16, 16))
    # encoder stage i is 16 / 2^i per side: every gate was computed before the path pooled it
    assert sorted(seen) == [(0, (16, 16)), (0, (16, 16)), (1, (8, 8))]


def test_se_before_pooling_by_hand():
    # one channel, x = [[0, 4, 0, 0], [0, 0, 0, 0]]: mean 0.5, 2x2 max-pool -> [[4, 0]] (mean 2).
    # SE with unit weights and zero biases: gate = sigmoid(relu(mean)).
    # SE then pool: [[4 sigmoid(0.5), 0]] = [[2.4898, 0]]; pool then SE would give [[4 sigmoid(2), 0]] = [[3.5232, 0]].
    se = ChannelSE(1, nn.Conv2d, reduction=1.0)
    with torch.no_grad():
        for conv in (se.squeeze, se.excite):
            conv.weight.fill_(1.0)
            conv.bias.zero_()
    path = SkipPath(nn.Identity(), se, nn.MaxPool2d(2, 2))
    x = torch.tensor([[[[0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    out = path(x, (1, 2))
    torch.testing.assert_close(out, torch.tensor([[[[4 / (1 + math.exp(-0.5)), 0.0]]]]))
