"""Trainer mixins that put STS-Net into nnU-Net: 2D (``STSNetArchitecture``) and 2.5D (``SliceStack25D``).

STS-Net has one output, so deep supervision is kept on (nnU-Net's default data flow) with a single
level: scale 1, weight 1. The ImageNet-style encoder weights are a training-time choice, loaded in
``initialize`` and never by ``nnUNetv2_predict`` (whose checkpoint overwrites them anyway).

2.5D runs on a 3D configuration (3d_fullres): the trainer rewrites that configuration's patch to
``(window, Y, X)`` with the 2d configuration's in-plane patch, so nnU-Net's 3D loader serves
neighbouring slices and ``nnUNetv2_predict -c 3d_fullres`` slides the same window over the volume.
Training scores only the slices whose neighbours are in the patch. See docs/sts_net.md.
"""
from __future__ import annotations

import os
from copy import deepcopy
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch

from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_ext.training.architecture import PlansArchitecture
from nnunet_ext_architectures.sts_net import STSNet, STSNet25D, sts_net_kwargs_from_configuration

# A path here (or in the class attribute ``sts_encoder_weights``) initialises the encoder for training.
ENCODER_WEIGHTS_ENV = "NNUNET_EXT_STS_ENCODER_WEIGHTS"


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The module itself, under DDP and torch.compile wrappers (as nnU-Net's set_deep_supervision_enabled)."""
    if isinstance(network, torch.nn.parallel.DistributedDataParallel):
        network = network.module
    return getattr(network, "_orig_mod", network)


class STSNetArchitecture(PlansArchitecture):
    """Architecture mixin: STS-Net (2D) as the network; its single output is the one deep-supervision level."""

    network_class = STSNet
    sts_output_stride: int = 8
    sts_use_esca: bool = True
    sts_encoder_weights: Optional[str] = None  # torchvision/timm resnext50_32x4d state_dict for training

    @classmethod
    def sts_net_kwargs(cls, configuration_manager) -> dict:
        """Plans' arch_kwargs when the plans name this network class, else the class attributes."""
        planned = cls.plans_architecture(configuration_manager)
        if planned is not None:
            return planned["arch_kwargs"]
        return sts_net_kwargs_from_configuration(configuration_manager, output_stride=cls.sts_output_stride,
                                                 use_esca=cls.sts_use_esca, **cls.extra_sts_kwargs())

    @classmethod
    def extra_sts_kwargs(cls) -> dict:
        return {}

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        kwargs = cls.sts_net_kwargs(configuration_manager)
        kwargs.pop("encoder_weights", None)  # a training-time initialisation, see initialize()
        return cls.network_class(num_input_channels, num_output_channels, enable_deep_supervision, **kwargs)

    def _get_deep_supervision_scales(self):
        return [[1.0] * len(self.configuration_manager.patch_size)] if self.enable_deep_supervision else None

    def deep_supervision_weights(self) -> np.ndarray:
        return np.array([1.0])

    def encoder_weights_path(self) -> Optional[str]:
        """Class attribute, else $NNUNET_EXT_STS_ENCODER_WEIGHTS, else the plans' arch_kwargs."""
        plans_kwargs = self.configuration_manager.network_arch_init_kwargs or {}
        return (self.sts_encoder_weights or os.environ.get(ENCODER_WEIGHTS_ENV)
                or plans_kwargs.get("encoder_weights") or None)

    def initialize(self):
        super().initialize()
        path = self.encoder_weights_path()
        if path:
            unwrap_network(self.network).encoder.load_backbone_weights(path)
            self.print_to_log_file(f"STS-Net encoder initialised from {path}")


class SliceStack25D(STSNetArchitecture):
    """2.5D mixin: STSNet25D on a 3D configuration, patches of ``window`` slices, loss on the inner slices.

    ``context_slices`` c: neighbours on each side (paper: 1, i.e. three stacked slices). The patch depth
    ``window`` defaults to 4c + 1, the smallest for which nnUNetv2_predict's default step (0.5) still
    makes every slice an inner slice of some window (see docs/sts_net.md).
    """

    network_class = STSNet25D
    context_slices: int = 1
    window_slices: Optional[int] = None

    @classmethod
    def extra_sts_kwargs(cls) -> dict:
        return {"context_slices": cls.context_slices}

    @classmethod
    def window(cls) -> int:
        window = cls.window_slices if cls.window_slices is not None else 4 * cls.context_slices + 1
        if window < 2 * cls.context_slices + 1:
            raise ValueError(f"{cls.__name__}: window_slices={window} leaves no slice with all "
                             f"{cls.context_slices} neighbours on each side")
        return window

    @classmethod
    def plans_for_25d(cls, plans: dict, configuration: str) -> dict:
        """A copy of ``plans`` whose ``configuration`` has the 2.5D patch (window, Y, X) and 2D batch settings.

        Y, X, batch dice come from the 2d configuration (same in-plane spacing in nnU-Net's planners); the
        batch shrinks so a step sees about as many slices as the 2d configuration's batch.
        """
        manager = PlansManager(plans)
        config = manager._internal_resolve_configuration_inheritance(configuration)
        if len(config["patch_size"]) != 3:
            raise ValueError(f"{cls.__name__} reads neighbouring slices from a 3D configuration (3d_fullres); "
                             f"configuration {configuration!r} has the {len(config['patch_size'])}D patch "
                             f"{config['patch_size']}")
        inner = cls.window() - 2 * cls.context_slices
        if "2d" in plans["configurations"]:
            config_2d = manager._internal_resolve_configuration_inheritance("2d")
            in_plane, batch_slices, batch_dice = (config_2d["patch_size"], config_2d["batch_size"],
                                                  config_2d["batch_dice"])
        else:
            in_plane, batch_slices, batch_dice = (config["patch_size"][1:], config["batch_size"] * inner,
                                                  config["batch_dice"])
        new_plans = deepcopy(plans)
        target = new_plans["configurations"][configuration]
        target["patch_size"] = [cls.window(), *[int(i) for i in in_plane]]
        target["batch_size"] = max(1, int(round(batch_slices / inner)))
        target["batch_dice"] = bool(batch_dice)
        # say in the plans (and the plans.json next to the checkpoint) which network really runs
        kwargs = sts_net_kwargs_from_configuration(SimpleNamespace(patch_size=target["patch_size"]),
                                                   output_stride=cls.sts_output_stride, use_esca=cls.sts_use_esca,
                                                   context_slices=cls.context_slices)
        target["architecture"] = {"network_class_name": f"{STSNet25D.__module__}.{STSNet25D.__name__}",
                                  "arch_kwargs": kwargs, "_kw_requires_import": []}
        return new_plans

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(self.plans_for_25d(plans, configuration), configuration, fold, dataset_json, device)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """The network is 2D: augment in-plane only (nnU-Net's 2d rules), never mirror across slices."""
        patch_size = self.configuration_manager.patch_size
        in_plane = patch_size[1:]
        angle = 15. if max(in_plane) / min(in_plane) > 1.5 else 180.
        rotation_for_DA = (-angle / 360 * 2. * np.pi, angle / 360 * 2. * np.pi)
        initial_in_plane = get_patch_size(in_plane, rotation_for_DA, rotation_for_DA, rotation_for_DA, (0.85, 1.25))
        initial_patch_size = [patch_size[0], *[int(i) for i in initial_in_plane]]
        mirror_axes = (1, 2)
        self.print_to_log_file("do_dummy_2d_data_aug: True (STS-Net 2.5D)")
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation_for_DA, True, initial_patch_size, mirror_axes

    def set_edge_slices(self, enabled: bool) -> None:
        unwrap_network(self.network).predict_edge_slices = enabled

    def initialize(self):
        super().initialize()
        self.set_edge_slices(False)

    def inner_slices(self, target):
        c = self.context_slices
        crop = lambda t: t[:, :, c:t.shape[2] - c]
        return [crop(t) for t in target] if isinstance(target, list) else crop(target)

    def train_step(self, batch: dict) -> dict:
        return super().train_step({**batch, "target": self.inner_slices(batch["target"])})

    def validation_step(self, batch: dict) -> dict:
        return super().validation_step({**batch, "target": self.inner_slices(batch["target"])})

    def perform_actual_validation(self, save_probabilities: bool = False):
        # nnU-Net's sliding-window predictor needs an output for every slice of the window
        self.set_edge_slices(True)
        try:
            return super().perform_actual_validation(save_probabilities)
        finally:
            self.set_edge_slices(False)
