"""ES-UNet (Park et al., BMC Medical Imaging 2025) and its 3D UNet 3+ baseline, laid out by nnU-Net's plans.

Both networks share one full-scale design (UNet 3+): decoder stage ``j`` receives one path from every
encoder stage ``i <= j`` and one from every deeper decoder stage, each brought to ``C`` channels, and fuses
the ``N * C`` concatenation with one conv. They differ in

- ES-UNet: an SE channel-attention block on every encoder-to-decoder path; the same-level path is two
  convs + a 1x1 conv; the adjacent deeper decoder is upsampled by a transposed conv (kernel = stride);
  every stage, the bottleneck included, is a decoder stage; 1x1 heads, prediction = mean of the heads.
- UNet 3+: no SE, one conv per path, parameter-free interpolation for all decoder upsampling, the
  bottleneck is the deepest encoder stage itself; 3x3 heads, prediction = the finest head.

Stage count, per-stage widths, kernel sizes and (anisotropic) strides follow nnU-Net's plans, so the
networks work in 2D and 3D with nnU-Net's patch sizes. Networks return logits (nnU-Net applies
softmax / sigmoid itself). See docs/es_unet.md for every decision.
"""
from __future__ import annotations

import pydoc
from functools import partial
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

from dynamic_network_architectures.building_blocks.helper import (
    convert_conv_op_to_dim, get_matching_batchnorm, get_matching_convtransp, get_matching_pool_op)
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU, StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He

from nnunet_ext.registry import register
from nnunet_ext_architectures.blocks import SkipEncoder

SKIP_CONNECTIONS = ("base", "enc_only", "dec_only", "both")
# how ES-UNet's prediction averages its heads: their logits, or their softmax / sigmoid probabilities
HEAD_FUSIONS = ("logits", "softmax", "sigmoid")
VARIANTS = ("es_unet", "unet3plus")
ES_UNET_CLASS = "nnunet_ext_architectures.es_unet.ESUNet"
UNET3PLUS_CLASS = "nnunet_ext_architectures.es_unet.UNet3Plus"
CLASS_BY_VARIANT = {"es_unet": ES_UNET_CLASS, "unet3plus": UNET3PLUS_CLASS}

IntOrSeq = Union[int, Sequence[int]]


