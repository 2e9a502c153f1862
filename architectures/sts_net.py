"""STS-Net: ResNeXt50-32x4d encoder with ESCA channel attention, DeepLabV3 decoder (Sci Rep 2025, seed 003).

The encoder is torchvision's ``resnext50_32x4d`` (not re-implemented, so torchvision / timm state_dicts
load as they are); an ESCA block re-weights the channels after the stem and after each of the four
stages. The decoder is torchvision's ``DeepLabHead`` (ASPP with rates 12/24/36 + 3x3 conv + 1x1
classifier), the same layout as segmentation_models_pytorch's DeepLabV3, whose ResNeXt50 configuration
has the paper's 39.10 M parameters. Output stride 8 (the last two stages dilated, as DeepLabV3); the
logits are bilinearly upsampled to the input size.

``STSNet25D`` is the paper's 2.5D input: every slice is segmented from itself and its two neighbours
stacked as channels. It takes nnU-Net 3D patches ``(B, C, D, Y, X)`` and returns ``(B, K, D, Y, X)``,
so nnU-Net's 3D data loader and ``nnUNetv2_predict`` drive it (see docs/sts_net.md for why).
See docs/sts_net.md for every decision.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnext50_32x4d
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from nnunet_ext.registry import register

# Table 1 of the paper (SCCM-2022, 480x480 2.5D input): STS-Net's parameters and FLOPs.
PAPER_PARAMS_M = 39.10
PAPER_GFLOPS = 571.35
# The paper's configuration: three stacked slices (2.5D, like RGB) in, lesion vs background out.
PAPER_INPUT_CHANNELS = 3
PAPER_NUM_CLASSES = 2

ENCODER_CHANNELS = (64, 256, 512, 1024, 2048)  # stem, layer1..layer4 of ResNeXt50-32x4d
ATROUS_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}  # DeepLabV3's rates for its two output strides
DILATED_STAGES = {8: [False, True, True], 16: [False, False, True]}  # torchvision replace_stride_with_dilation


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """ECA's adaptive kernel: the odd number nearest above |(log2 C + beta) / gamma| (ECA-Net Eq. 12)."""
    if channels < 1:
        raise ValueError(f"ESCA needs at least one channel, got {channels}")
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class ESCA(nn.Module):
    """STS-Net's ESCA channel attention: GAP, two 1D convolutions across channels (ECA kernel), sigmoid gate.

    Paper Eq. 5-9: f1 = GAP(f); f2, f3 = the 1D convolution applied twice ("repeated twice", Eq. 6-7 give
    its length-preserving output size with stride 1 and padding (K-1)/2); w = sigmoid(f3); f_n = f * w.
    The two convolutions have their own weights and no bias or non-linearity in between (as in ECA).
    """

    def __init__(self, channels: int, gamma: float = 2.0, beta: float = 1.0, num_convs: int = 2,
                 kernel_size: Optional[int] = None):
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"ESCA needs at least one 1D convolution, got num_convs={num_convs}")
        k = eca_kernel_size(channels, gamma, beta) if kernel_size is None else int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ESCA kernel size must be odd and positive (length-preserving), got {k}")
        self.channels = channels
        self.kernel_size = k
        self.convs = nn.Sequential(*[nn.Conv1d(1, 1, k, padding=k // 2, bias=False) for _ in range(num_convs)])

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel weights w, shape (B, C)."""
        descriptor = x.flatten(2).mean(-1)  # GAP over every spatial axis: (B, C)
        return torch.sigmoid(self.convs(descriptor[:, None, :])[:, 0, :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3 or x.shape[1] != self.channels:
            raise ValueError(f"ESCA built for {self.channels} channels got input of shape {tuple(x.shape)}")
        w = self.attention(x)
        return x * w.view(*w.shape, *([1] * (x.ndim - 2)))


def read_state_dict(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """A torchvision / timm checkpoint as a flat tensor dict (unwraps ``state_dict``/``model``, strips ``module.``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"STS-Net encoder_weights file {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign files; name the file either way
        raise ValueError(f"STS-Net encoder_weights {path!r} is not a torch state_dict file ({e})") from e
    for wrapper_key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper_key), dict):
            obj = obj[wrapper_key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"STS-Net encoder_weights {path!r} holds a {type(obj).__name__}, not a state_dict "
                         f"(a dict of parameter name -> tensor)")
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in obj.items())


def adapt_stem_weight(weight: torch.Tensor, input_channels: int) -> torch.Tensor:
    """RGB stem filters for another number of input channels: the RGB mean, repeated, scaled by 3/C.

    Keeps the stem's response to an input whose channels are all equal, so pretrained statistics stay
    meaningful for one modality (C=1) or a 2.5D stack of several modalities (C=3k).
    """
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, input_channels, 1, 1) * (weight.shape[1] / input_channels)


