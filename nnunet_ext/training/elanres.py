"""Trainer mixin that puts ELANRes-MSCA-UNet into nnU-Net (depth, strides, kernels, widths from the plans).

Nothing needs to happen at prediction time: nnUNetv2_predict builds the network with this hook, loads
the (unfused) checkpoint and calls ``eval()``, and in eval mode every re-parameterizable conv runs its
fused single kernel (see architectures/elanres_msca_unet.py).
"""
from __future__ import annotations

from nnunet_ext.training.checkpointing import CheckpointedArchitecture
from nnunet_ext.training.dlkunet import check_patch_divisible, output_scales
from nnunet_ext_architectures.elanres_msca_unet import ELANResMSCAUNet, elanres_kwargs_from_configuration


class ELANResMSCAUNetArchitecture(CheckpointedArchitecture):
    """Builds ELANRes-MSCA-UNet from the plans (nnU-Net's ``build_network_architecture`` hook)."""

    # on by default: at stock 3d_fullres plans the plain network needs several times vanilla's memory
    # (docs/benchmarks/real_scale); same outputs and gradients, more time
    activation_checkpointing: bool = True

    # "all": MSCA strips along every axis; "inplane": only the last two (the paper's 3D-to-2D reading)
    elanres_msca_axes: str = "all"

    @classmethod
    def elanres_kwargs(cls, configuration_manager) -> dict:
        return elanres_kwargs_from_configuration(configuration_manager, msca_axes=cls.elanres_msca_axes)

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        kwargs = cls.elanres_kwargs(configuration_manager)
        if enable_deep_supervision:
            check_patch_divisible(configuration_manager.patch_size, kwargs["strides"], cls.__name__)
        return cls.checkpointed(ELANResMSCAUNet(num_input_channels, num_output_channels, enable_deep_supervision,
                                                **kwargs))

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        return output_scales(self.elanres_kwargs(self.configuration_manager)["strides"])