# ----------------------------------------------------------------------------------------------- config
@dataclass
class FullScaleUNetConfig:
    """Topology of a full-scale (UNet 3+ style) network; one entry per stage, as in nnU-Net's plans."""

    n_stages: int
    features_per_stage: List[int]
    conv_op: Type[_ConvNd]
    kernel_sizes: List[List[int]]
    strides: List[List[int]]
    n_conv_per_stage: List[int]
    skip_channels: int  # the paper's C: channels of every path into a decoder stage
    conv_bias: bool = True
    norm_op: Optional[Type[nn.Module]] = None  # None -> BatchNorm matching conv_op (the paper's choice)
    norm_op_kwargs: dict = field(default_factory=lambda: {"eps": 1e-5, "affine": True})
    skip_connections: str = "both"
    # ES-UNet only
    se_reduction: float = 0.25
    wide_same_level_stages: int = 1
    head_fusion: str = "logits"

    @classmethod
    def build(cls, n_stages: int, features_per_stage: IntOrSeq, conv_op: Type[_ConvNd], kernel_sizes: IntOrSeq,
              strides: IntOrSeq, n_conv_per_stage: IntOrSeq = 2, skip_channels: Optional[int] = None,
              **kwargs) -> "FullScaleUNetConfig":
        """Broadcast scalars to one entry per stage (and per axis) and check the whole topology."""
        if isinstance(conv_op, str):
            located = pydoc.locate(conv_op)
            if located is None:
                raise ValueError(f"conv_op {conv_op!r} cannot be imported")
            conv_op = located
        if conv_op not in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
            raise ValueError(f"conv_op must be nn.Conv2d or nn.Conv3d (or nn.Conv1d), got {conv_op!r}")
        if not isinstance(n_stages, int) or n_stages < 2:
            raise ValueError(f"a full-scale U-Net needs n_stages >= 2 (one downsampling), got {n_stages!r}")
        dim = convert_conv_op_to_dim(conv_op)

        def per_stage(value, name):
            values = [value] * n_stages if isinstance(value, int) else list(value)
            if len(values) != n_stages:
                raise ValueError(f"{name} has {len(values)} entries but n_stages is {n_stages}")
            return values

        def per_axis(values, name):
            out = []
            for s, v in enumerate(values):
                v = [v] * dim if isinstance(v, int) else [int(a) for a in v]
                if len(v) != dim or min(v) < 1:
                    raise ValueError(f"{name}[{s}] = {v} must be {dim} positive integers for {conv_op.__name__}")
                out.append(v)
            return out

        features = [int(f) for f in per_stage(features_per_stage, "features_per_stage")]
        if min(features) < 1:
            raise ValueError(f"features_per_stage must be positive, got {features}")
        kernels = per_axis(per_stage(kernel_sizes, "kernel_sizes"), "kernel_sizes")
        if any(k % 2 == 0 for ks in kernels for k in ks):
            raise ValueError(f"kernel_sizes must be odd (same padding), got {kernels}")
        stride_list = per_axis(per_stage(strides, "strides"), "strides")
        convs = [int(c) for c in per_stage(n_conv_per_stage, "n_conv_per_stage")]
        if min(convs) < 1:
            raise ValueError(f"n_conv_per_stage must be >= 1, got {convs}")
        skip_channels = features[0] if skip_channels is None else int(skip_channels)
        if skip_channels < 1:
            raise ValueError(f"skip_channels (the paper's C) must be >= 1, got {skip_channels}")
        config = cls(n_stages, features, conv_op, kernels, stride_list, convs, skip_channels, **kwargs)
        if config.skip_connections not in SKIP_CONNECTIONS:
            raise ValueError(f"skip_connections must be one of {SKIP_CONNECTIONS}, got {config.skip_connections!r}")
        if not 0 < config.se_reduction <= 1:
            raise ValueError(f"se_reduction is the SE hidden width as a fraction of the channels, in (0, 1]; "
                             f"got {config.se_reduction}")
        if not 0 <= config.wide_same_level_stages <= n_stages:
            raise ValueError(f"wide_same_level_stages must be in [0, n_stages={n_stages}], "
                             f"got {config.wide_same_level_stages}")
        if config.head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {config.head_fusion!r}")
        if isinstance(config.norm_op, str):
            config.norm_op = pydoc.locate(config.norm_op)
        if config.norm_op is None:
            config.norm_op = get_matching_batchnorm(conv_op)
        return config

    @property
    def dim(self) -> int:
        return convert_conv_op_to_dim(self.conv_op)

    @property
    def total_stride(self) -> List[int]:
        # plain Python ints: torch.compile traces numpy in forward() (check_input) into tensors, breaking its graph
        total = [1] * len(self.strides[0])
        for stride in self.strides:
            total = [t * int(s) for t, s in zip(total, stride)]
        return total

    def stride_between(self, shallow: int, deep: int) -> List[int]:
        """Per-axis downsampling factor from stage ``shallow`` to stage ``deep`` (nnU-Net strides may be
        anisotropic)."""
        return [int(v) for v in np.prod(np.array(self.strides[shallow + 1:deep + 1]), axis=0)] \
            if deep > shallow else [1] * self.dim

    @property
    def decoder_channels(self) -> int:
        """The paper's N*C: every decoder stage outputs as many channels as a full set of paths."""
        return self.n_stages * self.skip_channels

    @property
    def uses_encoder_skips(self) -> bool:
        return self.skip_connections in ("enc_only", "both")

    @property
    def uses_far_decoder_skips(self) -> bool:
        return self.skip_connections in ("dec_only", "both")


