"""Mixins the test trainers of this folder share (their schedule is nnunet_ext's ``ShortSchedule``).

nnU-Net imports every module of this folder, as a top-level module, while it looks a trainer up by name;
this one defines no trainer, so a lookup never stops here.
"""
import torch


class SmallBatch:
    """Batch 2 whatever the plans say (ResNeXt50 on two CPU cores: two images (2d) / two windows (2.5D))."""

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        self.batch_size = 2


class NoDeepSupervision:
    """As nnU-Net's nnUNetTrainerNoDeepSupervision: one full-resolution output."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False


class NarrowWidths:
    """Every stage's width divided by ``width_divisor`` (at least ``min_width`` channels): the depth, kernels and
    strides stay those of the plans or the preset, so the pipeline around the network is the one under test,
    at a fraction of the CPU time (DLKUNet-L: 24 ... 384 channels, 1.2 M instead of 17.7 M parameters)."""

    width_divisor = 4
    min_width = 4

    @classmethod
    def narrow(cls, kwargs: dict) -> dict:
        widths = [max(cls.min_width, f // cls.width_divisor) for f in kwargs["features_per_stage"]]
        return {**kwargs, "features_per_stage": widths}


class NarrowDLKUNet(NarrowWidths):
    @classmethod
    def dlkunet_kwargs(cls, configuration_manager) -> dict:
        return cls.narrow(super().dlkunet_kwargs(configuration_manager))


class NarrowELANRes(NarrowWidths):
    @classmethod
    def elanres_kwargs(cls, configuration_manager) -> dict:
        return cls.narrow(super().elanres_kwargs(configuration_manager))
