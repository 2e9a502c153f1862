"""Hand-written nnU-Net configurations for unit tests: what nnU-Net's planner writes, without a dataset.

``configuration_manager([16, 48, 48], strides, kernels, features, spacing=[3.0, 1.0, 1.0])`` is nnU-Net's own
``ConfigurationManager`` over a configuration whose network is nnU-Net's PlainConvUNet with these stages (the
layout our plans-driven networks read), so the code under test sees exactly the types it sees in training.
"""
from __future__ import annotations

from typing import Optional, Sequence

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


def plain_unet_architecture(dim: int, strides, kernels, features) -> dict:
    """The ``architecture`` entry nnU-Net's planner writes (PlainConvUNet, instance norm, LeakyReLU)."""
    if dim not in (2, 3):
        raise ValueError(f"a configuration is 2D or 3D, got dim={dim}")
    n = len(strides)
    if not len(kernels) == len(features) == n:
        raise ValueError(f"strides, kernels and features need one entry per stage, got {n}, {len(kernels)}, "
                         f"{len(features)}")
    return {"network_class_name": PLAIN_CONV_UNET,
            "arch_kwargs": {"n_stages": n, "features_per_stage": list(features),
                            "conv_op": f"torch.nn.modules.conv.Conv{dim}d", "kernel_sizes": kernels,
                            "strides": strides, "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1),
                            "conv_bias": True, "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
                            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def configuration_manager(patch_size: Sequence[int], strides=None, kernels=None, features=None,
                          architecture: Optional[dict] = None, **entries) -> ConfigurationManager:
    """A configuration with this patch and PlainConvUNet of these stages (``architecture``: an entry as given;
    neither: PlainConvUNet with no arguments, for code that reads only the patch and spacing). ``entries`` are
    further configuration keys (spacing, batch_size, batch_dice, ...)."""
    if architecture is None:
        architecture = {"network_class_name": PLAIN_CONV_UNET, "arch_kwargs": {}, "_kw_requires_import": []} \
            if strides is None else plain_unet_architecture(len(patch_size), strides, kernels, features)
    return ConfigurationManager({"patch_size": list(patch_size), "architecture": architecture, **entries})