# ----------------------------------------------------------------------------------------------- blocks
class ChannelSE(nn.Module):
    """Squeeze-and-excitation over all spatial axes; hidden width = ``reduction`` x channels (paper: 0.25).

    Written here because dynamic_network_architectures' SqueezeExcite averages only axes (2, 3), which in
    3D leaves the last spatial axis un-squeezed.
    """

    def __init__(self, channels: int, conv_op: Type[_ConvNd], reduction: float = 0.25):
        super().__init__()
        hidden = max(1, int(round(channels * reduction)))
        self.squeeze = conv_op(channels, hidden, kernel_size=1, bias=True)
        self.excite = conv_op(hidden, channels, kernel_size=1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample, per-channel weights in (0, 1), squeezed from all of ``x``."""
        pooled = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
        return torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResizeTo(nn.Module):
    """Parameter-free (bi/tri)linear resize to the target decoder stage's size (handles anisotropic factors)."""

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.ndim - 2]
        return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class SkipPath(nn.Module):
    """One path into a decoder stage: optional SE, a resampling op, then convs; ends at C channels.

    Under activation checkpointing (``set_activation_checkpointing``) a path keeps only its output for the
    backward pass. A decoder path, which upsamples a deeper stage's N*C channels to this stage's size before
    its first conv, is evaluated in slices of C input channels, each checkpointed again: the conv is the sum
    of per-slice convs and upsampling acts per channel (a transposed conv per output-channel slice), so the
    numbers are those of the plain path (up to summation order) while at most one C-channel slice of the
    upsampled tensor exists at a time. The price is a third evaluation of those slices.
    """

    activation_checkpointing: bool = False

    def __init__(self, convs: nn.Module, attention: Optional[nn.Module] = None, pool: Optional[nn.Module] = None,
                 upsample: Optional[nn.Module] = None):
        super().__init__()
        self.attention = attention if attention is not None else nn.Identity()
        self.pool = pool if pool is not None else nn.Identity()
        self.upsample = upsample
        self.resize = ResizeTo()
        self.convs = convs

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.activation_checkpointing = bool(enabled)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if not (self.activation_checkpointing and self.training and torch.is_grad_enabled()):
            return self._forward(x, size)
        from nnunet_ext.training.checkpointing import checkpoint_call

        forward = partial(self._sliced_forward, checkpoint_call=checkpoint_call) if self._sliceable else self._forward
        # the whole path keeps only its output; inside it, each slice is checkpointed again, so recomputing the
        # path in the backward pass never holds more than one slice of the upsampled tensor
        return checkpoint_call(forward, x, tuple(size), norms_of=self)

    def _forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if isinstance(self.attention, ChannelSE):
            # SE before pooling (the paper's order), evaluated as pool(x) * gate(x): max-pooling commutes with a
            # positive per-channel scale, so this is the same number without storing the full-size product.
            x = self.pool(x) * self.attention.gate(x)
        else:
            x = self.pool(self.attention(x))
        if self.upsample is not None:
            x = self.upsample(x)
        return self.convs(self.resize(x, size))

    @property
    def _sliceable(self) -> bool:
        block = self.convs
        return (isinstance(self.attention, nn.Identity) and isinstance(self.pool, nn.Identity)
                and isinstance(block, ConvDropoutNormReLU) and not hasattr(block, "dropout")
                and block.conv.groups == 1 and block.conv.in_channels > block.conv.out_channels)

    def _sliced_forward(self, x: torch.Tensor, size: Tuple[int, ...], checkpoint_call) -> torch.Tensor:
        block = self.convs
        width, channels = block.conv.out_channels, block.conv.in_channels
        y = None
        for start in range(0, channels, width):
            term = checkpoint_call(self._slice, start, min(start + width, channels), x, size, norms_of=self)
            y = term if y is None else y + term
        if block.conv.bias is not None:
            y = y + block.conv.bias.to(y.dtype).view(1, -1, *([1] * (y.ndim - 2)))
        for name in ("norm", "nonlin"):
            if hasattr(block, name):
                y = getattr(block, name)(y)
        return y

    def _slice(self, start: int, stop: int, x: torch.Tensor, size: Tuple[int, ...]) -> torch.Tensor:
        """The first conv's contribution from input channels [start, stop) (bias excluded)."""
        up = self.upsample
        if up is None:
            h = x[:, start:stop]
        else:
            bias = None if up.bias is None else up.bias[start:stop]
            h = _CONV_TRANSPOSE[x.ndim - 2](x, up.weight[:, start:stop], bias, up.stride, up.padding,
                                            up.output_padding, 1, up.dilation)
        conv = self.convs.conv
        return conv._conv_forward(self.resize(h, size), conv.weight[:, start:stop], None)


