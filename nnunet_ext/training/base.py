"""The base every nnunet-ext trainer derives from.

nnU-Net's ``_build_loss`` mixes three concerns (which loss, which deep-supervision weights, the
wrapper). Splitting them into hooks lets a loss mixin and an architecture mixin each change their
part without copying the others.

Hooks (override in mixins, always call ``super()`` where it makes sense):

- ``build_segmentation_loss()``: the loss for one output (default: nnU-Net's Dice + CE / BCE).
- ``dice_over_batch()``: whether every Dice-type loss term sums over the batch (default: the plans' ``batch_dice``).
- ``deep_supervision_weights()``: one weight per network output (default: nnU-Net's 1/2^i, last 0).
- ``build_deep_supervision_loss(loss)``: the sum over the outputs (default: nnU-Net's DeepSupervisionWrapper).
- ``build_network_architecture(...)``: nnU-Net's own static hook (>= 2.7 signature).
- ``edit_training_transforms(pipeline, args)``: edits the pipeline nnU-Net's ``get_training_transforms``
  built (a classmethod; ``args`` holds that method's ten arguments); augmentation mixins override only this.
- ``configure_optimizers()``: nnU-Net's own hook.
- ``build_training_dataloader(...)`` / ``build_validation_dataloader(...)``: the data loaders that
  ``get_dataloaders`` (nnU-Net 2.8's, otherwise unchanged) wraps in its augmenters; a sampling mixin
  overrides only these, so it composes with mixins changing transforms or patch size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.helpers.scalar_type import RandomScalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA


def nnunet_deep_supervision_weights(n_outputs: int, is_ddp: bool, compiled: bool) -> np.ndarray:
    """nnU-Net's rule: halve per level, drop the lowest output, normalise to 1."""
    weights = np.array([1 / (2 ** i) for i in range(n_outputs)])
    # nnU-Net: DDP without compile complains about unused parameters when a weight is exactly 0.
    weights[-1] = 1e-6 if (is_ddp and not compiled) else 0
    return weights / weights.sum()


@dataclass(frozen=True)
class TrainingTransformsArgs:
    """The arguments nnU-Net's ``get_training_transforms`` got, for ``edit_training_transforms``."""
    patch_size: Union[np.ndarray, Tuple[int, ...]]
    rotation_for_DA: RandomScalar
    deep_supervision_scales: Union[List, Tuple, None]
    mirror_axes: Tuple[int, ...]
    do_dummy_2d_data_aug: bool
    use_mask_for_norm: Optional[List[bool]] = None
    is_cascaded: bool = False
    foreground_labels: Union[Tuple[int, ...], List[int], None] = None
    regions: Optional[List[Union[List[int], Tuple[int, ...], int]]] = None
    ignore_label: Optional[int] = None


