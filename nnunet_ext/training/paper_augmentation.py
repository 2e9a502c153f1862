"""Trainer mixin: the ES-UNet paper's augmentation instead of nnU-Net's full pipeline.

The paper (section "Implementation details"): "mirroring was applied with a probability of 0.5, and
rotation by a random angle between -15 and 15 degrees was performed in each axial direction", plus RSS.
nnU-Net's pipeline is trimmed to that: its SpatialTransform keeps only rotation (every sample, one angle
per axis in [-15, 15] degrees; no scaling, no elastic deformation), its MirrorTransform (each allowed axis
flipped with p = 0.5) stays, and its intensity transforms (noise, blur, brightness, contrast, low
resolution, gamma) go. The format steps after them (ignore label, regions, deep-supervision targets) stay.
Compose with ``RSSAugmentation`` to its left to add RSS in front of the spatial step.
"""
from __future__ import annotations

import math
from typing import Optional

from batchgeneratorsv2.helpers.scalar_type import RandomScalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from nnunet_ext.training.base import NeedsExtTrainer, TrainingTransformsArgs

NNUNET_INTENSITY_TRANSFORMS = (GaussianNoiseTransform, GaussianBlurTransform, MultiplicativeBrightnessTransform,
                               ContrastTransform, SimulateLowResolutionTransform, GammaTransform)


def rotate_and_mirror_only(pipeline: BasicTransform, p_rotation: float = 1.0,
                           rotation: Optional[RandomScalar] = None) -> ComposeTransforms:
    """nnU-Net's training pipeline without intensity transforms, scaling or elastic deformation (in place);
    ``rotation``: the angle range (radians) its SpatialTransform draws from, None keeps nnU-Net's."""
    if not isinstance(pipeline, ComposeTransforms):
        raise TypeError(f"expected nnU-Net's ComposeTransforms from get_training_transforms, "
                        f"got {type(pipeline).__name__}")
    spatial = [t for t in pipeline.transforms if isinstance(t, SpatialTransform)]
    if len(spatial) != 1:
        raise RuntimeError(f"expected one SpatialTransform in nnU-Net's training pipeline, found {len(spatial)}")
    spatial[0].p_rotation, spatial[0].p_scaling, spatial[0].p_elastic_deform = float(p_rotation), 0.0, 0.0
    if rotation is not None:
        spatial[0].rotation = rotation
    pipeline.transforms = [t for t in pipeline.transforms
                           if not (isinstance(t, RandomTransform)
                                   and isinstance(t.transform, NNUNET_INTENSITY_TRANSFORMS))]
    return pipeline


class ESUNetPaperAugmentation(NeedsExtTrainer):
    """The ES-UNet paper's augmentation: +-15 degree rotation per axis and mirroring (p = 0.5), no other of
    nnU-Net's."""

    paper_rotation_degrees: float = 15.0
    paper_p_rotation: float = 1.0  # the paper rotates every sample ("was performed"); it gives no probability

    @classmethod
    def edit_training_transforms(cls, pipeline: BasicTransform, args: TrainingTransformsArgs) -> BasicTransform:
        angle = math.radians(cls.paper_rotation_degrees)
        pipeline = super().edit_training_transforms(pipeline, args)
        return rotate_and_mirror_only(pipeline, cls.paper_p_rotation, (-angle, angle))
