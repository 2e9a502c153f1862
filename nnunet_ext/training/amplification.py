"""Trainer mixin: STS-Net's small-lesion amplification on any nnU-Net trainer (2D or 3D).

Two pieces: ExtTrainer's ``edit_training_transforms`` hook puts the amplification operations right after nnU-Net's
spatial transform (they see the final patch, the analogue of the paper's image, and the plain label
map, before intensity augmentation, regions and deep-supervision targets), and ExtTrainer's
``build_training_dataloader`` hook returns :class:`AmplifiedDataLoader` instead of nnU-Net's loader,
fed from the dataset's cached lesion statistics restricted to this fold's training cases. Validation
is untouched. The mixin needs ExtTrainer below it (nnU-Net's own get_dataloaders has no such hook).
"""
from __future__ import annotations

from typing import Optional, Tuple

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunet_ext.data.amplified_loader import AmplificationPlan, AmplifiedDataLoader, amplified_probability
from nnunet_ext.data.lesion_stats import LesionStats, load_or_compute_lesion_stats, resolve_lesion_label
from nnunet_ext.training.base import NeedsExtTrainer, TrainingTransformsArgs
from nnunet_ext.transforms.amplification import (PAPER_BORDER_FRACTION, PAPER_CENTRE_DILATION,
                                                 PAPER_CENTRE_HALF_SIZE_FRACTION, PAPER_METHODS,
                                                 AmplificationMethod, build_amplification_transform)
from nnunet_ext.transforms.pipeline import insert_after_spatial


def amplification_plan(stats: LesionStats, method: AmplificationMethod, min_lesion_size: int = 5,
                       amplified_fraction: Optional[float] = None) -> AmplificationPlan:
    """Which units to amplify and how often, from (training-case) lesion statistics and a Table 7 method."""
    if stats.A == 0:
        return AmplificationPlan((), 0.0, 0)
    n1, n2 = stats.thresholds
    threshold = {"N1": n1, "N2": n2}[method.threshold]
    units = tuple(stats.qualifying(threshold, min_lesion_size))
    if not units:
        return AmplificationPlan((), 0.0, threshold)
    if amplified_fraction is None:
        probability = amplified_probability(stats.num_images, len(units), method.copies)
    else:
        probability = float(amplified_fraction)
    return AmplificationPlan(units, probability, threshold)


class SmallLesionAmplification(NeedsExtTrainer):
    """STS-Net amplification: small-lesion images drawn more often, as flipped / cropped / centre-zoomed copies."""

    amplification_method: int = 4  # Table 7 row; the paper's final choice
    lesion_label: Optional[int] = None  # None: the highest foreground label
    lesion_unit: str = "image"  # "image" (slice in 2D, case in 3D, as the paper) or "component"
    min_lesion_size: int = 5  # the authors' scripts skip lesions of <= 5 pixels
    amplified_fraction: Optional[float] = None  # None: derived from the paper's copies per image
    border_fraction: float = PAPER_BORDER_FRACTION
    centre_half_size_fraction: Tuple[float, float] = PAPER_CENTRE_HALF_SIZE_FRACTION
    centre_dilation: int = PAPER_CENTRE_DILATION
    amplification_axes: Optional[Tuple[int, ...]] = None  # spatial axes crops may cut; None: all
    lesion_stats_ndim: Optional[int] = None  # 2: slice statistics, 3: case statistics; None: the patch's

    @classmethod
    def amplification_method_spec(cls) -> AmplificationMethod:
        if cls.amplification_method not in PAPER_METHODS:
            raise ValueError(f"{cls.__name__}.amplification_method = {cls.amplification_method!r}; "
                             f"STS-Net's Table 7 has methods {sorted(PAPER_METHODS)}")
        return PAPER_METHODS[cls.amplification_method]

    @classmethod
    def edit_training_transforms(cls, pipeline: BasicTransform, args: TrainingTransformsArgs) -> BasicTransform:
        pipeline = super().edit_training_transforms(pipeline, args)
        if args.foreground_labels is None:
            raise ValueError(f"{cls.__name__}: amplification needs the dataset's foreground labels to find the lesion")
        amplify = build_amplification_transform(
            cls.amplification_method_spec(), resolve_lesion_label(cls.lesion_label, args.foreground_labels),
            cls.border_fraction, cls.centre_half_size_fraction, cls.centre_dilation, cls.amplification_axes)
        insert_after_spatial(pipeline, amplify)
        return pipeline

    def lesion_statistics(self) -> LesionStats:
        """All cases' statistics, cached next to the preprocessed data (``nnunet-ext lesion-stats`` prints them)."""
        label = resolve_lesion_label(self.lesion_label, self.label_manager.foreground_labels)
        ndim = self.lesion_stats_ndim or len(self.configuration_manager.patch_size)
        return load_or_compute_lesion_stats(self.preprocessed_dataset_folder, label, ndim, self.lesion_unit)

    def build_amplification_plan(self, training_cases) -> AmplificationPlan:
        stats = self.lesion_statistics().subset(training_cases)
        method = self.amplification_method_spec()
        plan = amplification_plan(stats, method, self.min_lesion_size, self.amplified_fraction)
        summary = stats.summary()
        if stats.A == 0:
            self.print_to_log_file(f"WARNING amplification: no voxel of lesion label {stats.lesion_label} in the "
                                   f"training cases; training without amplification")
        else:
            self.print_to_log_file(
                f"amplification ({method.name}, unit {stats.unit}, {stats.ndim}D, label {stats.lesion_label}): "
                f"images U={stats.num_images}, A={stats.A}, S={stats.S}, N1={summary['N1']}, N2={summary['N2']}, "
                f"threshold {method.threshold}={plan.threshold}, qualifying Q={len(plan.units)}, "
                f"copies per image {method.copies}, amplified draw probability {plan.probability:.4f}")
        return plan

    def build_training_dataloader(self, dataset_tr, initial_patch_size, transforms) -> nnUNetDataLoader:
        """ExtTrainer's hook: nnU-Net's training loader with this fold's amplification plan (validation untouched)."""
        plan = self.build_amplification_plan(dataset_tr.identifiers)
        return AmplifiedDataLoader(dataset_tr, self.batch_size, initial_patch_size,
                                   self.configuration_manager.patch_size, self.label_manager, plan,
                                   oversample_foreground_percent=self.oversample_foreground_percent,
                                   sampling_probabilities=None, pad_sides=None, transforms=transforms,
                                   probabilistic_oversampling=self.probabilistic_oversampling)
