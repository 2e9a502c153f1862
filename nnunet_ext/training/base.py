"""The base every nnunet-ext trainer derives from.

nnU-Net's ``_build_loss`` mixes three concerns (which loss, which deep-supervision weights, the
wrapper). Splitting them into hooks lets a loss mixin and an architecture mixin each change their
part without copying the others.

Hooks (override in mixins, always call ``super()`` where it makes sense):

- ``build_segmentation_loss()``: the loss for one output (default: nnU-Net's Dice + CE / BCE).
- ``deep_supervision_weights()``: one weight per network output (default: nnU-Net's 1/2^i, last 0).
- ``build_network_architecture(...)``: nnU-Net's own static hook (>= 2.7 signature).
- ``get_training_transforms(...)``: nnU-Net's own hook; mixins override it as a classmethod.
- ``configure_optimizers()``: nnU-Net's own hook.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def nnunet_deep_supervision_weights(n_outputs: int, is_ddp: bool, compiled: bool) -> np.ndarray:
    """nnU-Net's rule: halve per level, drop the lowest output, normalise to 1."""
    weights = np.array([1 / (2 ** i) for i in range(n_outputs)])
    # nnU-Net: DDP without compile complains about unused parameters when a weight is exactly 0.
    weights[-1] = 1e-6 if (is_ddp and not compiled) else 0
    return weights / weights.sum()


class ExtTrainer(nnUNetTrainer):
    """Base of all nnunet-ext trainers: nnU-Net's trainer with the loss split into hooks."""

    def build_segmentation_loss(self) -> nn.Module:
        """The loss applied to one network output; nnU-Net's default."""
        if self.label_manager.has_regions:
            return DC_and_BCE_loss({}, {'batch_dice': self.configuration_manager.batch_dice, 'do_bg': True,
                                        'smooth': 1e-5, 'ddp': self.is_ddp},
                                   use_ignore_label=self.label_manager.ignore_label is not None,
                                   dice_class=MemoryEfficientSoftDiceLoss)
        return DC_and_CE_loss({'batch_dice': self.configuration_manager.batch_dice, 'smooth': 1e-5,
                               'do_bg': False, 'ddp': self.is_ddp}, {}, weight_ce=1, weight_dice=1,
                              ignore_label=self.label_manager.ignore_label, dice_class=MemoryEfficientSoftDiceLoss)

    def deep_supervision_weights(self) -> np.ndarray:
        return nnunet_deep_supervision_weights(len(self._get_deep_supervision_scales()), self.is_ddp,
                                               self._do_i_compile())

    def _build_loss(self):
        loss = self.build_segmentation_loss()
        if self._do_i_compile() and hasattr(loss, 'dc'):
            loss.dc = torch.compile(loss.dc)
        if self.enable_deep_supervision:
            loss = DeepSupervisionWrapper(loss, self.deep_supervision_weights())
        return loss