class ResNeXtESCAEncoder(nn.Module):
    """torchvision's ResNeXt50-32x4d trunk (no pooling/fc) with an ESCA block after the stem and each stage."""

    def __init__(self, input_channels: int, output_stride: int = 8, use_esca: bool = True,
                 esca_kwargs: Optional[dict] = None):
        super().__init__()
        if output_stride not in DILATED_STAGES:
            raise ValueError(f"STS-Net output_stride must be one of {sorted(DILATED_STAGES)}, got {output_stride}")
        backbone = resnext50_32x4d(weights=None, replace_stride_with_dilation=DILATED_STAGES[output_stride])
        if input_channels != 3:
            backbone.conv1 = nn.Conv2d(input_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
        # no classifier: the state_dict is torchvision's minus fc.* (avgpool has no parameters)
        backbone.fc = nn.Identity()
        backbone.avgpool = nn.Identity()
        self.backbone = backbone
        self.input_channels = input_channels
        self.output_stride = output_stride
        make = (lambda c: ESCA(c, **(esca_kwargs or {}))) if use_esca else (lambda c: nn.Identity())
        self.attention = nn.ModuleList([make(c) for c in ENCODER_CHANNELS])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = self.attention[0](b.relu(b.bn1(b.conv1(x))))
        x = b.maxpool(x)
        for stage, attention in zip((b.layer1, b.layer2, b.layer3, b.layer4), self.attention[1:]):
            x = attention(stage(x))
        return x

    def load_backbone_weights(self, path: Union[str, os.PathLike]) -> None:
        """Load a torchvision / timm ``resnext50_32x4d`` state_dict (fc.* ignored); mismatches raise ValueError."""
        state = OrderedDict((k, v) for k, v in read_state_dict(path).items() if not k.startswith("fc."))
        stem = state.get("conv1.weight")
        if stem is not None and stem.ndim == 4 and stem.shape[1] == 3 and self.input_channels != 3:
            state["conv1.weight"] = adapt_stem_weight(stem, self.input_channels)
        expected = self.backbone.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong_shape = [f"{k}: file {tuple(state[k].shape)} vs network {tuple(v.shape)}"
                       for k, v in expected.items() if k in state and state[k].shape != v.shape]
        if missing or unexpected or wrong_shape:
            problems = []
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
                if items:
                    problems.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
            raise ValueError(f"STS-Net encoder_weights {os.fspath(path)!r} is not a ResNeXt50-32x4d state_dict "
                             f"(torchvision/timm key names expected): {'; '.join(problems)}")
        self.backbone.load_state_dict(state, strict=True)


class DeepLabV3Decoder(DeepLabHead):
    """torchvision's DeepLabV3 head (ASPP, 3x3 conv, 1x1 classifier), with nnU-Net's deep-supervision flag.

    STS-Net has a single output; with ``deep_supervision`` on, the network returns it as a one-element
    list so nnU-Net's DeepSupervisionWrapper sees as many outputs as targets.
    """

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int], deep_supervision: bool):
        super().__init__(in_channels, num_classes, tuple(atrous_rates))
        self.deep_supervision = deep_supervision


