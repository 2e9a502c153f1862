"""Region-of-interest geometry shared by both two-stage pipelines: boxes, margins, jitter, crop and paste-back.

Boxes live in the index space of the raw image array as SimpleITK returns it (numpy order ``(z, y, x)``),
half-open ``[start, stop)`` per axis, so ``array[box.slices]`` is the crop. A cropped NIfTI keeps spacing
and direction and gets the physical position of its first voxel as origin, so nnU-Net resamples the crop
exactly as it would have resampled that part of the full image, and the prediction nnU-Net writes for the
crop lies on the same grid as the full image: pasting it back is an index offset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

MARGIN_UNITS = ("mm", "voxels")


@dataclass(frozen=True)
class Box:
    """Half-open voxel box ``[start, stop)`` per axis, numpy axis order."""

    start: Tuple[int, ...]
    stop: Tuple[int, ...]

    def __post_init__(self):
        start = tuple(int(s) for s in self.start)
        stop = tuple(int(s) for s in self.stop)
        if len(start) != len(stop) or not start:
            raise ValueError(f"box start {start} and stop {stop} must have the same, non-zero length")
        if any(b <= a for a, b in zip(start, stop)):
            raise ValueError(f"box stop {stop} must exceed start {start} on every axis (empty box)")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @property
    def ndim(self) -> int:
        return len(self.start)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def volume(self) -> int:
        return int(np.prod(self.shape))

    @property
    def slices(self) -> Tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def clip(self, shape: Sequence[int]) -> "Box":
        """The part of the box inside an array of ``shape``."""
        _check_shape(self, shape)
        start = tuple(max(0, a) for a in self.start)
        stop = tuple(min(int(n), b) for b, n in zip(self.stop, shape))
        return Box(start, stop)

    def as_list(self) -> list:
        return [list(self.start), list(self.stop)]

    @classmethod
    def from_list(cls, value) -> "Box":
        return cls(tuple(value[0]), tuple(value[1]))


def _check_shape(box: Box, shape: Sequence[int]) -> None:
    if len(shape) != box.ndim:
        raise ValueError(f"box has {box.ndim} axes but the array has shape {tuple(shape)}")
    if any(b <= 0 or a >= n for a, b, n in zip(box.start, box.stop, shape)):
        raise ValueError(f"box {box.as_list()} lies outside an array of shape {tuple(shape)}")


def bounding_box(mask: np.ndarray) -> Optional[Box]:
    """Tight box around the non-zero voxels; None for an empty mask."""
    mask = np.asarray(mask)
    if mask.ndim == 0:
        raise ValueError("bounding_box needs an array with at least one axis")
    if not mask.any():
        return None
    start, stop = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        start.append(int(hit[0]))
        stop.append(int(hit[-1]) + 1)
    return Box(tuple(start), tuple(stop))


def margin_in_voxels(margin: float | Sequence[float], spacing: Sequence[float], unit: str = "mm") -> Tuple[int, ...]:
    """Per-axis margin in voxels; a margin in mm is rounded up so the box never ends up tighter than asked."""
    if unit not in MARGIN_UNITS:
        raise ValueError(f"margin unit must be one of {MARGIN_UNITS}, got {unit!r}")
    ndim = len(spacing)
    values = [float(margin)] * ndim if np.isscalar(margin) else [float(m) for m in margin]
    if len(values) != ndim:
        raise ValueError(f"margin {tuple(values)} needs one entry per axis of spacing {tuple(spacing)}")
    if min(values) < 0:
        raise ValueError(f"margin must be >= 0, got {tuple(values)}")
    if unit == "voxels":
        if any(v != int(v) for v in values):
            raise ValueError(f"a margin in voxels must be whole numbers, got {tuple(values)}")
        return tuple(int(v) for v in values)
    if min(spacing) <= 0:
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}")
    # subtract a hair before ceil so 6 mm at 3 mm spacing is 2 voxels, not 3 through float noise
    return tuple(int(math.ceil(v / s - 1e-9)) for v, s in zip(values, spacing))


def expand_box(box: Box, margin_voxels: Sequence[int], shape: Sequence[int]) -> Box:
    """Grow by ``margin_voxels`` on both sides of each axis, clipped to the array."""
    if len(margin_voxels) != box.ndim:
        raise ValueError(f"margin {tuple(margin_voxels)} needs {box.ndim} entries")
    grown = Box(tuple(a - int(m) for a, m in zip(box.start, margin_voxels)),
                tuple(b + int(m) for b, m in zip(box.stop, margin_voxels)))
    return grown.clip(shape)


def jitter_box(box: Box, rng: np.random.Generator, max_shift: int | Sequence[int], shape: Sequence[int]) -> Box:
    """Move every face independently by a uniform integer in ``[-max_shift, max_shift]``, then clip.

    Trains stage 2 on regions as imprecise as stage 1's will be at inference (nnU-Net's own cascade gets
    the same robustness from its previous-stage segmentation augmentation). The box never collapses: a face
    that would cross its opposite stays one voxel away.
    """
    shifts = [int(max_shift)] * box.ndim if np.isscalar(max_shift) else [int(m) for m in max_shift]
    if len(shifts) != box.ndim or min(shifts) < 0:
        raise ValueError(f"max_shift must be >= 0 with one entry per axis ({box.ndim}), got {max_shift}")
    start, stop = [], []
    for a, b, m, n in zip(box.start, box.stop, shifts, shape):
        lo = int(np.clip(a + rng.integers(-m, m + 1), 0, n - 1))
        hi = int(np.clip(b + rng.integers(-m, m + 1), lo + 1, n))
        start.append(lo)
        stop.append(hi)
    return Box(tuple(start), tuple(stop))


def crop_array(array: np.ndarray, box: Box) -> np.ndarray:
    """``array[box]`` on the last ``box.ndim`` axes (leading axes, e.g. channels, are kept)."""
    _check_shape(box, array.shape[-box.ndim:])
    if box.clip(array.shape[-box.ndim:]) != box:
        raise ValueError(f"box {box.as_list()} reaches outside the array of shape {array.shape[-box.ndim:]}")
    return array[(Ellipsis, *box.slices)]


def paste_array(crop: np.ndarray, box: Box, shape: Sequence[int], fill=0) -> np.ndarray:
    """An array of ``shape`` filled with ``fill`` and ``crop`` placed at ``box`` (the inverse of crop_array)."""
    if tuple(crop.shape[-box.ndim:]) != box.shape:
        raise ValueError(f"crop of shape {crop.shape} does not fit box {box.as_list()} of shape {box.shape}")
    _check_shape(box, shape)
    if box.clip(shape) != box:
        raise ValueError(f"box {box.as_list()} reaches outside the target shape {tuple(shape)}")
    out = np.full((*crop.shape[:-box.ndim], *shape), fill, dtype=crop.dtype)
    out[(Ellipsis, *box.slices)] = crop
    return out


def _itk_index(box: Box) -> Tuple[int, ...]:
    return tuple(int(i) for i in reversed(box.start))  # SimpleITK indexes x, y, z


def crop_image(image: sitk.Image, box: Box) -> sitk.Image:
    """The crop as a SimpleITK image with the right origin (physical position of its first voxel)."""
    if image.GetDimension() != box.ndim:
        raise ValueError(f"image has {image.GetDimension()} axes, box {box.ndim}")
    array = sitk.GetArrayViewFromImage(image)
    cropped = sitk.GetImageFromArray(np.ascontiguousarray(crop_array(array, box)))
    copy_geometry(image, cropped, box)
    return cropped


def copy_geometry(full: sitk.Image, cropped: sitk.Image, box: Box) -> sitk.Image:
    """Give ``cropped`` the spacing/direction of ``full`` and the origin of ``box``'s first voxel."""
    cropped.SetSpacing(full.GetSpacing())
    cropped.SetDirection(full.GetDirection())
    cropped.SetOrigin(full.TransformIndexToPhysicalPoint(_itk_index(box)))
    return cropped