class ConcatFuse(ConvDropoutNormReLU):
    """The fusion conv of a decoder stage (conv, norm, ReLU over the concatenated paths), taking the paths as a list.

    Under activation checkpointing it computes its output channels in groups of ``group_width``, each group
    checkpointed on its own: the conv of a group is the sum of per-path convs with the matching weight
    slices (no concatenated copy), and instance / batch norm and ReLU act per channel, so the numbers are
    those of the plain block (up to summation order) while the backward pass holds one group's
    intermediates at a time instead of all N*C channels'.
    """

    group_width: Optional[int] = None
    activation_checkpointing: bool = False

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.activation_checkpointing = bool(enabled)

    @property
    def groupable(self) -> bool:
        norm = getattr(self, "norm", None)
        return (self.group_width is not None and not hasattr(self, "dropout")
                and (norm is None or isinstance(norm, (nn.modules.instancenorm._InstanceNorm,
                                                       nn.modules.batchnorm._BatchNorm))))

    def forward(self, parts: List[torch.Tensor], head: Optional[_ConvNd] = None) -> torch.Tensor:
        """Fused output of the paths, or with ``head`` (a conv) only ``head(fused output)``."""
        if not (self.activation_checkpointing and self.training and torch.is_grad_enabled() and self.groupable):
            out = super().forward(torch.cat(parts, dim=1))
            return out if head is None else head(out)
        from nnunet_ext.training.checkpointing import checkpoint_call

        norm = getattr(self, "norm", None)
        if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.track_running_stats:
            norm.num_batches_tracked.add_(1)  # once per forward, as nn.BatchNorm does
        starts = range(0, self.output_channels, self.group_width)
        if head is None:
            return torch.cat([checkpoint_call(self._group, start, *parts, norms_of=self) for start in starts], dim=1)
        # a conv head is linear in its input channels: the sum of its per-group parts, the fused map never whole
        out = None
        for start in starts:
            term = checkpoint_call(self._group_head, head, start, *parts, norms_of=self)
            out = term if out is None else out + term
        return out if head.bias is None else out + head.bias.to(out.dtype).view(1, -1, *([1] * (out.ndim - 2)))

    def _group_head(self, head: _ConvNd, start: int, *parts: torch.Tensor) -> torch.Tensor:
        stop = min(start + self.group_width, self.output_channels)
        return head._conv_forward(self._group(start, *parts), head.weight[:, start:stop], None)

    def _group(self, start: int, *parts: torch.Tensor) -> torch.Tensor:
        stop = min(start + self.group_width, self.output_channels)
        weight = self.conv.weight[start:stop]
        y, offset = None, 0
        for part in parts:
            term = self.conv._conv_forward(part, weight[:, offset:offset + part.shape[1]], None)
            offset += part.shape[1]
            y = term if y is None else y + term
        if self.conv.bias is not None:
            y = y + self.conv.bias[start:stop].to(y.dtype).view(1, -1, *([1] * (y.ndim - 2)))
        norm = getattr(self, "norm", None)
        if norm is not None:
            y = self._norm(norm, y, start, stop)
        nonlin = getattr(self, "nonlin", None)
        return nonlin(y) if nonlin is not None else y

    def _norm(self, norm: nn.Module, y: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        def part(t):
            return None if t is None else t[start:stop]

        track = norm.track_running_stats
        if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
            return F.instance_norm(y, part(norm.running_mean), part(norm.running_var), part(norm.weight),
                                   part(norm.bias), self.training or not track, norm.momentum or 0.0, norm.eps)
        if track and norm.momentum is None:  # cumulative average (BatchNorm with momentum=None)
            factor = 1.0 / float(norm.num_batches_tracked)
        else:
            factor = norm.momentum or 0.0
        running = self.training and track
        return F.batch_norm(y, part(norm.running_mean), part(norm.running_var), part(norm.weight), part(norm.bias),
                            self.training or not track, factor if running else 0.0, norm.eps)


class FullScaleDecoderStage(nn.Module):
    """Decoder stage j: concatenates its paths (encoder i <= j, deeper decoders) and fuses them with one conv."""

    def __init__(self, level: int, encoder_paths: Dict[int, SkipPath], decoder_paths: Dict[int, SkipPath],
                 fuse: nn.Module):
        super().__init__()
        self.level = level
        self.encoder_paths = nn.ModuleDict({str(i): p for i, p in sorted(encoder_paths.items())})
        self.decoder_paths = nn.ModuleDict({str(i): p for i, p in sorted(decoder_paths.items())})
        self.fuse = fuse

    def forward(self, skips: List[torch.Tensor], decoded: Dict[int, torch.Tensor],
                head: Optional[nn.Module] = None) -> torch.Tensor:
        """The stage's output, or with ``head`` only the head's output of it (see ConcatFuse)."""
        size = skips[self.level].shape[2:]
        parts = [p(skips[int(i)], size) for i, p in self.encoder_paths.items()]
        parts += [p(decoded[int(i)], size) for i, p in self.decoder_paths.items()]
        return self.fuse(parts, head)


class FullScaleEncoder(SkipEncoder):
    """nnU-Net-laid-out encoder: max-pool (kernel = stride) before every stage with a stride > 1, then convs."""

    def __init__(self, config: FullScaleUNetConfig, input_channels: int):
        super().__init__()
        pool_op = get_matching_pool_op(config.conv_op, pool_type="max")
        stages = []
        channels = input_channels
        for s in range(config.n_stages):
            pool = pool_op(kernel_size=config.strides[s], stride=config.strides[s]) \
                if any(v > 1 for v in config.strides[s]) else nn.Identity()
            convs = StackedConvBlocks(config.n_conv_per_stage[s], config.conv_op, channels,
                                      config.features_per_stage[s], config.kernel_sizes[s], 1, config.conv_bias,
                                      config.norm_op, config.norm_op_kwargs, None, None, nn.ReLU, {"inplace": True})
            stages.append(nn.Sequential(pool, convs))
            channels = config.features_per_stage[s]
        self.stages = nn.ModuleList(stages)


class FullScaleDecoder(nn.Module):
    """Full-scale decoder with one head per level; ``deep_supervision`` picks list-of-outputs vs prediction."""

    def __init__(self, config: FullScaleUNetConfig, num_classes: int, variant: str, deep_supervision: bool):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.config = config
        self.variant = variant
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        n = config.n_stages
        # UNet 3+: the deepest encoder stage *is* the deepest decoder stage (no extra block there).
        self.decoder_levels = list(range(n)) if variant == "es_unet" else list(range(n - 1))
        self.stages = nn.ModuleDict({str(j): self._build_stage(j) for j in self.decoder_levels})
        self.heads = nn.ModuleList([self._build_head(j) for j in range(n)])

    # ---- construction
    def _conv(self, cin: int, cout: int, level: int, kernel: Optional[List[int]] = None) -> ConvDropoutNormReLU:
        c = self.config
        return ConvDropoutNormReLU(c.conv_op, cin, cout, c.kernel_sizes[level] if kernel is None else kernel, 1,
                                   c.conv_bias, c.norm_op, c.norm_op_kwargs, None, None, nn.ReLU, {"inplace": True})

    def output_channels(self, level: int) -> int:
        """Channels of decoder level ``level`` (UNet 3+'s bottleneck is the encoder's deepest stage)."""
        if level in self.decoder_levels:
            return self.config.decoder_channels
        return self.config.features_per_stage[level]

    def _build_stage(self, j: int) -> FullScaleDecoderStage:
        c, es = self.config, self.variant == "es_unet"
        cc = c.skip_channels
        pool_op = get_matching_pool_op(c.conv_op, pool_type="max")
        encoder_paths = {}
        for i in range(j + 1):
            if i < j and not c.uses_encoder_skips:
                continue
            ce = c.features_per_stage[i]
            attention = ChannelSE(ce, c.conv_op, c.se_reduction) if es else None
            if i < j:
                factor = c.stride_between(i, j)
                pool = pool_op(kernel_size=factor, stride=factor)
                encoder_paths[i] = SkipPath(self._conv(ce, cc, j), attention, pool)
            elif es:
                mid = ce if j >= c.n_stages - c.wide_same_level_stages else cc
                ones = [1] * c.dim
                encoder_paths[i] = SkipPath(nn.Sequential(self._conv(ce, mid, j), self._conv(mid, cc, j),
                                                          self._conv(cc, cc, j, ones)), attention)
            else:
                encoder_paths[i] = SkipPath(self._conv(ce, cc, j))
        decoder_paths = {}
        for i in range(j + 1, c.n_stages):
            if i > j + 1 and not c.uses_far_decoder_skips:
                continue
            src = self.output_channels(i)
            if es and i == j + 1:
                transp = get_matching_convtransp(c.conv_op)
                up = transp(src, src, kernel_size=c.strides[i], stride=c.strides[i], bias=c.conv_bias)
                decoder_paths[i] = SkipPath(self._conv(src, cc, j), upsample=up)
            else:
                decoder_paths[i] = SkipPath(self._conv(src, cc, j))
        n_paths = len(encoder_paths) + len(decoder_paths)
        fuse = ConcatFuse(c.conv_op, n_paths * cc, c.decoder_channels, c.kernel_sizes[j], 1, c.conv_bias, c.norm_op,
                          c.norm_op_kwargs, None, None, nn.ReLU, {"inplace": True})
        fuse.group_width = cc
        return FullScaleDecoderStage(j, encoder_paths, decoder_paths, fuse)

    def _build_head(self, j: int) -> nn.Module:
        cin = self.output_channels(j)
        kernel = [1] * self.config.dim if self.variant == "es_unet" else self.config.kernel_sizes[j]
        return self.config.conv_op(cin, self.num_classes, kernel_size=kernel,
                                   padding=[(k - 1) // 2 for k in kernel], bias=True)

    # ---- forward
    def forward(self, skips: List[torch.Tensor], input_size: Sequence[int]):
        decoded: Dict[int, torch.Tensor] = {}
        for j in range(self.config.n_stages - 1, 0, -1):
            decoded[j] = self.stages[str(j)](skips, decoded) if j in self.decoder_levels else skips[j]
        # the finest stage feeds only its head: asking the stage for the head's output lets it skip storing the
        # N*C-channel full-resolution map under activation checkpointing
        finest = self.stages["0"](skips, decoded, head=self.heads[0])
        if self.variant == "unet3plus" and not self.deep_supervision:
            return finest  # the finest head is the prediction; the others only supervise
        resize = ResizeTo()
        heads = [finest] + [resize(self.heads[j](decoded[j]), input_size) for j in range(1, self.config.n_stages)]
        if self.variant == "es_unet":
            prediction = fuse_heads(heads, self.config.head_fusion)
            return [prediction] + heads if self.deep_supervision else prediction
        return heads


def fuse_heads(heads: List[torch.Tensor], fusion: str = "logits") -> torch.Tensor:
    """ES-UNet's prediction: the equally weighted mean of its heads, returned as logits.

    ``"logits"`` averages the logits. ``"softmax"`` / ``"sigmoid"`` average the heads' probabilities (the
    paper's wording) and return the log of that mean (softmax) or its logit (sigmoid), so nnU-Net's own
    softmax / sigmoid of the output gives back exactly the mean probability. Computed with logsumexp so
    confident heads do not underflow.
    """
    stacked = torch.stack(heads, dim=0)
    if fusion == "logits":
        return stacked.mean(dim=0)
    log_k = float(np.log(len(heads)))
    if fusion == "softmax":
        return torch.logsumexp(F.log_softmax(stacked, dim=2), dim=0) - log_k
    if fusion == "sigmoid":
        log_p = torch.logsumexp(F.logsigmoid(stacked), dim=0) - log_k
        log_not_p = torch.logsumexp(F.logsigmoid(-stacked), dim=0) - log_k
        return log_p - log_not_p
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {fusion!r}")


class _FullScaleUNet(nn.Module):
    variant = "es_unet"
    # activation checkpointing (nnunet_ext.training.checkpointing) needs no wrapped modules here: every path
    # into a decoder stage (SkipPath) and every fusion conv (ConcatFuse) checkpoints itself in C-channel slices
    checkpoint_units = ()

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, *,
                 n_stages: int, features_per_stage: IntOrSeq, conv_op: Type[_ConvNd], kernel_sizes: IntOrSeq,
                 strides: IntOrSeq, n_conv_per_stage: IntOrSeq = 2, skip_channels: Optional[int] = None,
                 conv_bias: bool = True, norm_op: Optional[Type[nn.Module]] = None,
                 norm_op_kwargs: Optional[dict] = None, skip_connections: str = "both", **variant_kwargs):
        super().__init__()
        if input_channels < 1 or num_classes < 1:
            raise ValueError(f"input_channels and num_classes must be >= 1, got {input_channels}, {num_classes}")
        if self.variant == "unet3plus" and variant_kwargs:
            raise ValueError(f"UNet3Plus has no SE / same-level conv options; unexpected {sorted(variant_kwargs)}")
        extra = {} if norm_op_kwargs is None else {"norm_op_kwargs": dict(norm_op_kwargs)}
        self.config = FullScaleUNetConfig.build(n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                                                n_conv_per_stage, skip_channels, conv_bias=conv_bias,
                                                norm_op=norm_op, skip_connections=skip_connections,
                                                **extra, **variant_kwargs)
        self.input_channels = input_channels
        self.num_classes = num_classes
        self.encoder = FullScaleEncoder(self.config, input_channels)
        self.decoder = FullScaleDecoder(self.config, num_classes, self.variant, deep_supervision)

    @property
    def num_outputs(self) -> int:
        """Outputs with deep supervision on (all at input resolution)."""
        return self.config.n_stages + (1 if self.variant == "es_unet" else 0)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.config.dim + 2:
            raise ValueError(f"{type(self).__name__} built with {self.config.conv_op.__name__} expects input "
                             f"(batch, channels, {self.config.dim} spatial axes), got shape {tuple(x.shape)}")
        if x.shape[1] != self.input_channels:
            raise ValueError(f"expected {self.input_channels} input channels, got {x.shape[1]}")
        bad = [(s, t) for s, t in zip(x.shape[2:], self.config.total_stride) if s % t]
        if bad:
            raise ValueError(f"spatial size {tuple(x.shape[2:])} is not divisible by the total stride "
                             f"{tuple(self.config.total_stride)}")

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        return self.decoder(self.encoder(x), x.shape[2:])

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's He initialisation (get_network_from_plans applies it)."""
        InitWeights_He(1e-2)(module)


@register("architecture", plans={"kwargs_builder": "es_unet_kwargs_from_configuration",
                               "builder_kwargs": {"variant": "es_unet"}, "checkpointed": True})
class ESUNet(_FullScaleUNet):
    """ES-UNet: UNet 3+ full-scale skips with SE on every encoder-to-decoder path, transposed-conv decoder, mean of
    full-scale heads."""

    variant = "es_unet"

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, *,
                 se_reduction: float = 0.25, wide_same_level_stages: int = 1, head_fusion: str = "logits",
                 **kwargs):
        super().__init__(input_channels, num_classes, deep_supervision, se_reduction=se_reduction,
                         wide_same_level_stages=wide_same_level_stages, head_fusion=head_fusion, **kwargs)


@register("architecture", plans={"kwargs_builder": "es_unet_kwargs_from_configuration",
                               "builder_kwargs": {"variant": "unet3plus"}, "checkpointed": True})
class UNet3Plus(_FullScaleUNet):
    """3D UNet 3+ baseline of the ES-UNet paper: full-scale skips, interpolation-only decoder, no attention."""

    variant = "unet3plus"


# ----------------------------------------------------------------------------------------------- presets
PAPER_ENCODER_FEATURES = (32, 64, 128, 256)  # C_e^(4) = 8 C_e^(1) (paper); 32 as nnU-Net's base width
PAPER_SKIP_CHANNELS = 32  # the paper's C


def paper_preset_kwargs(variant: str = "es_unet", conv_op: Type[_ConvNd] = nn.Conv3d,
                        skip_connections: str = "both") -> dict:
    """The paper's 4-level network (HECKTOR: 2 input channels, 144^3, stride 2 per level, 3x3x3 convs)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    dim = convert_conv_op_to_dim(conv_op)
    kwargs = dict(n_stages=4, features_per_stage=list(PAPER_ENCODER_FEATURES), conv_op=conv_op,
                  kernel_sizes=[[3] * dim] * 4, strides=[[1] * dim] + [[2] * dim] * 3, n_conv_per_stage=2,
                  skip_channels=PAPER_SKIP_CHANNELS, conv_bias=True, norm_op=None,
                  skip_connections=skip_connections)
    if variant == "es_unet":
        kwargs.update(se_reduction=0.25, wide_same_level_stages=1)
    return kwargs


def build_paper_network(variant: str = "es_unet", input_channels: int = 2, num_classes: int = 1,
                        deep_supervision: bool = False, skip_connections: str = "both") -> _FullScaleUNet:
    """ES-UNet / 3D UNet 3+ as in the paper's Table 9 (HECKTOR: PET + CT in, one sigmoid output)."""
    cls = ESUNet if variant == "es_unet" else UNet3Plus
    return cls(input_channels, num_classes, deep_supervision, **paper_preset_kwargs(variant, nn.Conv3d,
                                                                                     skip_connections))


# ----------------------------------------------------------------------------------------------- nnU-Net plans
def _dotted(obj) -> Optional[str]:
    return None if obj is None else f"{obj.__module__}.{obj.__qualname__}"


def es_unet_kwargs_from_configuration(configuration_manager, variant: str = "es_unet",
                                      skip_connections: str = "both", max_stages: Optional[int] = None,
                                      head_fusion: str = "logits") -> dict:
    """Plans ``architecture`` entry for ES-UNet / UNet 3+ on the stage layout of an nnU-Net configuration.

    Returns ``{"network_class_name", "arch_kwargs", "_kw_requires_import"}`` (JSON-serialisable, the layout
    of nnU-Net's plans). Stages, widths, kernel sizes and strides come from the configuration's
    architecture (PlainConvUNet / ResidualEncoderUNet kwargs); C = the first stage's width; the norm op is
    the plan's (nnU-Net chose it for its batch size); encoder stages keep their conv count, residual
    encoders map to the paper's two convs per stage. ``max_stages`` keeps only the first (finest) stages,
    e.g. 4 for the paper's N = 4 levels; the plans' patch then only needs to divide by the shorter
    network's total stride.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if skip_connections not in SKIP_CONNECTIONS:
        raise ValueError(f"skip_connections must be one of {SKIP_CONNECTIONS}, got {skip_connections!r}")
    source = dict(configuration_manager.network_arch_init_kwargs)
    missing = [k for k in ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides") if k not in source]
    if missing:
        raise ValueError(f"configuration architecture {configuration_manager.network_arch_class_name!r} lacks "
                         f"{missing}; cannot derive a stage layout for {variant}")
    conv_op = source["conv_op"]
    conv_op_name = conv_op if isinstance(conv_op, str) else _dotted(conv_op)
    norm_op = source.get("norm_op")
    norm_op_name = norm_op if (norm_op is None or isinstance(norm_op, str)) else _dotted(norm_op)
    n_conv = source.get("n_conv_per_stage", 2)
    n_stages = int(source["n_stages"])
    if max_stages is not None:
        if int(max_stages) < 2:
            raise ValueError(f"max_stages must be >= 2 (a U-Net needs one downsampling), got {max_stages}")
        n_stages = min(n_stages, int(max_stages))
    kwargs = {
        "n_stages": n_stages,
        "features_per_stage": [int(f) for f in np.atleast_1d(source["features_per_stage"])][:n_stages],
        "conv_op": conv_op_name,
        "kernel_sizes": [[int(k) for k in np.atleast_1d(ks)] for ks in source["kernel_sizes"]][:n_stages],
        "strides": [[int(s) for s in np.atleast_1d(st)] for st in source["strides"]][:n_stages],
        "n_conv_per_stage": n_conv if isinstance(n_conv, int) else [int(c) for c in np.atleast_1d(n_conv)][:n_stages],
        "skip_channels": None,
        "conv_bias": bool(source.get("conv_bias", True)),
        "norm_op": norm_op_name,
        "norm_op_kwargs": dict(source.get("norm_op_kwargs") or {"eps": 1e-5, "affine": True}),
        "skip_connections": skip_connections,
    }
    if variant == "es_unet":
        kwargs.update(se_reduction=0.25, wide_same_level_stages=1, head_fusion=head_fusion)
    elif head_fusion != "logits":
        raise ValueError(f"UNet 3+ predicts with its finest head; head_fusion={head_fusion!r} applies to ES-UNet only")
    # validate now (clear errors at planning time, not at the first training step)
    config = FullScaleUNetConfig.build(**{k: v for k, v in kwargs.items()
                                          if k not in ("conv_bias", "norm_op_kwargs")})
    kwargs["skip_channels"] = config.skip_channels
    patch = list(configuration_manager.patch_size)
    if len(patch) != config.dim:
        raise ValueError(f"patch size {patch} has {len(patch)} axes but conv_op {conv_op_name} is {config.dim}D")
    bad = [(p, t) for p, t in zip(patch, config.total_stride) if p % t]
    if bad:
        raise ValueError(f"patch size {patch} is not divisible by the total stride {config.total_stride} of the "
                         f"configuration's {config.n_stages} stages")
    return {"network_class_name": CLASS_BY_VARIANT[variant], "arch_kwargs": kwargs,
            "_kw_requires_import": ["conv_op", "norm_op"]}