class ExtTrainer(nnUNetTrainer):
    """Base of all nnunet-ext trainers: nnU-Net's trainer with the loss split into hooks."""

    @classmethod
    def get_training_transforms(
            cls,
            patch_size: Union[np.ndarray, Tuple[int]],
            rotation_for_DA: RandomScalar,
            deep_supervision_scales: Union[List, Tuple, None],
            mirror_axes: Tuple[int, ...],
            do_dummy_2d_data_aug: bool,
            use_mask_for_norm: List[bool] = None,
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        """nnU-Net's pipeline (its static method, called through the class), then ``edit_training_transforms``."""
        args = TrainingTransformsArgs(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                      do_dummy_2d_data_aug, use_mask_for_norm, is_cascaded, foreground_labels,
                                      regions, ignore_label)
        pipeline = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        return cls.edit_training_transforms(pipeline, args)

    @classmethod
    def edit_training_transforms(cls, pipeline: BasicTransform, args: TrainingTransformsArgs) -> BasicTransform:
        """Hook for augmentation mixins: change nnU-Net's built training pipeline (call ``super()`` first)."""
        return pipeline

    def dice_over_batch(self) -> bool:
        """nnU-Net's ``batch_dice``: one Dice over the batch instead of one per case; the plans decide by default."""
        return bool(self.configuration_manager.batch_dice)

    def build_segmentation_loss(self) -> nn.Module:
        """The loss applied to one network output; nnU-Net's default."""
        if self.label_manager.has_regions:
            return DC_and_BCE_loss({}, {'batch_dice': self.dice_over_batch(), 'do_bg': True,
                                        'smooth': 1e-5, 'ddp': self.is_ddp},
                                   use_ignore_label=self.label_manager.ignore_label is not None,
                                   dice_class=MemoryEfficientSoftDiceLoss)
        return DC_and_CE_loss({'batch_dice': self.dice_over_batch(), 'smooth': 1e-5,
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
            loss = self.build_deep_supervision_loss(loss)
        return loss

    def build_deep_supervision_loss(self, loss: nn.Module) -> nn.Module:
        """``loss`` summed over the network's outputs with ``deep_supervision_weights()``; nnU-Net's wrapper."""
        return DeepSupervisionWrapper(loss, self.deep_supervision_weights())

    def build_training_dataloader(self, dataset_tr, initial_patch_size, transforms: BasicTransform) -> nnUNetDataLoader:
        """nnU-Net's training loader (oversized crops of ``initial_patch_size``); override to change sampling."""
        return nnUNetDataLoader(dataset_tr, self.batch_size, initial_patch_size, self.configuration_manager.patch_size,
                                self.label_manager, oversample_foreground_percent=self.oversample_foreground_percent,
                                sampling_probabilities=None, pad_sides=None, transforms=transforms,
                                probabilistic_oversampling=self.probabilistic_oversampling)

    def build_validation_dataloader(self, dataset_val, transforms: BasicTransform) -> nnUNetDataLoader:
        """nnU-Net's validation loader (patch-sized crops)."""
        patch_size = self.configuration_manager.patch_size
        return nnUNetDataLoader(dataset_val, self.batch_size, patch_size, patch_size, self.label_manager,
                                oversample_foreground_percent=self.oversample_foreground_percent,
                                sampling_probabilities=None, pad_sides=None, transforms=transforms,
                                probabilistic_oversampling=self.probabilistic_oversampling)

    def get_dataloaders(self):
        """nnU-Net 2.8's get_dataloaders with the two loaders built by the hooks above."""
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        deep_supervision_scales = self._get_deep_supervision_scales()
        rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes = \
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        lm = self.label_manager
        regions = lm.foreground_regions if lm.has_regions else None
        tr_transforms = self.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm, is_cascaded=self.is_cascaded,
            foreground_labels=lm.foreground_labels, regions=regions, ignore_label=lm.ignore_label)
        val_transforms = self.get_validation_transforms(deep_supervision_scales, is_cascaded=self.is_cascaded,
                                                        foreground_labels=lm.foreground_labels, regions=regions,
                                                        ignore_label=lm.ignore_label)
        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        dl_tr = self.build_training_dataloader(dataset_tr, initial_patch_size, tr_transforms)
        dl_val = self.build_validation_dataloader(dataset_val, val_transforms)
        allowed_num_processes = get_allowed_n_proc_DA()
        if allowed_num_processes == 0:
            mt_gen_train, mt_gen_val = SingleThreadedAugmenter(dl_tr, None), SingleThreadedAugmenter(dl_val, None)
        else:
            pin = self.device.type == 'cuda'
            mt_gen_train = NonDetMultiThreadedAugmenter(data_loader=dl_tr, transform=None,
                                                        num_processes=allowed_num_processes,
                                                        num_cached=max(6, allowed_num_processes // 2), seeds=None,
                                                        pin_memory=pin, wait_time=0.002)
            mt_gen_val = NonDetMultiThreadedAugmenter(data_loader=dl_val, transform=None,
                                                      num_processes=max(1, allowed_num_processes // 2),
                                                      num_cached=max(3, allowed_num_processes // 4), seeds=None,
                                                      pin_memory=pin, wait_time=0.002)
        _ = next(mt_gen_train)
        _ = next(mt_gen_val)
        return mt_gen_train, mt_gen_val


class NeedsExtTrainer:
    """Base of trainer mixins that fill ExtTrainer's hooks: refuses a trainer built on nnU-Net's trainer alone,
    where the hooks would never be called and the mixin would silently do nothing."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if issubclass(cls, nnUNetTrainer) and not issubclass(cls, ExtTrainer):
            mixins = [c.__name__ for c in cls.__mro__ if NeedsExtTrainer in c.__bases__]
            raise TypeError(f"{cls.__name__}: {', '.join(mixins)} needs ExtTrainer (nnunet_ext.training.base) "
                            f"among its bases for its hooks; got only nnUNetTrainer")
