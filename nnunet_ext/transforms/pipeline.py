"""Where augmentation mixins put their transform in nnU-Net's training pipeline (a ComposeTransforms).

One rule, anchored on nnU-Net's spatial step: a transform that wants the loader's oversized crop and the
plain label map goes *before* it (ES-UNet's RSS); one that wants the final patch goes *after* it and
after the dummy-2D conversion back to 3D (STS-Net's amplification). Both go before intensity
augmentation, regions and deep-supervision targets, which follow the spatial step in nnU-Net 2.8.
"""
from __future__ import annotations

from typing import Sequence, Type

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform

# the spatial step of nnU-Net's pipeline, with the dummy-2D conversions around it
SPATIAL_START = (Convert3DTo2DTransform, SpatialTransform)
SPATIAL_END = (SpatialTransform, Convert2DTo3DTransform)


def insert_transform(pipeline: BasicTransform, transform: BasicTransform, *,
                     before: Sequence[Type[BasicTransform]] = (), after: Sequence[Type[BasicTransform]] = ()) -> int:
    """Insert ``transform`` in front of the first step of a ``before`` type, or behind the last of an ``after``
    type (exactly one of the two); at the start if there is none. Returns the index it got."""
    if not isinstance(pipeline, ComposeTransforms):
        raise TypeError("expected nnU-Net's ComposeTransforms from get_training_transforms, "
                        f"got {type(pipeline).__name__}")
    if bool(before) == bool(after):
        raise ValueError("insert_transform needs exactly one of before= or after= (transform types to anchor on)")
    steps = pipeline.transforms
    if before:
        position = next((i for i, t in enumerate(steps) if isinstance(t, tuple(before))), 0)
    else:
        matches = [i for i, t in enumerate(steps) if isinstance(t, tuple(after))]
        position = matches[-1] + 1 if matches else 0
    steps.insert(position, transform)
    return position


def insert_before_spatial(pipeline: BasicTransform, transform: BasicTransform) -> int:
    """In front of the first spatial step (the 3D->2D conversion for dummy-2D augmentation, else SpatialTransform)."""
    return insert_transform(pipeline, transform, before=SPATIAL_START)


def insert_after_spatial(pipeline: BasicTransform, transform: BasicTransform) -> int:
    """Behind the spatial step (and its 2D->3D conversion back for dummy-2D augmentation)."""
    return insert_transform(pipeline, transform, after=SPATIAL_END)
