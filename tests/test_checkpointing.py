"""Activation checkpointing: the same numbers as the plain network, less saved for backward, on by default.

The networks are narrow and tiny (the equivalence does not depend on size); the real-scale memory and time
are measured by ``python -m nnunet_ext.benchmark.real_scale`` (docs/benchmarks/real_scale).
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnunet_ext.planning.memory import saved_tensor_bytes
from nnunet_ext.training.checkpointing import enable_activation_checkpointing, is_checkpointed
from nnunet_ext_architectures.dlkunet import DLKUNet
from nnunet_ext_architectures.elanres_msca_unet import ELANResMSCAUNet
from nnunet_ext_architectures.es_unet import ESUNet, UNet3Plus, fuse_heads

ES_KW = dict(n_stages=4, features_per_stage=[8, 16, 24, 24], conv_op=nn.Conv3d, kernel_sizes=3,
             strides=[1, 2, 2, [1, 2, 2]])
NETWORKS = {
    "es_unet_instancenorm": (ESUNet, dict(ES_KW, norm_op=nn.InstanceNorm3d)),
    "es_unet_batchnorm": (ESUNet, ES_KW),
    "es_unet_batchnorm_cumulative": (ESUNet, dict(ES_KW, norm_op_kwargs={"eps": 1e-5, "affine": True,
                                                                        "momentum": None})),
    "unet3plus": (UNet3Plus, dict(ES_KW, norm_op=nn.InstanceNorm3d)),
    "elanres": (ELANResMSCAUNet, dict(n_stages=3, features_per_stage=[8, 16, 16], conv_op=nn.Conv3d,
                                      strides=[1, 2, 2], patch_size=[8, 16, 16])),
    "dlkunet": (DLKUNet, dict(n_stages=3, features_per_stage=[8, 16, 16], conv_op=nn.Conv3d, strides=[1, 2, 2])),
}
X_SHAPE = (2, 2, 8, 16, 16)


def pair(name):
    cls, kwargs = NETWORKS[name]
    torch.manual_seed(0)
    plain = cls(2, 3, True, **kwargs)
    checkpointed = cls(2, 3, True, **kwargs)
    checkpointed.load_state_dict(plain.state_dict())
    return plain, enable_activation_checkpointing(checkpointed)


def loss_of(outputs):
    return sum((o.float() ** 2).mean() + o.float().mean() for o in outputs)


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5, floor: float = 1e-12) -> bool:
    """Within ``rel`` of the larger magnitude of either tensor, or of ``floor`` (sums run in another order when
    sliced; a conv bias before a norm has a gradient of zero up to rounding)."""
    scale = max(a.abs().max().item(), b.abs().max().item(), floor)
    return (a - b).abs().max().item() <= rel * scale


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_checkpointed_network_gives_the_plain_networks_outputs_gradients_and_statistics(name):
    plain, checkpointed = pair(name)
    assert is_checkpointed(checkpointed) and not is_checkpointed(plain)
    x = torch.randn(X_SHAPE)
    for step in range(2):  # two steps: batch-norm running statistics must be counted once per forward
        for net in (plain, checkpointed):
            net.zero_grad()
            outputs = net(x)
            loss_of(outputs).backward()
            net.outputs = outputs
        for a, b in zip(plain.outputs, checkpointed.outputs):
            assert close(a, b), f"{name}: output differs at step {step}"
        largest = max(p.grad.abs().max().item() for p in plain.parameters())
        for (key, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
            assert close(p.grad, q.grad, 1e-5, floor=largest), f"{name}: gradient of {key} differs at step {step}"
        for (key, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values()):
            assert torch.equal(a, b) if key.endswith("num_batches_tracked") else close(a.float(), b.float()), key
    plain.eval(), checkpointed.eval()
    with torch.no_grad():
        for a, b in zip(plain(x), checkpointed(x)):
            assert close(a, b)


@pytest.mark.parametrize("name", ["es_unet_batchnorm", "elanres"])
def test_checkpoints_of_plain_and_checkpointed_networks_are_interchangeable(name):
    plain, checkpointed = pair(name)
    assert list(plain.state_dict()) == list(checkpointed.state_dict())
    cls, kwargs = NETWORKS[name]
    fresh = enable_activation_checkpointing(cls(2, 3, True, **kwargs))
    fresh.load_state_dict(plain.state_dict())  # strict: every key found, none left over
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), fresh.state_dict().values()))


@pytest.mark.parametrize("name, at_most", [("es_unet_instancenorm", 0.35), ("unet3plus", 0.35),
                                           ("elanres", 0.6), ("dlkunet", 0.6)])
def test_checkpointing_keeps_far_less_for_the_backward_pass(name, at_most):
    plain, checkpointed = pair(name)
    x = torch.randn(X_SHAPE)
    ratio = saved_tensor_bytes(checkpointed, x, loss_of) / saved_tensor_bytes(plain, x, loss_of)
    assert ratio < at_most, f"{name}: checkpointed keeps {ratio:.2f}x the plain network's saved tensors"


def test_enabling_twice_changes_nothing_and_a_network_without_units_is_refused():
    _, checkpointed = pair("elanres")
    keys = list(checkpointed.state_dict())
    assert list(enable_activation_checkpointing(checkpointed).state_dict()) == keys
    with pytest.raises(ValueError, match="declares no checkpoint_units"):
        enable_activation_checkpointing(nn.Sequential(nn.Conv3d(1, 1, 3)))


def test_head_fusion_by_hand():
    # two heads, two classes at one voxel: logits (0, 0) and (ln 3, 0) -> softmax (1/2, 1/2) and (3/4, 1/4)
    h1 = torch.zeros(1, 2, 1)
    h2 = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1)
    assert torch.allclose(fuse_heads([h1, h2], "logits").flatten(), torch.tensor([math.log(3.0) / 2, 0.0]))
    mean_softmax = torch.softmax(fuse_heads([h1, h2], "softmax"), dim=1).flatten()
    assert torch.allclose(mean_softmax, torch.tensor([5 / 8, 3 / 8]), atol=1e-6)
    # sigmoid of one channel: 1/2 and 3/4, mean 5/8 -> logit ln(5/3)
    fused = fuse_heads([h1[:, :1], h2[:, :1]], "sigmoid")
    assert abs(fused.item() - math.log(5 / 3)) < 1e-6
    # confident heads neither underflow nor overflow
    assert torch.isfinite(fuse_heads([torch.full((1, 1, 1), 80.0), torch.full((1, 1, 1), -80.0)], "sigmoid")).all()
    with pytest.raises(ValueError, match="head_fusion"):
        ESUNet(2, 3, False, head_fusion="median", **ES_KW)


def test_unet3plus_predicts_with_its_finest_head_only():
    net = UNet3Plus(2, 3, False, **ES_KW).eval()
    called = []
    for j, head in enumerate(net.decoder.heads):
        head.register_forward_hook(lambda *_, j=j: called.append(j))
    with torch.no_grad():
        out = net(torch.randn(X_SHAPE))
    assert called == [0] and out.shape == (2, 3, 8, 16, 16)


def test_default_trainers_checkpoint_and_the_opt_out_does_not():
    from nnunet_ext_trainers.dlkunet_trainers import DLKUNetLNoCheckpointingTrainer, DLKUNetLTrainer
    from nnunet_ext_trainers.elanres_trainers import ELANResMSCAUNetNoCheckpointingTrainer, ELANResMSCAUNetTrainer
    from nnunet_ext_trainers.es_unet_trainers import (ESUNetDWDRSSNoCheckpointingTrainer, ESUNetDWDRSSTrainer,
                                                      ESUNetDWDTrainer, UNet3PlusNoCheckpointingTrainer,
                                                      UNet3PlusTrainer)

    for on in (ESUNetDWDRSSTrainer, ESUNetDWDTrainer, UNet3PlusTrainer, ELANResMSCAUNetTrainer, DLKUNetLTrainer):
        assert on.activation_checkpointing, on.__name__
    for off in (ESUNetDWDRSSNoCheckpointingTrainer, UNet3PlusNoCheckpointingTrainer,
                ELANResMSCAUNetNoCheckpointingTrainer, DLKUNetLNoCheckpointingTrainer):
        assert not off.activation_checkpointing, off.__name__
