"""Trainer mixin that puts DLKUNet into nnU-Net: paper preset on 2D, plans-driven on 3D.

``dlkunet_preset`` ("S"/"M"/"L") selects the paper network (Table 1) for 2D configurations; on 3D
configurations the plans' strides, kernel sizes and widths are used, cut to the preset's depth
(3/4/5 stages). ``dlkunet_preset = None`` follows the plans fully in both. Deep-supervision scales
come from the network actually built, since its depth need not match the plans.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from nnunet_ext.training.checkpointing import CheckpointedArchitecture
from nnunet_ext_architectures.dlkunet import PAPER_PRESETS, DLKUNet, dlkunet_kwargs_from_configuration


def output_scales(strides) -> List[List[float]]:
    """nnU-Net's deep-supervision scales for a network with these per-stage strides (one per output)."""
    return [list(s) for s in 1 / np.cumprod(np.array(strides, dtype=float), axis=0)][:-1]


def check_patch_divisible(patch_size, strides, network: str) -> None:
    """Deep-supervision targets are made by resizing with round(); they match the outputs only if the
    patch is divisible by the network's total stride."""
    total = np.prod(np.array(strides), axis=0)
    if any(int(p) % int(t) for p, t in zip(patch_size, total)):
        raise ValueError(f"{network}: patch size {list(patch_size)} is not divisible by the network's total stride "
                         f"{total.tolist()}, so deep-supervision targets would not match its outputs; use a "
                         f"configuration with a larger patch or switch deep supervision off")


class DLKUNetArchitecture(CheckpointedArchitecture):
    """Builds DLKUNet from the plans (nnU-Net's ``build_network_architecture`` hook)."""

    # on by default: at stock 3d_fullres plans DLKUNet-L needs about twice vanilla's memory
    # (docs/benchmarks/real_scale); same outputs and gradients, more time
    activation_checkpointing: bool = True

    dlkunet_preset: Optional[str] = None

    @classmethod
    def dlkunet_kwargs(cls, configuration_manager) -> dict:
        if cls.dlkunet_preset is not None and len(configuration_manager.patch_size) == 2:
            return dlkunet_kwargs_from_configuration(configuration_manager, preset=cls.dlkunet_preset)
        depth = PAPER_PRESETS[cls.dlkunet_preset.upper()] if cls.dlkunet_preset is not None else None
        return dlkunet_kwargs_from_configuration(configuration_manager, max_stages=depth)

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        kwargs = cls.dlkunet_kwargs(configuration_manager)
        if enable_deep_supervision:
            check_patch_divisible(configuration_manager.patch_size, kwargs["strides"], cls.__name__)
        return cls.checkpointed(DLKUNet(num_input_channels, num_output_channels, enable_deep_supervision, **kwargs))

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        return output_scales(self.dlkunet_kwargs(self.configuration_manager)["strides"])
