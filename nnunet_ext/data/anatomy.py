"""The default phantom's anatomy: a body, one organ and small lesions in it, as CT-like and PET-like images.

Drawing only (arrays in, arrays out); writing datasets is ``phantoms.py``, study tasks are ``tasks.py``, and
both draw with these primitives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

BACKGROUND, ORGAN, LESION = 0, 1, 2


@dataclass(frozen=True)
class Phantom:
    """One generated case: image channels (C, *shape) float32 and the label map (*shape) uint8."""
    images: np.ndarray
    labels: np.ndarray
    lesion_radii_mm: Tuple[float, ...]


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float],
                  correlation_mm: float) -> np.ndarray:
    """Zero-mean, unit-std noise correlated over ``correlation_mm`` (physical, so anisotropy is respected)."""
    sigma = [correlation_mm / s for s in spacing]
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _grid_mm(shape: Sequence[int], spacing: Sequence[float]):
    return np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")


def _deformed_ellipsoid(grid, center, radii, warp: np.ndarray, amount: float) -> np.ndarray:
    """Implicit ellipsoid ``sum(((x - c) / r)^2) < 1`` whose boundary is pushed around by ``warp``."""
    level = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii))
    return level + amount * warp < 1.0


def make_phantom(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float],
                 num_channels: int = 1) -> Phantom:
    """One case. ``shape``/``spacing`` are in array order (z, y, x) or (y, x)."""
    shape, spacing = tuple(int(s) for s in shape), tuple(float(s) for s in spacing)
    ndim = len(shape)
    grid = _grid_mm(shape, spacing)
    extent = np.array(shape) * np.array(spacing)  # mm

    # body: an elliptic cylinder along the first (slice) axis in 3D, an ellipse in 2D
    body_radii = extent * rng.uniform(0.40, 0.47, ndim)
    if ndim == 3:
        body_radii[0] = 1e6
    body = _deformed_ellipsoid(grid, np.zeros(ndim), body_radii,
                               _smooth_noise(rng, shape, spacing, extent.max() / 4), 0.08)

    # organ: a deformed ellipsoid well inside the body
    organ_radii = extent * rng.uniform(0.18, 0.26, ndim)
    if ndim == 3:
        organ_radii[0] = min(organ_radii[0] * 1.4, extent[0] * 0.38)
    organ_center = extent * rng.uniform(-0.08, 0.08, ndim)
    organ = _deformed_ellipsoid(grid, organ_center, organ_radii,
                                _smooth_noise(rng, shape, spacing, organ_radii.min() / 1.5), 0.25) & body
    if organ.sum() == 0:  # pathological draw: fall back to the undeformed ellipsoid
        organ = _deformed_ellipsoid(grid, organ_center, organ_radii, np.zeros(shape), 0.0)

    # lesions: 1-3 spheres of log-uniform radius, centred where the organ is at least that deep, kept one
    # voxel away from the organ surface so each lesion is enclosed by organ (as a liver or kidney tumour)
    labels = np.where(organ, ORGAN, BACKGROUND).astype(np.uint8)
    interior = ndimage.binary_erosion(organ)
    if not interior.any():
        interior = organ
    depth_mm = ndimage.distance_transform_edt(interior, sampling=spacing)
    min_radius = 0.75 * max(spacing)  # at least one slice thick
    max_radius = max(min_radius * 1.2, 0.45 * depth_mm.max())
    radii = []
    for _ in range(int(rng.integers(1, 4))):
        radius = float(np.exp(rng.uniform(np.log(min_radius), np.log(max_radius))))
        candidates = np.argwhere(depth_mm >= min(radius, depth_mm.max()))
        center_idx = candidates[rng.integers(len(candidates))]
        center = [(i - (n - 1) / 2) * s for i, n, s in zip(center_idx, shape, spacing)]
        lesion = (sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius ** 2) & interior
        lesion[tuple(center_idx)] = True  # a lesion always has at least its centre voxel
        labels[lesion] = LESION
        radii.append(radius)

    channels = [_ct_channel(rng, labels, body, spacing)]
    if num_channels == 2:
        channels.append(_pet_channel(rng, labels, body, spacing))
    return Phantom(np.stack(channels).astype(np.float32), labels, tuple(radii))


def _partial_volume(tissue: np.ndarray, spacing: Sequence[float], fwhm_mm: float) -> np.ndarray:
    """Blur a piecewise-constant intensity map like a scanner's point spread function."""
    sigma = [fwhm_mm / 2.355 / s for s in spacing]
    return ndimage.gaussian_filter(tissue, sigma, mode="nearest")


def _ct_channel(rng, labels, body, spacing) -> np.ndarray:
    """Hounsfield-like: air -1000, soft tissue ~40, organ ~100 with texture, hypodense lesions ~20."""
    shape = labels.shape
    organ_hu, lesion_hu = rng.uniform(80, 120), rng.uniform(0, 40)
    hu = np.where(body, 40.0 + 15.0 * _smooth_noise(rng, shape, spacing, 8.0), -1000.0)
    hu = np.where(labels == ORGAN, organ_hu + 10.0 * _smooth_noise(rng, shape, spacing, 3.0), hu)
    hu = np.where(labels == LESION, lesion_hu, hu)
    hu = _partial_volume(hu, spacing, fwhm_mm=1.5 * min(spacing))
    return hu + rng.normal(0.0, 12.0, shape)


def _pet_channel(rng, labels, body, spacing) -> np.ndarray:
    """SUV-like: body ~1, organ ~2, lesions hot (6-15), blurrier than CT, count-like noise."""
    activity = np.where(body, 1.0, 0.0) + np.where(labels >= ORGAN, 1.0, 0.0)
    activity = np.where(labels == LESION, rng.uniform(6.0, 15.0), activity)
    activity = np.clip(_partial_volume(activity, spacing, fwhm_mm=3.0 * min(spacing)), 0.0, None)
    return activity + rng.normal(0.0, 1.0, labels.shape) * 0.1 * np.sqrt(activity + 0.05)
