"""ELANRes-MSCA-UNet: 3D U-Net of re-parameterizable ELAN residual blocks with multi-scale conv attention.

Paper: "Multi-Scale Convolutional Attention and Structural Re-Parameterized Residual-Based 3D U-Net"
(seed 002). Its figures are not in the text we have, so the block internals follow the works it builds
on (RepVGG for the re-parameterized convolutions, YOLOv7's ELAN for the aggregation, SegNeXt for
MSCA); every choice is listed in docs/elanres_msca_unet.md.

Re-parameterization: each :class:`RepConvBN` trains as k-conv+BN, 1x1-conv+BN and (when shapes allow)
identity+BN branches. In eval mode it runs the single equivalent convolution, computed lazily and cached
against the branch tensors' versions, so the state_dict always holds the trainable branches (nnU-Net's
strict loading works), ``train()`` brings the branches back, and weights loaded after a fuse are picked
up at the next forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dynamic_network_architectures.building_blocks.helper import (
    convert_conv_op_to_dim, get_matching_batchnorm, get_matching_convtransp)

from nnunet_ext.registry import register
from nnunet_ext_architectures.blocks import (ConvOp, DeepSupervisionDecoder, SkipEncoder, plans_stage_kwargs,
                                             unet_stage_arguments)

REQUIRES_IMPORT = ("conv_op",)
MSCA_STRIP_LENGTHS = (7, 11, 21)
MSCA_DEPTHWISE_KERNEL = 5


def _conv_nd(x, weight, bias, stride, padding):
    return (F.conv2d if x.ndim == 4 else F.conv3d if x.ndim == 5 else F.conv1d)(x, weight, bias, stride, padding)


def fold_batchnorm(kernel: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of conv-then-BN (eval statistics) as one convolution."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    shape = (-1,) + (1,) * (kernel.ndim - 1)
    return kernel * scale.reshape(shape), bn.bias - bn.running_mean * scale


def pad_kernel_to(kernel: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad a smaller odd kernel so its centre sits at the centre of ``size``."""
    pad = []
    for k, s in zip(reversed(kernel.shape[2:]), reversed(size)):
        pad += [(s - k) // 2, (s - k) // 2]
    return F.pad(kernel, pad)


class RepConvBN(nn.Module):
    """RepVGG-style conv: k-conv+BN, 1x1-conv+BN and identity-BN branches; one fused conv at inference.

    ``fuse_for_inference`` (default True) lets eval mode use the fused kernel; switch it off to run the
    branches in eval mode (that is what the equivalence test compares against).
    """

    def __init__(self, conv_op, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int] = None):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        kernel_size = tuple(kernel_size)
        stride = tuple(stride) if stride is not None else (1,) * dim
        if any(k % 2 == 0 for k in kernel_size):
            raise ValueError(f"RepConvBN needs odd kernel sizes to centre the 1x1 branch, got {kernel_size}")
        norm = get_matching_batchnorm(conv_op)
        self.kernel_size, self.stride = kernel_size, stride
        self.padding = tuple(k // 2 for k in kernel_size)
        self.dense = nn.Sequential(conv_op(in_channels, out_channels, kernel_size, stride, self.padding, bias=False),
                                   norm(out_channels))
        self.pointwise = None
        if max(kernel_size) > 1:  # a 1x1 branch beside a 1x1 kernel would be the same branch twice
            self.pointwise = nn.Sequential(conv_op(in_channels, out_channels, 1, stride, 0, bias=False),
                                           norm(out_channels))
        self.identity = norm(out_channels) if in_channels == out_channels and max(stride) == 1 else None
        self.in_channels, self.out_channels = in_channels, out_channels
        self.fuse_for_inference = True
        self._fused_cache = None

    # -- the equivalent single convolution -------------------------------------------------------
    def _branch_tensors(self) -> List[torch.Tensor]:
        return [t for m in (self.dense, self.pointwise, self.identity) if m is not None
                for t in list(m.parameters()) + list(m.buffers())]

    def fused_kernel_and_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The (kernel, bias) of one convolution equal to the sum of the branches in eval mode."""
        kernel, bias = fold_batchnorm(self.dense[0].weight, self.dense[1])
        if self.pointwise is not None:
            k1, b1 = fold_batchnorm(self.pointwise[0].weight, self.pointwise[1])
            kernel, bias = kernel + pad_kernel_to(k1, self.kernel_size), bias + b1
        if self.identity is not None:
            eye = torch.zeros_like(self.dense[0].weight)
            centre = tuple(k // 2 for k in self.kernel_size)
            idx = torch.arange(self.in_channels, device=eye.device)
            eye[(idx, idx) + centre] = 1.0
            ki, bi = fold_batchnorm(eye, self.identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    def _fused(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return self.fused_kernel_and_bias()  # keep gradients flowing to the branches; no caching
        # A tensor's _version changes on every in-place write (load_state_dict copies in place), and
        # .to()/.cuda() give new storage, so this key notices any change of the branch weights.
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in self._branch_tensors())
        if self._fused_cache is None or self._fused_cache[0] != key:
            with torch.no_grad():
                self._fused_cache = (key, *self.fused_kernel_and_bias())
        return self._fused_cache[1], self._fused_cache[2]

    def forward(self, x):
        if not self.training and self.fuse_for_inference:
            kernel, bias = self._fused()
            return _conv_nd(x, kernel, bias, self.stride, self.padding)
        out = self.dense(x)
        if self.pointwise is not None:
            out = out + self.pointwise(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return out

    def train(self, mode: bool = True):
        self._fused_cache = None  # training changes the weights; drop the stale fused kernel
        return super().train(mode)


class ConvBNAct(nn.Sequential):
    """1x1 conv, BN, LeakyReLU: the ELAN's channel-mixing layers."""

    def __init__(self, conv_op, in_channels: int, out_channels: int):
        super().__init__(conv_op(in_channels, out_channels, 1, bias=False),
                         get_matching_batchnorm(conv_op)(out_channels), nn.LeakyReLU(1e-2, inplace=True))


class ELANResBlock(nn.Module):
    """ELAN aggregation of re-parameterizable convs with a residual connection.

    stem: RepConv (does the stage's downsampling) -> x0
    two 1x1 branches from x0 (a, b); b feeds two stacked RepConvs (b1, b2)
    out = act(BN(1x1(concat[a, b, b1, b2])) + x0)
    """

    def __init__(self, conv_op, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int]):
        super().__init__()
        hidden = max(1, out_channels // 2)
        norm = get_matching_batchnorm(conv_op)
        self.stem = RepConvBN(conv_op, in_channels, out_channels, kernel_size, stride)
        self.branch_a = ConvBNAct(conv_op, out_channels, hidden)
        self.branch_b = ConvBNAct(conv_op, out_channels, hidden)
        self.rep1 = RepConvBN(conv_op, hidden, hidden, kernel_size)
        self.rep2 = RepConvBN(conv_op, hidden, hidden, kernel_size)
        self.transition = nn.Sequential(conv_op(4 * hidden, out_channels, 1, bias=False), norm(out_channels))
        self.nonlin = nn.LeakyReLU(1e-2, inplace=True)

    def forward(self, x):
        x0 = self.nonlin(self.stem(x))
        a, b = self.branch_a(x0), self.branch_b(x0)
        b1 = self.nonlin(self.rep1(b))
        b2 = self.nonlin(self.rep2(b1))
        return self.nonlin(self.transition(torch.cat([a, b, b1, b2], dim=1)) + x0)


def clip_length(length: int, extent: Optional[int]) -> int:
    """Longest useful odd kernel on an axis of ``extent`` voxels: 2*extent-1 taps already see it all."""
    return length if extent is None else max(1, min(length, 2 * int(extent) - 1))


class MSCA(nn.Module):
    """SegNeXt's multi-scale conv attention, per axis: 5-depthwise, strips 7/11/21 on each attended axis,
    summed, 1x1 conv, multiplied with the input.

    ``axes`` are the spatial axes the strips run along: all of them (true 3D), or the last two (the
    paper's "3D-to-2D" reading: per-slice 2D attention). ``feature_size`` clips every kernel to the
    feature map (see :func:`clip_length`).
    """

    def __init__(self, conv_op, channels: int, axes: Sequence[int], feature_size: Optional[Sequence[int]] = None,
                 depthwise_kernel: int = MSCA_DEPTHWISE_KERNEL, strip_lengths: Sequence[int] = MSCA_STRIP_LENGTHS):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        extent = list(feature_size) if feature_size is not None else [None] * dim
        if len(extent) != dim:
            raise ValueError(f"feature_size {feature_size} must have {dim} entries")

        def kernel(length: int, along: Sequence[int]) -> Tuple[int, ...]:
            return tuple(clip_length(length, extent[a]) if a in along else 1 for a in range(dim))

        def depthwise(k):
            return conv_op(channels, channels, k, padding=[i // 2 for i in k], groups=channels)

        self.depthwise = depthwise(kernel(depthwise_kernel, axes))
        self.strips = nn.ModuleList(
            nn.Sequential(*[depthwise(kernel(length, [axis])) for axis in axes]) for length in strip_lengths)
        self.pointwise = conv_op(channels, channels, 1)

    def forward(self, x):
        attn = self.depthwise(x)
        attn = attn + sum(strip(attn) for strip in self.strips)
        return self.pointwise(attn) * x


class MSCABlock(nn.Module):
    """Norm -> (1x1, GELU, MSCA, 1x1, plus its input), residual; then Norm -> MLP (1x1, dw 3, GELU, 1x1), residual.

    The inner shortcut is SegNeXt's ``SpatialAttention`` (it adds the normalised input back after the second
    1x1 conv), the paper's "embedded residual connection"; it adds no parameters.
    """

    def __init__(self, conv_op, channels: int, axes: Sequence[int], feature_size=None, mlp_ratio: float = 2.0):
        super().__init__()
        norm = get_matching_batchnorm(conv_op)
        hidden = max(1, int(round(channels * mlp_ratio)))
        self.norm1 = norm(channels)
        self.attention = nn.Sequential(conv_op(channels, channels, 1), nn.GELU(),
                                       MSCA(conv_op, channels, axes, feature_size), conv_op(channels, channels, 1))
        self.norm2 = norm(channels)
        mlp_kernel = [3 if a in axes else 1 for a in range(convert_conv_op_to_dim(conv_op))]
        self.mlp = nn.Sequential(conv_op(channels, hidden, 1),
                                 conv_op(hidden, hidden, mlp_kernel, padding=[k // 2 for k in mlp_kernel],
                                         groups=hidden),
                                 nn.GELU(), conv_op(hidden, channels, 1))

    def forward(self, x):
        normed = self.norm1(x)
        x = x + self.attention(normed) + normed
        return x + self.mlp(self.norm2(x))


@dataclass(frozen=True)
class MSCAConfig:
    stages: Tuple[int, ...]        # encoder stages followed by an MSCABlock
    axes: str = "all"              # "all" (3D strips) or "inplane" (per-slice 2D, the paper's 3D-to-2D)
    mlp_ratio: float = 2.0

    def axes_for(self, dim: int) -> List[int]:
        if self.axes == "all":
            return list(range(dim))
        if self.axes == "inplane":
            return list(range(dim))[-2:]
        raise ValueError(f"msca_axes must be 'all' or 'inplane', got {self.axes!r}")


class ELANResEncoder(SkipEncoder):
    def __init__(self, conv_op, input_channels, features, kernel_sizes, strides, feature_sizes, msca: MSCAConfig):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        stages, in_ch = [], input_channels
        for s, (f, k, st) in enumerate(zip(features, kernel_sizes, strides)):
            layers = [ELANResBlock(conv_op, in_ch, f, k, st)]
            if s in msca.stages:
                layers.append(MSCABlock(conv_op, f, msca.axes_for(dim), feature_sizes[s], msca.mlp_ratio))
            stages.append(nn.Sequential(*layers))
            in_ch = f
        self.stages = nn.ModuleList(stages)
        self.output_channels, self.strides = list(features), strides
        self.kernel_sizes, self.conv_op = kernel_sizes, conv_op


class ELANResDecoder(DeepSupervisionDecoder):
    """Transposed conv up, concat skip, ELANResBlock; a 1x1 head per stage (heads always exist)."""

    def __init__(self, encoder: ELANResEncoder, num_classes: int, deep_supervision: bool):
        super().__init__()
        conv_op, feats = encoder.conv_op, encoder.output_channels
        transp = get_matching_convtransp(conv_op)
        self.upsample, self.stages, self.seg_layers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for s in range(len(feats) - 1, 0, -1):
            st = encoder.strides[s]
            self.upsample.append(transp(feats[s], feats[s - 1], st, st, bias=False))
            self.stages.append(ELANResBlock(conv_op, 2 * feats[s - 1], feats[s - 1], encoder.kernel_sizes[s - 1],
                                            (1,) * len(st)))
            self.seg_layers.append(conv_op(feats[s - 1], num_classes, 1))
        self.deep_supervision = deep_supervision

    def fuse(self, i: int, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.stages[i](torch.cat([skip, self.upsample[i](below)], dim=1))


@register("architecture", plans={"kwargs_builder": "elanres_kwargs_from_configuration", "checkpointed": True})
class ELANResMSCAUNet(nn.Module):
    """ELANRes-MSCA-UNet: U-Net of re-parameterized ELAN residual blocks with multi-scale conv attention."""

    # what activation checkpointing (nnunet_ext.training.checkpointing) recomputes: each block keeps its input
    # and output only (its branches, concatenation and attention maps are rebuilt in the backward pass)
    checkpoint_units = (ELANResBlock, MSCABlock)

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, *,
                 n_stages: int, features_per_stage: Sequence[int], conv_op: ConvOp = nn.Conv3d,
                 kernel_sizes=3, strides=None, patch_size: Optional[Sequence[int]] = None,
                 msca_stages: Optional[Sequence[int]] = None, msca_axes: str = "all", mlp_ratio: float = 2.0):
        super().__init__()
        conv_op, dim, features_per_stage, kernel_sizes, strides = unet_stage_arguments(
            "ELANResMSCAUNet", conv_op, n_stages, features_per_stage, kernel_sizes, strides)
        if msca_stages is None:  # every stage but the full-resolution one (the most expensive, least context)
            msca_stages = tuple(range(1, n_stages))
        bad = [s for s in msca_stages if not 0 <= s < n_stages]
        if bad:
            raise ValueError(f"msca_stages {bad} outside 0..{n_stages - 1}")
        feature_sizes: List[Optional[List[int]]] = [None] * n_stages
        if patch_size is not None:
            if len(patch_size) != dim:
                raise ValueError(f"patch_size {list(patch_size)} must have {dim} entries for {conv_op.__name__}")
            cumulative = np.cumprod(np.array(strides), axis=0)
            feature_sizes = [[max(1, int(p) // int(c)) for p, c in zip(patch_size, cum)] for cum in cumulative]
        msca = MSCAConfig(tuple(int(s) for s in msca_stages), msca_axes, mlp_ratio)
        msca.axes_for(dim)  # validates msca_axes early
        self.encoder = ELANResEncoder(conv_op, input_channels, features_per_stage, kernel_sizes, strides,
                                      feature_sizes, msca)
        self.decoder = ELANResDecoder(self.encoder, num_classes, deep_supervision)

    def forward(self, x):
        dim = convert_conv_op_to_dim(self.encoder.conv_op)
        if x.ndim != dim + 2:
            raise ValueError(f"ELANResMSCAUNet with {self.encoder.conv_op.__name__} expects (B, C, *spatial) with "
                             f"{dim} spatial axes, got shape {tuple(x.shape)}")
        return self.decoder(self.encoder(x))

    def rep_convs(self) -> List[RepConvBN]:
        return [m for m in self.modules() if isinstance(m, RepConvBN)]

    def set_fused_inference(self, enabled: bool) -> "ELANResMSCAUNet":
        """Whether eval mode runs the fused single convolutions (default) or the training branches."""
        for m in self.rep_convs():
            m.fuse_for_inference = bool(enabled)
        return self


def elanres_kwargs_from_configuration(configuration_manager, msca_axes: str = "all",
                                      max_stages: Optional[int] = None) -> dict:
    """ELANResMSCAUNet constructor kwargs (JSON-able) from an nnU-Net configuration's plans.

    Depth, widths, kernel sizes and strides are the plans'; the patch size clips the MSCA kernels.
    """
    return {**plans_stage_kwargs(configuration_manager, "ELANResMSCAUNet", max_stages),
            "patch_size": [int(p) for p in configuration_manager.patch_size],
            "msca_axes": msca_axes}
