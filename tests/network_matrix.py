"""Every network (and loss) the trainers build, at narrow widths and tiny patches, built through each trainer's own
``build_network_architecture`` on hand-made configurations (shared by the compile and mixed-precision tests).

One 3D configuration with five stages (so DLKUNet S/M/L cut it to 3/4/5 stages and differ), a 2D one for
STS-Net. Widths are a tenth of nnU-Net's; the layout (strides, kernels, anisotropy) is a stock plan's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import torch
from torch import nn

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from hand_plans import configuration_manager, plain_unet_architecture

from nnunet_ext_trainers.dlkunet_trainers import DLKUNetLTrainer, DLKUNetMTrainer, DLKUNetSTrainer
from nnunet_ext_trainers.elanres_trainers import ELANResMSCAUNetTrainer
from nnunet_ext_trainers.es_unet_trainers import ESUNetTrainer, UNet3PlusTrainer
from nnunet_ext_trainers.stage_skipping_trainers import StageSkippingSegmentorTrainer
from nnunet_ext_trainers.sts_net_trainers import STSNet25DTrainer, STSNetTrainer

IN_CHANNELS, N_CLASSES = 1, 3
PATCH_3D = [8, 16, 16]
PATCH_2D = [32, 32]


def configuration_3d(n_stages: int = 3) -> ConfigurationManager:
    """Anisotropic like a CT plan (first stride in-plane only); 5 stages for DLKUNet's S/M/L depths (3/4/5),
    3 elsewhere (compile time grows with the graph, ES-UNet's quadratically with the stages)."""
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1]][:n_stages]
    kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]][:n_stages]
    return configuration_manager(PATCH_3D, strides, kernels, [4, 8, 8, 16, 16][:n_stages], spacing=[3.0, 1.0, 1.0],
                                 batch_dice=False)


def configuration_3d_deep() -> ConfigurationManager:
    return configuration_3d(5)


def configuration_2d() -> ConfigurationManager:
    strides = [[1, 1], [2, 2], [2, 2]]
    return configuration_manager(PATCH_2D, strides, [[3, 3]] * 3, [4, 8, 16], spacing=[1.0, 1.0], batch_dice=True)


def configuration_25d() -> ConfigurationManager:
    """A 3d_fullres configuration rewritten the way STSNet25DTrainer's __init__ does (window of 5 slices)."""
    plans = {"plans_name": "p", "configurations": {
        "3d_fullres": {"patch_size": [8, 32, 32], "batch_size": 2, "batch_dice": False, "spacing": [3.0, 1.0, 1.0],
                       "architecture": plain_unet_architecture(3, [[1, 1, 1]], [[3, 3, 3]], [4])}}}
    plans = STSNet25DTrainer.plans_for_25d(plans, "3d_fullres")
    return ConfigurationManager(plans["configurations"]["3d_fullres"])


class NarrowStageSkippingTrainer(StageSkippingSegmentorTrainer):
    """The segmentor's trainer at a quarter of its width (its class attribute, as a user would change it)."""

    segmentor_base_features = 4


class ESUNetPlainTrainer(ESUNetTrainer):
    """ES-UNet without activation checkpointing (its trainers checkpoint by default)."""

    activation_checkpointing = False


@dataclass(frozen=True)
class NetworkCase:
    """One network as a trainer builds it, plus the input shape it trains on."""

    name: str
    trainer: type
    configuration: Callable[[], ConfigurationManager]

    def build(self, deep_supervision: bool = True, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return self.trainer.build_network_architecture(None, self.configuration(), IN_CHANNELS, N_CLASSES,
                                                       deep_supervision)

    def input_shape(self, batch: int = 2) -> List[int]:
        return [batch, IN_CHANNELS, *self.configuration().patch_size]


CASES: Dict[str, NetworkCase] = {c.name: c for c in [
    NetworkCase("vanilla", nnUNetTrainer, configuration_3d),
    NetworkCase("es_unet", ESUNetTrainer, configuration_3d),  # activation checkpointing on (the default)
    NetworkCase("es_unet_plain", ESUNetPlainTrainer, configuration_3d),
    NetworkCase("unet3plus", UNet3PlusTrainer, configuration_3d),
    NetworkCase("dlkunet_s", DLKUNetSTrainer, configuration_3d_deep),
    NetworkCase("dlkunet_m", DLKUNetMTrainer, configuration_3d_deep),
    NetworkCase("dlkunet_l", DLKUNetLTrainer, configuration_3d_deep),
    NetworkCase("elanres", ELANResMSCAUNetTrainer, configuration_3d),
    NetworkCase("sts_net_2d", STSNetTrainer, configuration_2d),
    NetworkCase("sts_net_25d", STSNet25DTrainer, configuration_25d),
    NetworkCase("stage_skipping", NarrowStageSkippingTrainer, configuration_3d),
]}


def outputs_as_list(out) -> List[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


LABELS = {"background": 0, "a": 1}
REGIONS = {"background": 0, "whole": [1, 2], "core": 2}


def trainer_loss(trainer_class, regions: bool, epoch: int = 0, ddp: bool = False) -> nn.Module:
    """The per-output loss a trainer builds (its build_segmentation_loss), without a dataset: two labels
    (background + one class) or two regions, batch Dice on as nnU-Net's 3d_fullres plans have it."""
    trainer = trainer_class.__new__(trainer_class)  # only what the loss hooks read
    trainer.label_manager = LabelManager(REGIONS, [1, 2]) if regions else LabelManager(LABELS, None)
    trainer.configuration_manager = configuration_manager(PATCH_3D, [[1, 1, 1]], [[3, 3, 3]], [4], batch_dice=True)
    trainer.is_ddp, trainer.current_epoch, trainer.num_epochs = ddp, epoch, 10
    return trainer.build_segmentation_loss()
