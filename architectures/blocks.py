"""Parts shared by the plans-driven U-Nets (DLKUNet, ELANRes-MSCA-UNet): argument checks and the U-Net skeleton.

The skeleton classes hold no parameters of their own, so a network built on them keeps exactly the
state_dict keys of its own modules (nnU-Net loads checkpoints strictly).
"""
from __future__ import annotations

import pydoc
from typing import List, Optional, Tuple, Type, Union

import torch
from torch import nn

from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim, convert_dim_to_conv_op

ConvOp = Union[Type[nn.Conv2d], Type[nn.Conv3d], str]
StageArguments = Tuple[Type[nn.Module], int, List[int], List[Tuple[int, ...]], List[Tuple[int, ...]]]


def resolve_conv_op(conv_op: ConvOp) -> Type[nn.Module]:
    """Accept a conv class or its dotted name (as written in nnU-Net plans)."""
    resolved = pydoc.locate(conv_op) if isinstance(conv_op, str) else conv_op
    if resolved not in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        raise ValueError(f"conv_op must be torch.nn.Conv2d or torch.nn.Conv3d (or its dotted name), got {conv_op!r}")
    return resolved


def per_stage_tuples(value, n_stages: int, dim: int, name: str) -> List[Tuple[int, ...]]:
    """Normalise an int / per-axis list / per-stage list into ``n_stages`` tuples of ``dim`` ints."""
    if isinstance(value, int):
        value = [value] * n_stages
    value = list(value)
    if len(value) != n_stages:
        raise ValueError(f"{name} must have one entry per stage ({n_stages}), got {len(value)}")
    out = []
    for stage, v in enumerate(value):
        v = (int(v),) * dim if isinstance(v, int) else tuple(int(i) for i in v)
        if len(v) != dim or min(v) < 1:
            raise ValueError(f"{name}[{stage}] must be {dim} positive ints, got {v}")
        out.append(v)
    return out


def unet_stage_arguments(network: str, conv_op: ConvOp, n_stages: int, features_per_stage, kernel_sizes,
                         strides) -> StageArguments:
    """(conv_op, dim, features, kernel_sizes, strides) checked and normalised per stage, as the constructors take them.

    ``features_per_stage`` may be an int (doubled per stage); ``strides`` None means 1, then 2 per stage.
    """
    conv_op = resolve_conv_op(conv_op)
    dim = convert_conv_op_to_dim(conv_op)
    if n_stages < 2:
        raise ValueError(f"{network} needs at least 2 stages (one downsampling), got n_stages={n_stages}")
    if isinstance(features_per_stage, int):
        features_per_stage = [features_per_stage * 2 ** i for i in range(n_stages)]
    if len(features_per_stage) != n_stages:
        raise ValueError(f"features_per_stage needs {n_stages} entries, got {list(features_per_stage)}")
    if strides is None:
        strides = [1] + [2] * (n_stages - 1)
    kernel_sizes = per_stage_tuples(kernel_sizes, n_stages, dim, "kernel_sizes")
    strides = per_stage_tuples(strides, n_stages, dim, "strides")
    return conv_op, dim, list(features_per_stage), kernel_sizes, strides


def plans_stage_kwargs(configuration_manager, network: str, max_stages: Optional[int] = None) -> dict:
    """Depth, widths, kernel sizes, strides and conv op (JSON-able) from an nnU-Net configuration's plans.

    ``max_stages`` cuts the network to that many resolution stages.
    """
    arch = configuration_manager.network_arch_init_kwargs
    missing = [k for k in ("n_stages", "features_per_stage", "kernel_sizes", "strides") if k not in arch]
    if missing:
        raise ValueError(f"plans architecture kwargs lack {missing}; cannot derive {network} kwargs")
    dim = len(configuration_manager.patch_size)
    n = int(arch["n_stages"]) if max_stages is None else min(int(arch["n_stages"]), int(max_stages))
    conv_op = convert_dim_to_conv_op(dim)
    return {
        "n_stages": n,
        "features_per_stage": [int(f) for f in arch["features_per_stage"][:n]],
        "conv_op": f"{conv_op.__module__}.{conv_op.__name__}",
        "kernel_sizes": [list(map(int, k)) for k in arch["kernel_sizes"][:n]],
        "strides": [list(map(int, s)) for s in arch["strides"][:n]],
    }


class SkipEncoder(nn.Module):
    """Runs ``self.stages`` in turn and returns every stage's output (the skips, full resolution first)."""

    stages: nn.ModuleList

    def forward(self, x) -> List[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class DeepSupervisionDecoder(nn.Module):
    """Decoder loop: ``fuse`` one stage with its skip from the bottleneck up, a 1x1 head per stage.

    Subclasses set ``stages``, ``seg_layers`` (one head per stage, present whether or not deep
    supervision is on, so the state_dict never depends on it) and ``deep_supervision``, and define
    ``fuse(i, below, skip)``. Outputs come in nnU-Net's order: full resolution first.
    """

    stages: nn.ModuleList
    seg_layers: nn.ModuleList
    deep_supervision: bool

    def fuse(self, i: int, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, skips: List[torch.Tensor]):
        x, outputs = skips[-1], []
        last = len(self.stages) - 1
        for i, head in enumerate(self.seg_layers):
            x = self.fuse(i, x, skips[-(i + 2)])
            if self.deep_supervision or i == last:
                outputs.append(head(x))
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]
