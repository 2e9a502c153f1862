"""Trainer mixins that put ES-UNet / the 3D UNet 3+ baseline into nnU-Net's training loop.

Compose before ``ExtTrainer`` in any order, e.g. ``class T(DWDFocalLoss, ESUNetArchitecture, ExtTrainer)``.

Deep supervision: the networks emit every output at input resolution (the paper's full-scale deep
supervision), so every target is the full-resolution segmentation (scale 1 per axis) and the outputs are
weighted equally. Element 0 is the prediction nnU-Net validates and exports (ES-UNet: mean of the heads'
logits; UNet 3+: its finest head).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_ext.training.architecture import PlansArchitecture
from nnunet_ext.training.checkpointing import CheckpointedArchitecture
from nnunet_ext.training.loss_checkpointing import CheckpointedDeepSupervision

from nnunet_ext_architectures.es_unet import CLASS_BY_VARIANT, ESUNet, UNet3Plus, es_unet_kwargs_from_configuration


def equal_deep_supervision_weights(n_outputs: int) -> np.ndarray:
    """Every output (prediction and heads) counts the same; sums to 1."""
    if n_outputs < 1:
        raise ValueError(f"need at least one output, got {n_outputs}")
    return np.full(n_outputs, 1.0 / n_outputs)


class _FullScaleArchitecture(PlansArchitecture, CheckpointedArchitecture, CheckpointedDeepSupervision):
    variant: str = "es_unet"
    network_class = ESUNet
    skip_connections: str = "both"  # Table 4: "base" | "enc_only" | "dec_only" | "both"
    # on by default: at nnU-Net's stock 3d_fullres plans the plain full-scale decoder needs several times
    # vanilla's memory (docs/benchmarks/real_scale); same outputs and gradients, more time (docs/es_unet.md)
    activation_checkpointing: bool = True
    # the paper's N = 4 levels on plans with more stages; None follows the plans
    max_stages: Optional[int] = None
    # ES-UNet's prediction: mean of the heads' "logits" (default) or of their "softmax" / "sigmoid" probabilities
    head_fusion: str = "logits"

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """From our plans' kwargs when the plans name this network, else from the configuration's stage layout."""
        arch = cls.plans_architecture(configuration_manager) or es_unet_kwargs_from_configuration(
            configuration_manager, cls.variant, cls.skip_connections, max_stages=cls.max_stages,
            head_fusion=cls.head_fusion)
        kwargs, requires_import = arch["arch_kwargs"], arch["_kw_requires_import"]
        # the trainer's name promises the Table 4 variant (and head fusion), so its attributes win over the plans
        kwargs["skip_connections"] = cls.skip_connections
        if cls.variant == "es_unet":
            kwargs["head_fusion"] = cls.head_fusion
        network = get_network_from_plans(CLASS_BY_VARIANT[cls.variant], kwargs, requires_import, num_input_channels,
                                         num_output_channels, allow_init=True, deep_supervision=enable_deep_supervision)
        return cls.checkpointed(network)

    def initialize(self):
        fusion = self.head_fusion
        if fusion != "logits" and (fusion == "sigmoid") != self.label_manager.has_regions:
            raise ValueError(f"{type(self).__name__}: head_fusion={fusion!r} does not match this dataset, whose "
                             f"outputs nnU-Net turns into probabilities with "
                             f"{'sigmoid (regions)' if self.label_manager.has_regions else 'softmax'}")
        super().initialize()

    def _num_network_outputs(self) -> int:
        n_stages = len(self.configuration_manager.pool_op_kernel_sizes)
        if self.max_stages is not None:
            n_stages = min(n_stages, self.max_stages)
        return n_stages + (1 if self.variant == "es_unet" else 0)

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return super()._get_deep_supervision_scales()
        dim = len(self.configuration_manager.patch_size)
        return [[1.0] * dim for _ in range(self._num_network_outputs())]

    def deep_supervision_weights(self) -> np.ndarray:
        return equal_deep_supervision_weights(len(self._get_deep_supervision_scales()))


class ESUNetArchitecture(_FullScaleArchitecture):
    """Trainer mixin: ES-UNet on nnU-Net's stage layout; full-resolution, equally weighted deep supervision."""

    variant = "es_unet"
    network_class = ESUNet


class UNet3PlusArchitecture(_FullScaleArchitecture):
    """Trainer mixin: the paper's 3D UNet 3+ baseline on nnU-Net's stage layout."""

    variant = "unet3plus"
    network_class = UNet3Plus
