"""DLKUNet: a lightweight U-Net of depthwise-separable convolutions and large-kernel attention.

Paper: "DLKUNet" (seed 001): EBlock = two depthwise+pointwise convolutions (BN, ReLU) followed by a
large-kernel attention (depthwise 5, dilated depthwise 7 (dilation 3), pointwise, multiplied with its
input, plus a residual); Decoder Fusion Block = transposed-conv upsampling, auto-resize (zero padding)
to the skip, concatenation, then the same convolution + attention parts; max-pool downsampling; a 1x1
reprojection layer. The S / M / L presets differ only in depth (3 / 4 / 5 resolution stages, C = 96
doubling per stage); see docs/dlkunet.md for how the presets reproduce Table 1.

The network is written for any ``conv_op`` (Conv2d as in the paper, Conv3d for volumes) and for
per-stage kernel sizes and (anisotropic) strides, so nnU-Net's plans can drive it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dynamic_network_architectures.building_blocks.helper import (
    convert_conv_op_to_dim, convert_dim_to_conv_op, get_matching_batchnorm, get_matching_convtransp,
    get_matching_pool_op)

from nnunet_ext.registry import register
from nnunet_ext_architectures.blocks import (ConvOp, DeepSupervisionDecoder, SkipEncoder, plans_stage_kwargs,
                                             unet_stage_arguments)

# Table 1 of the paper: the presets differ in the number of resolution stages; C = 96 doubles per stage.
PAPER_PRESETS = {"S": 3, "M": 4, "L": 5}
PAPER_BASE_CHANNELS = 96
# Table 1 parameter counts (millions) at 224x224, 1 input channel, 9 classes (Synapse).
PAPER_PARAMS_M = {"S": 1.13, "M": 4.49, "L": 17.70}
PAPER_GFLOPS = {"S": 15.95, "M": 22.84, "L": 29.64}

# Keys of the constructor that name a class (for nnU-Net plans' ``_kw_requires_import``).
REQUIRES_IMPORT = ("conv_op",)


@dataclass(frozen=True)
class LargeKernelConfig:
    """Attention part of an EBlock: depthwise ``kernel``, then depthwise ``spatial_kernel`` dilated by ``dilation``."""

    kernel: int = 5
    spatial_kernel: int = 7
    dilation: int = 3
    residual: bool = True

    def per_axis(self, conv_kernel: Sequence[int]):
        """Axes along which the stage's own kernel is 1 (anisotropic plans) get no large kernel either."""
        k = tuple(self.kernel if c > 1 else 1 for c in conv_kernel)
        s = tuple(self.spatial_kernel if c > 1 else 1 for c in conv_kernel)
        d = tuple(self.dilation if c > 1 else 1 for c in conv_kernel)
        return k, s, d


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise conv (one filter per channel) then pointwise 1x1 conv: the paper's DWConv."""

    def __init__(self, conv_op, in_channels: int, out_channels: int, kernel_size: Sequence[int]):
        super().__init__()
        self.depthwise = conv_op(in_channels, in_channels, kernel_size, padding=[k // 2 for k in kernel_size],
                                 groups=in_channels)
        self.pointwise = conv_op(in_channels, out_channels, 1)


class LargeKernelAttention(nn.Module):
    """Eq. 3-4: decomposed large kernel (depthwise, dilated depthwise, pointwise) gating its input."""

    def __init__(self, conv_op, channels: int, conv_kernel: Sequence[int], config: LargeKernelConfig):
        super().__init__()
        k, s, d = config.per_axis(conv_kernel)
        self.depthwise = conv_op(channels, channels, k, padding=[i // 2 for i in k], groups=channels)
        self.spatial = conv_op(channels, channels, s, padding=[dd * (i - 1) // 2 for i, dd in zip(s, d)],
                               dilation=d, groups=channels)
        self.pointwise = conv_op(channels, channels, 1)
        self.residual = config.residual

    def forward(self, x):
        attention = self.pointwise(self.spatial(self.depthwise(x)))
        out = x * attention
        return out + x if self.residual else out


class EBlock(nn.Module):
    """Convolution part (2x [DWConv, BN, ReLU]) then attention part; also the body of the DFB."""

    def __init__(self, conv_op, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 attention: LargeKernelConfig):
        super().__init__()
        norm = get_matching_batchnorm(conv_op)
        self.conv1 = DepthwiseSeparableConv(conv_op, in_channels, out_channels, kernel_size)
        self.norm1 = norm(out_channels)
        # Eq. 2 has no ReLU after the second BN, but Fig. 2 and the authors' code have one; we follow them.
        self.conv2 = DepthwiseSeparableConv(conv_op, out_channels, out_channels, kernel_size)
        self.norm2 = norm(out_channels)
        self.nonlin = nn.ReLU(inplace=True)
        self.attention = LargeKernelAttention(conv_op, out_channels, kernel_size, attention)

    def forward(self, x):
        x = self.nonlin(self.norm1(self.conv1(x)))
        x = self.nonlin(self.norm2(self.conv2(x)))
        return self.attention(x)


class DLKEncoder(SkipEncoder):
    """Stage 0 lifts the input to C channels; every later stage is max-pool then EBlock (DLKBlock)."""

    def __init__(self, conv_op, input_channels: int, features: Sequence[int], kernel_sizes, strides,
                 attention: LargeKernelConfig):
        super().__init__()
        pool = get_matching_pool_op(conv_op, pool_type="max")
        stages = []
        in_ch = input_channels
        for f, k, s in zip(features, kernel_sizes, strides):
            block = EBlock(conv_op, in_ch, f, k, attention)
            stages.append(nn.Sequential(pool(s, s), block) if max(s) > 1 else nn.Sequential(block))
            in_ch = f
        self.stages = nn.ModuleList(stages)
        self.output_channels = list(features)
        self.strides = list(strides)
        self.kernel_sizes = list(kernel_sizes)
        self.conv_op = conv_op


def pad_to(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The DFB's auto-resize: zero-pad (centred) the upsampled map to the skip's spatial shape."""
    diffs = [t - s for t, s in zip(shape, x.shape[2:])]
    if min(diffs) < 0:
        raise RuntimeError(f"upsampled feature map {tuple(x.shape[2:])} is larger than its skip {tuple(shape)}")
    if max(diffs) == 0:
        return x
    pad = []
    for d in reversed(diffs):  # F.pad lists the last axis first
        pad += [d // 2, d - d // 2]
    return F.pad(x, pad)


class DecoderFusionBlock(nn.Module):
    """DFB: transposed-conv upsampling, auto-resize to the skip, channel concat, then EBlock."""

    def __init__(self, conv_op, below_channels: int, channels: int, stride: Sequence[int],
                 kernel_size: Sequence[int], attention: LargeKernelConfig):
        super().__init__()
        # The paper's text says 3x3 / stride 1 / padding 1, which cannot double the resolution; the
        # authors' code uses kernel = stride = 2, which is what we do (kernel = stride per axis).
        self.upsample = get_matching_convtransp(conv_op)(below_channels, channels, stride, stride)
        self.block = EBlock(conv_op, 2 * channels, channels, kernel_size, attention)

    def forward(self, below, skip):
        up = pad_to(self.upsample(below), skip.shape[2:])
        return self.block(torch.cat([skip, up], dim=1))


class DLKDecoder(DeepSupervisionDecoder):
    """DFBs from the bottleneck up; one 1x1 head per stage (the last is the paper's reprojection layer).

    Heads exist whether or not ``deep_supervision`` is on, so the state_dict never depends on it.
    """

    def __init__(self, encoder: DLKEncoder, num_classes: int, deep_supervision: bool,
                 attention: LargeKernelConfig):
        super().__init__()
        conv_op = encoder.conv_op
        feats, strides, kernels = encoder.output_channels, encoder.strides, encoder.kernel_sizes
        stages, heads = [], []
        for s in range(len(feats) - 1, 0, -1):  # from the bottleneck towards full resolution
            stages.append(DecoderFusionBlock(conv_op, feats[s], feats[s - 1], strides[s], kernels[s - 1], attention))
            heads.append(conv_op(feats[s - 1], num_classes, 1))
        self.stages = nn.ModuleList(stages)
        self.seg_layers = nn.ModuleList(heads)
        self.deep_supervision = deep_supervision

    def fuse(self, i: int, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.stages[i](below, skip)


@register("architecture", plans={"kwargs_builder": "dlkunet_kwargs_from_configuration", "checkpointed": True})
class DLKUNet(nn.Module):
    """DLKUNet (S/M/L presets or plans-driven): depthwise-separable U-Net with large-kernel attention."""

    # what activation checkpointing (nnunet_ext.training.checkpointing) recomputes: every EBlock (encoder stages
    # and the body of each decoder fusion block) keeps its input and output only
    checkpoint_units = (EBlock,)

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, *,
                 n_stages: int, features_per_stage: Sequence[int], conv_op: ConvOp = nn.Conv2d,
                 kernel_sizes=3, strides=None, attention_kernel: int = 5, attention_spatial_kernel: int = 7,
                 attention_dilation: int = 3, attention_residual: bool = True):
        super().__init__()
        conv_op, dim, features_per_stage, kernel_sizes, strides = unet_stage_arguments(
            "DLKUNet", conv_op, n_stages, features_per_stage, kernel_sizes, strides)
        if any(k % 2 == 0 for ks in kernel_sizes for k in ks):
            raise ValueError(f"kernel_sizes must be odd (same padding), got {kernel_sizes}")
        attention = LargeKernelConfig(attention_kernel, attention_spatial_kernel, attention_dilation,
                                      attention_residual)
        self.encoder = DLKEncoder(conv_op, input_channels, features_per_stage, kernel_sizes, strides, attention)
        self.decoder = DLKDecoder(self.encoder, num_classes, deep_supervision, attention)

    def forward(self, x):
        if x.ndim != convert_conv_op_to_dim(self.encoder.conv_op) + 2:
            raise ValueError(f"DLKUNet with {self.encoder.conv_op.__name__} expects (B, C, *spatial) input with "
                             f"{convert_conv_op_to_dim(self.encoder.conv_op)} spatial axes, got shape {tuple(x.shape)}")
        return self.decoder(self.encoder(x))

    def deep_supervision_scales(self) -> List[List[float]]:
        """Resolution of each output relative to the input (nnU-Net's ``_get_deep_supervision_scales``)."""
        scales, factor = [], [1.0] * len(self.encoder.strides[0])
        for s in self.encoder.strides[:-1]:
            factor = [f / i for f, i in zip(factor, s)]
            scales.append(list(factor))
        return scales


def paper_preset_kwargs(preset: str, dim: int = 2) -> dict:
    """Constructor kwargs of DLKUNet-S/M/L (Table 1): 3/4/5 stages, C = 96 doubling, 3x3 kernels, 2x2 pooling."""
    key = preset.upper()
    if key not in PAPER_PRESETS:
        raise ValueError(f"unknown DLKUNet preset {preset!r}; expected one of {sorted(PAPER_PRESETS)}")
    n = PAPER_PRESETS[key]
    conv_op = convert_dim_to_conv_op(dim)
    return {
        "n_stages": n,
        "features_per_stage": [PAPER_BASE_CHANNELS * 2 ** i for i in range(n)],
        "conv_op": f"{conv_op.__module__}.{conv_op.__name__}",
        "kernel_sizes": [[3] * dim] * n,
        "strides": [[1] * dim] + [[2] * dim] * (n - 1),
    }


def dlkunet_kwargs_from_configuration(configuration_manager, preset: Optional[str] = None,
                                      max_stages: Optional[int] = None) -> dict:
    """DLKUNet constructor kwargs (JSON-able, nnU-Net style) for an nnU-Net configuration.

    ``preset`` ("S"/"M"/"L") gives the paper's network in the configuration's dimensionality; without it
    the depth, strides, kernel sizes and widths follow the plans (anisotropic strides included), cut to
    ``max_stages`` stages if given.
    """
    dim = len(configuration_manager.patch_size)
    if preset is not None:
        return paper_preset_kwargs(preset, dim)
    return plans_stage_kwargs(configuration_manager, "DLKUNet", max_stages)
