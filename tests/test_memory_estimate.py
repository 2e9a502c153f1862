"""The memory estimate of checkpointed networks, by hand (nnunet_ext.planning.memory).

Under activation checkpointing autograd keeps only each region's inputs; the step's peak comes when a
region is recomputed for its backward pass. The networks below are sines, 1x1 convs and sums: ``sin``
saves its input, a conv without bias saves its input (the weight is a parameter), ``sum`` saves nothing.
One tensor of the test input's shape, (2, 1, 4, 5, 6) in float32, is T = 2 * 120 * 4 = 960 bytes.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.utils.checkpoint
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch import nn

from nnunet_ext.benchmark.real_scale import estimate_divisor, render_estimates
from nnunet_ext.planning import memory
from nnunet_ext.planning.memory import (activation_bytes, checkpoint_regions, estimate_training_memory,
                                        fit_activation_model, meta_activation_bytes, saved_tensor_bytes)
from nnunet_ext.training.checkpointing import checkpoint_call

X_SHAPE = (2, 1, 4, 5, 6)
T = 2 * 1 * 4 * 5 * 6 * 4


def sum_loss(outputs):
    return sum(o.sum() for o in outputs)


class Sines(nn.Module):
    def forward(self, x):
        return torch.sin(torch.sin(x))  # saves x and sin(x)


class Chain(nn.Module):
    """conv -> Sines -> Sines, each Sines a checkpointed region when ``checkpointed``."""

    def __init__(self, checkpointed: bool):
        super().__init__()
        self.checkpointed = checkpointed
        self.conv = nn.Conv3d(1, 1, 1, bias=False)
        self.a, self.b = Sines(), Sines()

    def forward(self, x):
        h = self.conv(x)
        for region in (self.a, self.b):
            h = checkpoint_call(region, h, norms_of=region) if self.checkpointed else region(h)
        return h


class Outer(nn.Module):
    """sin, then a checkpointed Sines inside: a region nested in a region."""

    def __init__(self):
        super().__init__()
        self.inner = Sines()

    def forward(self, x):
        return checkpoint_call(self.inner, torch.sin(x), norms_of=self.inner)


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1, bias=False)
        self.outer = Outer()

    def forward(self, x):
        return checkpoint_call(self.outer, self.conv(x), norms_of=self.outer)


def test_plain_network_activations_are_its_saved_tensors():
    # x (conv input), h1, sin h1, h2, sin h2: five tensors, nothing recomputed
    x = torch.randn(X_SHAPE)
    assert saved_tensor_bytes(Chain(False), x, sum_loss) == activation_bytes(Chain(False), x, sum_loss) == 5 * T


def test_checkpointed_chain_adds_the_largest_recomputation_to_what_autograd_keeps():
    x = torch.randn(X_SHAPE)
    # kept between forward and backward: x and the two regions' inputs h1, h2
    assert saved_tensor_bytes(Chain(True), x, sum_loss) == 3 * T
    # recomputing one region saves sin(h) (h is already kept) while h's gradient is accumulated: 2 T
    root = checkpoint_regions(Chain(True), x, sum_loss)
    assert sum(root.saved.values()) == 3 * T and len(root.children) == 2
    assert [sum(c.saved.values()) + sum(c.input_gradients.values()) for c in root.children] == [3 * T, 3 * T]
    assert root.peak_bytes() == activation_bytes(Chain(True), x, sum_loss) == 3 * T + 2 * T


def test_nested_regions_add_up_along_the_deepest_path():
    # root keeps x and h1 = conv(x) (Outer's input); Outer's recomputation saves y = sin(h1) (Sines' input)
    # plus h1's gradient; Sines' saves sin(y) plus y's gradient: 2 T + 2 T + 2 T
    x = torch.randn(X_SHAPE)
    root = checkpoint_regions(Nested(), x, sum_loss)
    assert len(root.children) == 1 and len(root.children[0].children) == 1
    assert activation_bytes(Nested(), x, sum_loss) == 6 * T
    assert saved_tensor_bytes(Nested(), x, sum_loss) == 2 * T


def test_fit_of_a_checkpointed_network_counts_the_recomputation_per_voxel():
    # five fp32 tensors of the input's size per sample: 20 bytes per voxel (only 12 of them kept by autograd)
    model = fit_activation_model(Chain(True), 1, (1, 1, 1), loss_fn=sum_loss)
    assert model.per_voxel == pytest.approx(20.0) and model.intercept == pytest.approx(0.0)


def test_the_probe_gives_the_same_outputs_and_puts_torchs_checkpoint_back():
    import nnunet_ext.training.checkpointing as checkpointing

    original, ours = torch.utils.checkpoint.checkpoint, checkpointing.checkpoint
    net, x = Nested(), torch.randn(X_SHAPE)
    expected = net(x)
    seen = []
    activation_bytes(net, x, lambda outputs: seen.append(outputs[0].detach()) or sum_loss(outputs))
    assert torch.equal(seen[0], expected.detach())
    assert torch.utils.checkpoint.checkpoint is original and checkpointing.checkpoint is ours
    assert memory.CHECKPOINT_FUNCTIONS[0] == ("torch.utils.checkpoint", "checkpoint")


class SizeDependent(nn.Module):
    """conv -> sin, and a second sin only for inputs of more than 64 voxels per sample (a layout that depends on
    the input size, as the stage-skipping segmentor's)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1, bias=False)

    def forward(self, x):
        h = torch.sin(self.conv(x))
        return torch.sin(h) if x[0].numel() > 64 else h


@pytest.mark.parametrize("network", [Chain(False), Chain(True), Nested()], ids=["plain", "chain", "nested"])
def test_meta_device_count_equals_the_cpu_count(network):
    x = torch.randn(X_SHAPE)
    assert meta_activation_bytes(network, 1, X_SHAPE[2:], sum_loss) == activation_bytes(network, x, sum_loss) / 2


def test_estimate_counts_at_the_patch_where_the_small_probes_see_another_layout():
    # at 4x5x6 = 120 voxels: x, conv(x), sin(conv(x)) saved, 12 bytes per voxel; the probes (2 and 4 voxels)
    # run one sine only: 8 bytes per voxel
    net = SizeDependent()
    assert fit_activation_model(net, 1, (1, 1, 1), loss_fn=sum_loss).per_voxel == pytest.approx(8.0)
    assert meta_activation_bytes(net, 1, (4, 5, 6), sum_loss) == 12 * 120
    estimate = estimate_training_memory(net, 1, (4, 5, 6), 3, (1, 1, 1))
    surrogate = activation_bytes(net, torch.zeros(2, 1, 4, 5, 6)) / 2  # nnU-Net-like loss: + softmax etc.
    assert estimate.activation_bytes == 3 * surrogate and estimate.parameter_bytes == 4


# ------------------------------------------------------------------------------- real_scale's use of it

def configuration(architecture: dict, patch) -> ConfigurationManager:
    return ConfigurationManager({"patch_size": patch, "architecture": architecture, "spacing": [1.0] * len(patch)})


def test_divisor_from_the_plans_strides_or_the_networks_fixed_stride():
    plain = {"network_class_name": "x", "arch_kwargs": {"strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]]},
             "_kw_requires_import": []}
    assert estimate_divisor(nn.Identity(), configuration(plain, [16, 32, 32])) == [2, 4, 4]
    sts = {"network_class_name": "STSNet25D", "arch_kwargs": {"output_stride": 8}, "_kw_requires_import": []}
    net = nn.Identity()
    net.output_stride = 8  # STS-Net 2.5D: stride 8 in-plane, the 5-slice window probed whole
    assert estimate_divisor(net, configuration(sts, [5, 224, 224])) == [5, 8, 8]
    with pytest.raises(ValueError, match="no 'strides' and the network has no 'output_stride'"):
        estimate_divisor(nn.Identity(), configuration(sts, [5, 224, 224]))


def test_estimate_table_puts_the_measured_memory_beside_at_the_same_patch_only():
    results = [{"trainer": "A", "patch_size": [8, 16, 16], "batch_size": 2, "checkpointing": True, "estimate_gb": 3.0},
               {"trainer": "B", "patch_size": [8, 16, 16], "batch_size": 2, "checkpointing": False, "estimate_gb": 1.0},
               {"trainer": "C", "error": "exit 1: boom"}]
    measured = [{"trainer": "A", "patch_size": [8, 16, 16], "batch_size": 2, "train_memory_gb": 4.0,
                 "memory_kind": "CPU peak RSS"},
                {"trainer": "B", "patch_size": [8, 16, 32], "batch_size": 2, "train_memory_gb": 9.0,
                 "memory_kind": "CPU peak RSS"}]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")
            for line in render_estimates(results, "cmd", "T", json.loads(json.dumps(measured))).splitlines()
            if line.startswith("| ") and not line.startswith("| trainer")}
    assert rows["A"][2:] == ["yes", "3.00", "4.00", "0.75 |"]
    assert rows["B"][4:] == ["-", "- |"]  # measured at another patch: not comparable
    assert "failed: exit 1: boom" in rows["C"][1]
