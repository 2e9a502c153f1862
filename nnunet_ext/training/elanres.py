"""Trainer mixin that puts ELANRes-MSCA-UNet into nnU-Net (depth, strides, kernels, widths from the plans).

Nothing needs to happen at prediction time: nnUNetv2_predict builds the network with this hook, loads
the (unfused) checkpoint and calls ``eval()``, and in eval mode every re-parameterizable conv runs its
fused single kernel (see architectures/elanres_msca_unet.py).
"""
from __future__ import annotations

from nnunet_ext.training.architecture import StridedUNetArchitecture
from nnunet_ext_architectures.elanres_msca_unet import ELANResMSCAUNet, elanres_kwargs_from_configuration


class ELANResMSCAUNetArchitecture(StridedUNetArchitecture):
    """Builds ELANRes-MSCA-UNet from the plans (nnU-Net's ``build_network_architecture`` hook)."""

    network_class = ELANResMSCAUNet
    # on by default: at stock 3d_fullres plans the plain network needs several times vanilla's memory
    # (docs/benchmarks/real_scale); same outputs and gradients, more time
    activation_checkpointing: bool = True

    # "all": MSCA strips along every axis; "inplane": only the last two (the paper's 3D-to-2D reading)
    elanres_msca_axes: str = "all"

    @classmethod
    def network_kwargs(cls, configuration_manager) -> dict:
        return cls.elanres_kwargs(configuration_manager)

    @classmethod
    def elanres_kwargs(cls, configuration_manager) -> dict:
        """The plans' ELANRes-MSCA-UNet, else the plans' stage layout; the trainer's MSCA axes either way."""
        planned = cls.plans_architecture(configuration_manager)
        if planned is None:
            return elanres_kwargs_from_configuration(configuration_manager, msca_axes=cls.elanres_msca_axes)
        return {**planned["arch_kwargs"], "msca_axes": cls.elanres_msca_axes}
