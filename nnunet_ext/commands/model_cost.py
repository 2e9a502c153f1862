"""`nnunet-ext cost`: parameters and FLOPs of the ES-UNet paper presets next to the paper's Table 9."""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional

# Table 9 of the ES-UNet paper (HECKTOR, 2 x 144^3 input): params in millions, "FLOPs" in G.
PAPER_TABLE9 = {
    "es_unet": (9.01, 3020.38),
    "unet3plus": (6.14, 3286.40),
    "unet3d": (6.42, 794.57),
}


class CostRow(NamedTuple):
    name: str
    params: int
    macs: int
    flops: int
    paper_params_m: Optional[float]
    paper_flops_g: Optional[float]


def _plain_unet_reference(input_channels: int, num_classes: int):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch import nn
    return PlainConvUNet(input_channels=input_channels, n_stages=4, features_per_stage=[32, 64, 128, 256],
                         conv_op=nn.Conv3d, kernel_sizes=3, strides=[1, 2, 2, 2], n_conv_per_stage=2,
                         num_classes=num_classes, n_conv_per_stage_decoder=2, conv_bias=True,
                         norm_op=nn.BatchNorm3d, nonlin=nn.ReLU)


def paper_cost_rows(input_size: int = 144, input_channels: int = 2, num_classes: int = 1,
                    device: str = "meta", readings: bool = False) -> List[CostRow]:
    """Measure the paper presets (and an nnU-Net PlainConvUNet stand-in for the 3D UNet row)."""
    from nnunet_ext.network_cost import measure
    from nnunet_ext_architectures.es_unet import build_paper_network

    if input_size < 8 or input_size % 8:
        raise ValueError(f"input size must be a positive multiple of 8 (three stride-2 poolings), got {input_size}")
    shape = (1, input_channels, input_size, input_size, input_size)
    builders: List[tuple[str, str, Callable]] = [
        ("ES-UNet (paper preset)", "es_unet", lambda: build_paper_network("es_unet", input_channels, num_classes)),
        ("3D UNet 3+ (paper preset)", "unet3plus",
         lambda: build_paper_network("unet3plus", input_channels, num_classes)),
        ("3D UNet ~ nnU-Net PlainConvUNet 32-256 (stand-in)", "unet3d",
         lambda: _plain_unet_reference(input_channels, num_classes)),
    ]
    if readings:  # how the same-level-path reading moves ES-UNet's count (see docs/es_unet.md)
        from nnunet_ext_architectures.es_unet import ESUNet, paper_preset_kwargs
        for wide in range(5):
            kwargs = dict(paper_preset_kwargs("es_unet"), wide_same_level_stages=wide)
            builders.append((f"ES-UNet, wide_same_level_stages={wide}", "es_unet",
                             lambda kw=kwargs: ESUNet(input_channels, num_classes, False, **kw)))
    rows = []
    for label, key, build in builders:
        report = measure(build, shape, device)
        paper = PAPER_TABLE9[key] if (input_size == 144 and input_channels == 2) else (None, None)
        rows.append(CostRow(label, report.params, report.macs, report.flops, *paper))
    return rows


def format_rows(rows: List[CostRow], input_size: int) -> str:
    lines = [f"input 2 x {input_size}^3, batch 1; MACs = multiply-adds (the paper's 'FLOPs' convention), "
             f"torch FLOPs = 2 x MACs",
             "| model | params (M) | paper params (M) | diff | MACs (G) | paper FLOPs (G) | diff | torch FLOPs (G) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def diff(ours, paper):
        return "-" if paper is None else f"{100 * (ours / paper - 1):+.2f}%"

    for r in rows:
        pp = "-" if r.paper_params_m is None else f"{r.paper_params_m:.2f}"
        pf = "-" if r.paper_flops_g is None else f"{r.paper_flops_g:.2f}"
        lines.append(f"| {r.name} | {r.params / 1e6:.3f} | {pp} | {diff(r.params / 1e6, r.paper_params_m)} | "
                     f"{r.macs / 1e9:.2f} | {pf} | {diff(r.macs / 1e9, r.paper_flops_g)} | {r.flops / 1e9:.2f} |")
    return "\n".join(lines)


def add_parser(subparsers):
    from nnunet_ext.commands.arguments import positive_int

    p = subparsers.add_parser("cost", help="params / FLOPs of the ES-UNet paper presets vs the paper's Table 9")
    p.add_argument("--input-size", type=positive_int, default=144,
                   help="cubic input edge, a multiple of 8 (paper: 144)")
    p.add_argument("--input-channels", type=positive_int, default=2, help="paper: 2 (PET + CT)")
    p.add_argument("--num-classes", type=positive_int, default=1, help="output channels (paper: 1 sigmoid map)")
    p.add_argument("--device", default="meta", choices=("meta", "cpu", "cuda"),
                   help="'meta' (default: shapes only, instant) or 'cpu' (runs the real forward; slow at 144^3)")
    p.add_argument("--readings", action="store_true",
                   help="also list ES-UNet under each reading of the same-level path (wide_same_level_stages 0-4)")
    p.set_defaults(func=run)


def run(args):
    rows = paper_cost_rows(args.input_size, args.input_channels, args.num_classes, args.device, args.readings)
    print(format_rows(rows, args.input_size))
    return 0
