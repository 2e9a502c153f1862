"""Trainer mixin that adds Region Specific Scaling (ES-UNet) to nnU-Net's training augmentation.

RSS goes first, in front of nnU-Net's spatial transform (and its 3D->2D conversion for dummy-2D
augmentation): it then works on the loader's oversized crop, so the mirror-padded gaps and cropped
edges it makes at that crop's borders mostly fall outside the patch SpatialTransform cuts from the
centre, and it still sees the plain label map (with -1 outside the image) before regions / deep
supervision change the segmentation's format. See docs/rss.md.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from nnunet_ext.training.base import NeedsExtTrainer, TrainingTransformsArgs
from nnunet_ext.transforms.pipeline import insert_before_spatial
from nnunet_ext.transforms.rss import PAPER_P_PER_AXIS, PAPER_RATIO_RANGE, RegionSpecificScaling

__all__ = ["RSSAugmentation", "insert_before_spatial"]  # the insertion rule lives in transforms/pipeline.py


class RSSAugmentation(NeedsExtTrainer):
    """Adds Region Specific Scaling (ES-UNet) in front of nnU-Net's spatial augmentation."""

    rss_ratio_range: Tuple[float, float] = PAPER_RATIO_RANGE
    rss_p_per_axis: float = PAPER_P_PER_AXIS
    rss_ratio_sampling: str = "split"  # paper Figs. 6/7: shrink in [r1, 1] or enlarge in [1, r2]; or "uniform"
    rss_axes: Optional[Tuple[int, ...]] = None  # None: every spatial axis
    rss_foreground_labels: Optional[Tuple[int, ...]] = None  # None: the dataset's foreground labels

    @classmethod
    def build_rss_transform(cls, foreground_labels: Optional[Sequence[int]] = None,
                            ignore_label: Optional[int] = None) -> RegionSpecificScaling:
        labels = cls.rss_foreground_labels if cls.rss_foreground_labels is not None else foreground_labels
        return RegionSpecificScaling(ratio_range=cls.rss_ratio_range, p_per_axis=cls.rss_p_per_axis,
                                     ratio_sampling=cls.rss_ratio_sampling, axes=cls.rss_axes,
                                     foreground_labels=labels, ignore_label=ignore_label)

    @classmethod
    def edit_training_transforms(cls, pipeline: BasicTransform, args: TrainingTransformsArgs) -> BasicTransform:
        pipeline = super().edit_training_transforms(pipeline, args)
        insert_before_spatial(pipeline, cls.build_rss_transform(args.foreground_labels, args.ignore_label))
        return pipeline
