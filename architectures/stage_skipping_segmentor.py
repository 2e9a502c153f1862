"""Multi-stage segmentor with stage skipping (Kim et al., CMC 2025, Sec. 3.2), laid out for nnU-Net.

The segmentor has a fixed number N of stages; stage k handles inputs up to ``2^(N-k) s0`` voxels per edge.
An input of edge V0 enters at the threshold stage r, the smallest k with ``V0 >= 2^(N-k) s0`` (Eq. 2),
i.e. ``r = N - floor(log2(V0 / s0))`` clamped to [1, N] (Eq. 3 read with a floor); stages 1..r-1 are not
run. A gate (conv) brings the input to stage r's width, a depth-wise + point-wise convolution downsamples
between stages, two conv blocks refine every stage, transposed convs + skip concatenation + refine go back
up, and a 1x1 head per stage gives logits (deep supervision: one output per active decoder level).

nnU-Net specifics (docs/cascade.md):
- "Input size" is the spatial size of the tensor the network receives: nnU-Net's patch in training and in
  sliding-window inference alike (smaller images are padded to the patch), so a trained model has one r;
  stage skipping acts between models whose patches differ (a stage-2 model on ROI crops gets a smaller
  patch from nnU-Net's planner and hence fewer stages), and for direct calls on whole ROIs.
- Anisotropic strides (from the voxel spacing, as nnU-Net's planner) generalise Eq. 2 per axis: stage k
  can take the input if every axis is at least ``s0`` times the downsampling from stage k to N. With
  stride 2 on every axis this is exactly the paper's rule with V0 = the smallest edge.
- Instead of resizing the input to a cube (paper), the input is zero-padded at the far end to a multiple
  of the active total stride and every output is cropped back (nnU-Net's geometry must stay untouched).
"""
from __future__ import annotations

import math
import pydoc
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

from dynamic_network_architectures.building_blocks.helper import (
    convert_conv_op_to_dim, get_matching_convtransp, get_matching_instancenorm)
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He

from nnunet_ext.registry import register

SEGMENTOR_CLASS = "nnunet_ext_architectures.stage_skipping_segmentor.StageSkippingSegmentor"
MAX_FEATURES = 320  # nnU-Net's cap for 3D


def paper_threshold_index(v0: float, n_stages: int, s0: float) -> int:
    """Eq. 3 with a floor, clamped: ``r = N - floor(log2(V0 / s0))`` in [1, N] (the smallest k of Eq. 2)."""
    if n_stages < 1 or s0 <= 0 or v0 <= 0:
        raise ValueError(f"need n_stages >= 1, s0 > 0 and V0 > 0; got N={n_stages}, s0={s0}, V0={v0}")
    halvings = math.floor(math.log2(v0 / s0) + 1e-12)  # exact powers of two must not round down
    return int(min(n_stages, max(1, n_stages - halvings)))


def axis_products(strides: Sequence[Sequence[int]], dim: int) -> List[int]:
    """Per-axis product of the strides (all ones for none), in plain Python ints: numpy in forward() would be
    traced into tensors by torch.compile and break its graph."""
    products = [1] * dim
    for stride in strides:
        products = [p * int(s) for p, s in zip(products, stride)]
    return products


def first_active_stage(input_shape: Sequence[int], stage_strides: Sequence[Sequence[int]], s0: int) -> int:
    """Eq. 2 per axis: the smallest stage k (1-based) such that every axis >= s0 x downsampling from k to N.

    ``stage_strides[i]`` is the stride into stage i + 1 (``stage_strides[0]`` is all ones). Inputs too
    small for stage N still enter at stage N (clamp, as in Eq. 3).
    """
    n = len(stage_strides)
    shape = [int(s) for s in input_shape]
    for k in range(1, n + 1):
        down = axis_products(stage_strides[k:], len(shape))
        if all(s >= s0 * d for s, d in zip(shape, down)):
            return k
    return n


