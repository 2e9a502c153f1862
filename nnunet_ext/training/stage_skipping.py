"""Trainer mixin: the multi-stage segmentor with stage skipping (CMC 2025) in nnU-Net's training loop.

Deep supervision: the segmentor emits one output per active decoder level, and which levels are active
depends on the input size (the patch). The scales are therefore computed from the configuration's patch
size with the network's own rule, and the weights follow nnU-Net's halving rule (lowest output 0) when
there are >= 2 outputs; a single active stage has one output with weight 1 (nnU-Net's rule would divide
by zero there).
"""
from __future__ import annotations

import numpy as np

from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_ext.training.architecture import PlansArchitecture
from nnunet_ext.training.base import nnunet_deep_supervision_weights
from nnunet_ext_architectures.stage_skipping_segmentor import (
    SEGMENTOR_CLASS, StageSkippingConfig, StageSkippingSegmentor, stage_skipping_kwargs_from_configuration)


class StageSkippingArchitecture(PlansArchitecture):
    """Trainer mixin: StageSkippingSegmentor on the plans' spacing; deep supervision follows the active stages."""

    network_class = StageSkippingSegmentor
    segmentor_n_stages: int = 5
    segmentor_base_features: int = 16
    segmentor_s0: int = 4

    @classmethod
    def segmentor_architecture(cls, configuration_manager) -> dict:
        """The plans' entry when the plans name the segmentor (nnunet-ext plans), else derived from the spacing."""
        return cls.plans_architecture(configuration_manager) or stage_skipping_kwargs_from_configuration(
            configuration_manager, cls.segmentor_n_stages, cls.segmentor_base_features, cls.segmentor_s0)

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        arch = cls.segmentor_architecture(configuration_manager)
        return get_network_from_plans(SEGMENTOR_CLASS, dict(arch["arch_kwargs"]), arch["_kw_requires_import"],
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)

    def _segmentor_config(self) -> StageSkippingConfig:
        return StageSkippingConfig.build(**self.segmentor_architecture(self.configuration_manager)["arch_kwargs"])

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return super()._get_deep_supervision_scales()
        return self._segmentor_config().output_scales(self.configuration_manager.patch_size)

    def deep_supervision_weights(self) -> np.ndarray:
        n = len(self._get_deep_supervision_scales())
        if n == 1:
            return np.ones(1)
        return nnunet_deep_supervision_weights(n, self.is_ddp, self._do_i_compile())