def box_of_crop(full: sitk.Image, cropped: sitk.Image, tolerance: float = 1e-3) -> Box:
    """Recover the box of a crop from its header (the check that a crop really sits where we think)."""
    if full.GetDimension() != cropped.GetDimension():
        raise ValueError("crop and full image differ in dimension")
    if not np.allclose(full.GetSpacing(), cropped.GetSpacing(), atol=tolerance) or \
            not np.allclose(full.GetDirection(), cropped.GetDirection(), atol=tolerance):
        raise ValueError("crop spacing/direction differ from the full image: it is not a crop of this image")
    continuous = full.TransformPhysicalPointToContinuousIndex(cropped.GetOrigin())
    index = [int(round(c)) for c in continuous]
    if max(abs(c - i) for c, i in zip(continuous, index)) > tolerance:
        raise ValueError(f"crop origin {cropped.GetOrigin()} is not on the full image's voxel grid")
    start = tuple(reversed(index))
    size = tuple(reversed(cropped.GetSize()))
    return Box(start, tuple(a + s for a, s in zip(start, size)))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two voxel boxes (0 when they do not overlap)."""
    if a.ndim != b.ndim:
        raise ValueError(f"boxes have {a.ndim} and {b.ndim} axes")
    inter = 1
    for s1, e1, s2, e2 in zip(a.start, a.stop, b.start, b.stop):
        inter *= max(0, min(e1, e2) - max(s1, s2))
    return inter / float(a.volume + b.volume - inter)