@dataclass
class StageSkippingConfig:
    """Topology of the segmentor: one entry per stage (1..N), strides into each stage."""

    n_stages: int
    features_per_stage: List[int]
    conv_op: Type[_ConvNd]
    stage_strides: List[List[int]]
    kernel_size: int = 3
    s0: int = 4
    norm_op: Optional[Type[nn.Module]] = None  # None -> InstanceNorm (nnU-Net's default)
    norm_op_kwargs: dict = field(default_factory=lambda: {"eps": 1e-5, "affine": True})

    @classmethod
    def build(cls, n_stages: int, features_per_stage, conv_op, stage_strides, kernel_size: int = 3, s0: int = 4,
              norm_op=None, norm_op_kwargs: Optional[dict] = None) -> "StageSkippingConfig":
        if isinstance(conv_op, str):
            conv_op = pydoc.locate(conv_op)
        if conv_op not in (nn.Conv2d, nn.Conv3d):
            raise ValueError(f"conv_op must be nn.Conv2d or nn.Conv3d, got {conv_op!r}")
        if isinstance(norm_op, str):
            norm_op = pydoc.locate(norm_op)
        dim = convert_conv_op_to_dim(conv_op)
        if not isinstance(n_stages, int) or n_stages < 1:
            raise ValueError(f"n_stages (the paper's N) must be an integer >= 1, got {n_stages!r}")
        features = [int(features_per_stage)] * n_stages if np.isscalar(features_per_stage) \
            else [int(f) for f in features_per_stage]
        if len(features) != n_stages or min(features) < 1:
            raise ValueError(f"features_per_stage needs {n_stages} positive entries, got {features_per_stage}")
        strides = [[int(s)] * dim if np.isscalar(s) else [int(v) for v in s] for s in stage_strides]
        if len(strides) != n_stages or any(len(s) != dim or min(s) < 1 for s in strides):
            raise ValueError(f"stage_strides needs {n_stages} entries of {dim} positive integers, got {stage_strides}")
        if any(v != 1 for v in strides[0]):
            raise ValueError(f"stage_strides[0] must be all ones (stage 1 keeps the input resolution), "
                             f"got {strides[0]}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if s0 < 1:
            raise ValueError(f"s0 (edge handled by the deepest stage) must be >= 1, got {s0}")
        norm_op = norm_op or get_matching_instancenorm(conv_op)
        return cls(n_stages, features, conv_op, strides, int(kernel_size), int(s0), norm_op,
                   dict(norm_op_kwargs or {"eps": 1e-5, "affine": True}))

    @property
    def dim(self) -> int:
        return convert_conv_op_to_dim(self.conv_op)

    def first_active_stage(self, input_shape: Sequence[int]) -> int:
        if len(input_shape) != self.dim:
            raise ValueError(f"input has {len(input_shape)} spatial axes, the segmentor is {self.dim}D")
        return first_active_stage(input_shape, self.stage_strides, self.s0)

    def cumulative_strides(self, r: int) -> List[List[int]]:
        """Per output (finest first): total downsampling relative to the input when entering at stage r."""
        levels = range(r, max(r + 1, self.n_stages))  # active decoder levels r..N-1 (stage N alone: level N)
        return [axis_products(self.stage_strides[r:k], self.dim) for k in levels]

    def output_scales(self, input_shape: Sequence[int]) -> List[List[float]]:
        """nnU-Net deep-supervision scales (fractions of the input size) of the outputs for this input."""
        return [[1.0 / v for v in c] for c in self.cumulative_strides(self.first_active_stage(input_shape))]


def _conv_block(config: StageSkippingConfig, c_in: int, c_out: int, n_convs: int = 2) -> nn.Module:
    return StackedConvBlocks(n_convs, config.conv_op, c_in, c_out, config.kernel_size, 1, True, config.norm_op,
                             config.norm_op_kwargs, None, None, nn.LeakyReLU, {"inplace": True})


class DepthwiseDownsample(nn.Module):
    """Paper's downsampling: depth-wise conv (kernel = stride) then point-wise conv, norm, nonlinearity."""

    def __init__(self, config: StageSkippingConfig, c_in: int, c_out: int, stride: Sequence[int]):
        super().__init__()
        self.depthwise = config.conv_op(c_in, c_in, kernel_size=tuple(stride), stride=tuple(stride), groups=c_in)
        self.pointwise = config.conv_op(c_in, c_out, kernel_size=1)
        self.norm = config.norm_op(c_out, **config.norm_op_kwargs)
        self.nonlin = nn.LeakyReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.norm(self.pointwise(self.depthwise(x))))


class StageSkippingDecoder(nn.Module):
    """Upsampling stages and per-stage heads; ``deep_supervision`` picks all active outputs vs the finest."""

    def __init__(self, config: StageSkippingConfig, num_classes: int, deep_supervision: bool):
        super().__init__()
        transp = get_matching_convtransp(config.conv_op)
        f = config.features_per_stage
        # up[k-1]: stage k+1 -> stage k (k = 1..N-1); refine[k-1] fuses it with stage k's skip
        self.up = nn.ModuleList([transp(f[k], f[k - 1], kernel_size=tuple(config.stage_strides[k]),
                                        stride=tuple(config.stage_strides[k])) for k in range(1, config.n_stages)])
        self.refine = nn.ModuleList([_conv_block(config, 2 * f[k - 1], f[k - 1]) for k in range(1, config.n_stages)])
        self.heads = nn.ModuleList([config.conv_op(f[k], num_classes, kernel_size=1) for k in range(config.n_stages)])
        self.deep_supervision = deep_supervision

    def forward(self, skips: List[torch.Tensor], r: int) -> List[torch.Tensor]:
        """skips: encoder features of stages r..N; returns outputs finest (stage r) first."""
        n = len(skips) + r - 1
        x = skips[-1]
        if r == n:
            return [self.heads[n - 1](x)]
        outputs = []
        for k in range(n - 1, r - 1, -1):
            x = self.refine[k - 1](torch.cat([self.up[k - 1](x), skips[k - r]], dim=1))
            outputs.append(self.heads[k - 1](x))
        return outputs[::-1]


