"""Parameter and FLOP counts of a network, for the cost tables in the docs and the benchmarks.

FLOPs come from torch's own counter (``torch.utils.flop_counter.FlopCounterMode``), which counts a
multiply-add as 2 FLOPs and covers matmul / convolution / transposed convolution (not norms, pooling,
activations or interpolation). Many papers (thop, ptflops) report multiply-adds under the name "FLOPs";
``CostReport.macs`` gives that figure.

By default the network and its input live on the ``meta`` device: shapes propagate, nothing is computed,
so a 144^3 volume costs milliseconds on a laptop CPU instead of minutes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class CostReport:
    params: int
    flops: int  # torch's count: 2 per multiply-add

    @property
    def macs(self) -> int:
        return self.flops // 2


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int], device: str | None = None) -> int:
    """FLOPs of one forward pass (eval mode, no grad) on a zero tensor of ``input_shape`` (batch included).

    ``device`` defaults to where the model's parameters live (a model built on 'meta' costs nothing)."""
    if device is None:
        device = next((p.device.type for p in model.parameters()), "cpu")
    if len(input_shape) < 3:
        raise ValueError(f"input_shape must be (batch, channels, *spatial), got {tuple(input_shape)}")
    if any(p.device.type != torch.device(device).type for p in model.parameters()):
        raise ValueError(f"the model's parameters are not on {device!r}; count on the device the model lives on")
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(tuple(int(s) for s in input_shape), device=device)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def measure(build: Callable[[], nn.Module], input_shape: Sequence[int], device: str = "meta") -> CostReport:
    """Build the model on ``device`` (meta: no memory, no compute) and count its parameters and FLOPs."""
    with torch.device(device):
        model = build()
    return CostReport(count_parameters(model), count_flops(model, input_shape, device))


def conv_flops(in_channels: int, out_channels: int, kernel_size: Sequence[int], output_size: Sequence[int],
               groups: int = 1, transposed_input_size: Optional[Sequence[int]] = None) -> int:
    """Hand formula: 2 * (C_in / groups) * C_out * prod(kernel) * output voxels (bias not counted, as torch).

    For a transposed conv the sum runs over the *input* voxels instead (``transposed_input_size``).
    """
    voxels = 1
    for s in (transposed_input_size if transposed_input_size is not None else output_size):
        voxels *= int(s)
    k = 1
    for s in kernel_size:
        k *= int(s)
    return 2 * (in_channels // groups) * out_channels * k * voxels
