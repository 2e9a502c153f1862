"""Trainer mixin that puts DLKUNet into nnU-Net: paper preset on 2D, plans-driven on 3D.

``dlkunet_preset`` ("S"/"M"/"L") selects the paper network (Table 1) for 2D configurations; on 3D
configurations the plans' strides, kernel sizes and widths are used, cut to the preset's depth
(3/4/5 stages). ``dlkunet_preset = None`` follows the plans fully in both. Deep-supervision scales
come from the network actually built, since its depth need not match the plans.
"""
from __future__ import annotations

from typing import Optional

from nnunet_ext.training.architecture import StridedUNetArchitecture, check_patch_divisible, output_scales
from nnunet_ext_architectures.dlkunet import PAPER_PRESETS, DLKUNet, dlkunet_kwargs_from_configuration

__all__ = ["DLKUNetArchitecture", "check_patch_divisible", "output_scales"]  # the last two: training/architecture.py


class DLKUNetArchitecture(StridedUNetArchitecture):
    """Builds DLKUNet from the plans (nnU-Net's ``build_network_architecture`` hook)."""

    network_class = DLKUNet
    # on by default: at stock 3d_fullres plans DLKUNet-L needs about twice vanilla's memory
    # (docs/benchmarks/real_scale); same outputs and gradients, more time
    activation_checkpointing: bool = True

    dlkunet_preset: Optional[str] = None

    @classmethod
    def network_kwargs(cls, configuration_manager) -> dict:
        return cls.dlkunet_kwargs(configuration_manager)

    @classmethod
    def dlkunet_kwargs(cls, configuration_manager) -> dict:
        """A preset's network (the trainer's name promises it), else the plans' DLKUNet, else the plans' stages."""
        planned = cls.plans_architecture(configuration_manager)
        if cls.dlkunet_preset is None:
            return planned["arch_kwargs"] if planned is not None else \
                dlkunet_kwargs_from_configuration(configuration_manager)
        if len(configuration_manager.patch_size) == 2:
            return dlkunet_kwargs_from_configuration(configuration_manager, preset=cls.dlkunet_preset)
        return dlkunet_kwargs_from_configuration(configuration_manager,
                                                 max_stages=PAPER_PRESETS[cls.dlkunet_preset.upper()])