@register("architecture", plans={"kwargs_builder": "stage_skipping_kwargs_from_configuration"})
class StageSkippingSegmentor(nn.Module):
    """Multi-stage segmentor (CMC 2025) whose first stages switch off when the input is small (r = N - log2(V0/s0))."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = True, **kwargs):
        super().__init__()
        if input_channels < 1 or num_classes < 1:
            raise ValueError(f"input_channels and num_classes must be >= 1, got {input_channels}, {num_classes}")
        self.config = StageSkippingConfig.build(**kwargs)
        c, f = self.config, self.config.features_per_stage
        # a gate per stage: the input can enter at any stage (paper: "gating module")
        self.gates = nn.ModuleList([_conv_block(c, input_channels, f[k], 1) for k in range(c.n_stages)])
        self.down = nn.ModuleList([nn.Identity()] + [DepthwiseDownsample(c, f[k - 1], f[k], c.stage_strides[k])
                                                     for k in range(1, c.n_stages)])
        self.encoder_refine = nn.ModuleList([_conv_block(c, f[k], f[k]) for k in range(c.n_stages)])
        self.decoder = StageSkippingDecoder(c, num_classes, deep_supervision)
        self.apply(InitWeights_He(1e-2))

    def active_stages(self, input_shape: Sequence[int]) -> Tuple[int, ...]:
        """1-based indices of the stages that run for an input of this spatial shape."""
        r = self.config.first_active_stage(input_shape)
        return tuple(range(r, self.config.n_stages + 1))

    def forward(self, x: torch.Tensor):
        shape = tuple(x.shape[2:])
        r = self.config.first_active_stage(shape)
        total = axis_products(self.config.stage_strides[r:], self.config.dim)
        pad = [(-s) % m for s, m in zip(shape, total)]
        if any(pad):
            x = F.pad(x, [p for q in reversed(pad) for p in (0, q)])
        x = self.encoder_refine[r - 1](self.gates[r - 1](x))
        skips = [x]
        for k in range(r + 1, self.config.n_stages + 1):
            x = self.encoder_refine[k - 1](self.down[k - 1](x))
            skips.append(x)
        outputs = self.decoder(skips, r)
        cumulative = self.config.cumulative_strides(r)
        # crop back to nnU-Net's target sizes: round(shape / stride), as its deep-supervision downsampling
        outputs = [o[(Ellipsis, *[slice(0, round(s / c)) for s, c in zip(shape, cum)])]
                   for o, cum in zip(outputs, cumulative)]
        return outputs if self.decoder.deep_supervision else outputs[0]


def spacing_based_strides(spacing: Sequence[float], n_stages: int) -> List[List[int]]:
    """Strides into each stage: halve an axis while its spacing is within 2x of the finest (nnU-Net's rule)."""
    current = np.array([float(s) for s in spacing])
    if current.min() <= 0:
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}")
    strides = [[1] * len(current)]
    for _ in range(1, n_stages):
        stride = [2 if s <= 2 * current.min() else 1 for s in current]
        current = current * np.array(stride)
        strides.append(stride)
    return strides


def stage_skipping_kwargs_from_configuration(configuration_manager, n_stages: int = 5, base_features: int = 16,
                                             s0: int = 4, kernel_size: int = 3) -> dict:
    """Plans ``architecture`` entry: N fixed stages (the paper's segmentor does not shrink with the dataset),
    strides from the configuration's spacing, widths doubling from ``base_features`` up to 320."""
    patch = list(configuration_manager.patch_size)
    if len(patch) not in (2, 3):
        raise ValueError(f"configuration patch size {patch} is neither 2D nor 3D")
    conv_op = "torch.nn.modules.conv.Conv3d" if len(patch) == 3 else "torch.nn.modules.conv.Conv2d"
    kwargs = {
        "n_stages": int(n_stages),
        "features_per_stage": [min(MAX_FEATURES, int(base_features) * 2 ** k) for k in range(int(n_stages))],
        "conv_op": conv_op,
        "stage_strides": spacing_based_strides(configuration_manager.spacing, int(n_stages)),
        "kernel_size": int(kernel_size),
        "s0": int(s0),
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d" if len(patch) == 3
        else "torch.nn.modules.instancenorm.InstanceNorm2d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
    }
    StageSkippingConfig.build(**kwargs)  # fail at planning time, not at the first training step
    return {"network_class_name": SEGMENTOR_CLASS, "arch_kwargs": kwargs, "_kw_requires_import": ["conv_op", "norm_op"]}