@register("architecture", plans={"kwargs_builder": "sts_net_kwargs_from_configuration", "total_stride": 8})
class STSNet(nn.Module):
    """STS-Net (Sci Rep 2025): ResNeXt50-32x4d + ESCA encoder, DeepLabV3 decoder, 2D."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 output_stride: int = 8, atrous_rates: Optional[Sequence[int]] = None, use_esca: bool = True,
                 esca_gamma: float = 2.0, esca_beta: float = 1.0, esca_num_convs: int = 2,
                 encoder_weights: Optional[str] = None, **unused):
        """
        ``output_stride`` 8 (paper / DeepLabV3 default) or 16; ``atrous_rates`` default to DeepLabV3's for
        that stride. ``esca_*``: ECA kernel rule |(log2 C + beta)/gamma|_odd and the number of stacked 1D
        convs (2 in the paper). ``encoder_weights``: path to a torchvision/timm resnext50_32x4d state_dict.
        Unknown keyword arguments raise (nnU-Net plans pass their arch_kwargs here).
        """
        super().__init__()
        if unused:
            raise ValueError(f"STS-Net got unknown arguments {sorted(unused)}")
        if input_channels < 1 or num_classes < 1:
            raise ValueError(f"STS-Net needs input_channels >= 1 and num_classes >= 1, got {input_channels}, "
                             f"{num_classes}")
        self.input_channels = input_channels
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.encoder = ResNeXtESCAEncoder(input_channels, output_stride, use_esca,
                                          {"gamma": esca_gamma, "beta": esca_beta, "num_convs": esca_num_convs})
        rates = ATROUS_RATES[output_stride] if atrous_rates is None else tuple(int(r) for r in atrous_rates)
        self.decoder = DeepLabV3Decoder(ENCODER_CHANNELS[-1], num_classes, rates, deep_supervision)
        if encoder_weights:
            self.encoder.load_backbone_weights(encoder_weights)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.input_channels:
            raise ValueError(f"STS-Net expects (batch, {self.input_channels}, Y, X), got {tuple(x.shape)}")
        if self.training and x.shape[0] < 2:
            raise ValueError("STS-Net needs a batch of at least 2 images in training mode: the ASPP image-pooling "
                             "branch normalises a 1x1 map with BatchNorm")

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        self.check_input(x)
        height, width = x.shape[-2:]
        # pad to a multiple of the output stride so the feature grid stays aligned with the input pixels
        s = self.output_stride
        padded = F.pad(x, (0, (-width) % s, 0, (-height) % s))
        logits = self.decoder(self.encoder(padded))
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        logits = logits[..., :height, :width]
        return [logits] if self.decoder.deep_supervision else logits


def fold_slices(x: torch.Tensor, context: int, replicate_edges: bool) -> torch.Tensor:
    """(B, C, D, Y, X) -> (B * D', C * (2 context + 1), Y, X): each slice with its neighbours as channels.

    Channels are modality-major: [c0(z-1), c0(z), c0(z+1), c1(z-1), ...], so one modality reads like RGB.
    ``replicate_edges``: D' = D, the first/last slice stand in for missing neighbours (the paper's rule
    at a volume's ends); otherwise D' = D - 2 context, only slices with all neighbours present.
    """
    if replicate_edges:
        x = F.pad(x, (0, 0, 0, 0, context, context), mode="replicate")
    elif x.shape[2] <= 2 * context:
        raise ValueError(f"STS-Net 2.5D without edge slices needs more than {2 * context} slices, got {x.shape[2]}")
    b, channels, _, y, w = x.shape
    stack = 2 * context + 1
    stacks = x.unfold(2, stack, 1)  # (B, C, D', Y, X, S)
    return stacks.permute(0, 2, 1, 5, 3, 4).reshape(-1, channels * stack, y, w)


@register("architecture")
class STSNet25D(STSNet):
    """STS-Net on 2.5D input: each slice segmented from itself and its neighbours stacked as channels.

    Takes nnU-Net 3D patches (B, C, D, Y, X). ``predict_edge_slices`` True (default, used by nnU-Net's
    sliding-window predictor): returns (B, K, D, Y, X), the first and last slice of the patch stacked with
    themselves repeated (the paper's rule for a volume's first and last slice). False (used in training):
    returns only the D - 2c slices whose neighbours are all inside the patch.
    The parameters are those of a 2D ``STSNet`` with ``input_channels * (2c + 1)`` inputs, same key names.
    """

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 context_slices: int = 1, **kwargs):
        if context_slices < 1:
            raise ValueError(f"STS-Net 2.5D needs context_slices >= 1 (1 = three slices), got {context_slices}")
        super().__init__(input_channels * (2 * context_slices + 1), num_classes, deep_supervision, **kwargs)
        self.slice_channels = input_channels
        self.context_slices = context_slices
        self.predict_edge_slices = True

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.slice_channels:
            raise ValueError(f"STS-Net 2.5D expects (batch, {self.slice_channels}, slices, Y, X), got {tuple(x.shape)}")
        return fold_slices(x, self.context_slices, self.predict_edge_slices)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        batch = x.shape[0]
        out = super().forward(self.fold(x))
        unfold = lambda t: t.view(batch, -1, *t.shape[1:]).transpose(1, 2)  # (B*D', K, Y, X) -> (B, K, D', Y, X)
        return [unfold(t) for t in out] if isinstance(out, list) else unfold(out)


def sts_net_kwargs_from_configuration(configuration_manager, output_stride: int = 8, use_esca: bool = True,
                                      encoder_weights: Optional[str] = None, context_slices: Optional[int] = None,
                                      **overrides) -> dict:
    """Constructor kwargs (besides channels / classes / deep supervision) for an nnU-Net configuration.

    STS-Net's layout does not depend on the plans; this checks that the configuration can run it (2D patch
    for STSNet, 3D patch for STSNet25D when ``context_slices`` is given) and returns the JSON-serialisable
    kwargs a plans file's ``arch_kwargs`` would hold.
    """
    patch = list(configuration_manager.patch_size)
    if context_slices is None and len(patch) != 2:
        raise ValueError(f"STSNet is a 2D network; configuration patch size {patch} is not 2D "
                         f"(use STSNet25D / context_slices for 3D data)")
    if context_slices is not None and len(patch) != 3:
        raise ValueError(f"STSNet25D reads 3D patches (slices, Y, X); configuration patch size {patch} is not 3D")
    if min(patch[-2:]) < output_stride:
        raise ValueError(f"STS-Net's in-plane patch {patch[-2:]} is smaller than its output stride {output_stride}")
    kwargs = {"output_stride": int(output_stride), "use_esca": bool(use_esca), "encoder_weights": encoder_weights}
    if context_slices is not None:
        kwargs["context_slices"] = int(context_slices)
    kwargs.update(overrides)
    return kwargs
