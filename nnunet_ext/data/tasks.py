"""Task-specific phantoms: datasets built so that one paper's claim is testable (docs/datasets.md).

The default phantom (``phantoms.make_phantom``) is easy on purpose: it exercises the pipeline. The studies of
issue 11 need tasks on which vanilla nnU-Net does *not* reach Dice 0.99, for the reasons real data is hard:
noise, a smooth bias field, structures whose intensities overlap the target's, partial volume, anisotropy and
targets that are small and rare. Each maker returns a :class:`phantoms.Phantom`; ``TASKS`` says which labels
and channels its dataset.json has and what shape and spacing its study uses.

- ``hecktor``: head-and-neck CT + PET (ES-UNet paper, HECKTOR): a primary tumour and 0-3 small lymph nodes,
  both PET-avid, with PET-avid distractors (physiological uptake) and a CT contrast that overlaps soft tissue.
- ``small_targets``: 2D slices with a handful of tiny lesions (2-40 pixels) at low prevalence among bright
  vessel-like distractors of the same intensity (STS-Net, amplification, DLKUNet).
- ``organ_lesion``: an organ with small low-contrast lesions in a large, anisotropic field of view, so that a
  first stage that finds the organ (cascade, detector + segmentor) has something to gain (paper 004).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
from scipy import ndimage

from nnunet_ext.data.anatomy import (Phantom, _deformed_ellipsoid, _grid_mm, _partial_volume, _smooth_noise,
                                     make_phantom)


@dataclass(frozen=True)
class Task:
    """What a task's dataset.json declares and the size its study uses (any shape of the right rank works)."""
    name: str
    maker: Callable[..., Phantom]           # (rng, shape, spacing) -> Phantom
    labels: Dict[str, int]
    channel_names: Dict[str, str]
    shape: Tuple[int, ...]
    spacing: Tuple[float, ...]
    summary: str


def bias_field(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float], strength: float,
               correlation_mm: float) -> np.ndarray:
    """A smooth multiplicative field around 1 (coil / attenuation inhomogeneity), ``1 +- strength``-ish."""
    return np.exp(strength * _smooth_noise(rng, shape, spacing, correlation_mm))


def _ball(grid, center, radius) -> np.ndarray:
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius ** 2


def _random_point(rng, mask: np.ndarray) -> np.ndarray:
    points = np.argwhere(mask)
    return points[rng.integers(len(points))]


def _index_to_mm(index, shape, spacing):
    return [(i - (n - 1) / 2) * s for i, n, s in zip(index, shape, spacing)]


# -- hecktor: CT + PET, primary tumour and nodes -----------------------------------------------------------
HECKTOR_LABELS = {"background": 0, "primary": 1, "nodes": 2}


def make_hecktor(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> Phantom:
    """A neck: body cylinder, airway, spine; primary tumour near the airway, nodes laterally; PET-avid
    tonsil/salivary distractors. The tumour is barely visible on CT (+10 HU over textured soft tissue), so
    the network must use PET, where distractors are as hot as the nodes."""
    shape, spacing = tuple(int(s) for s in shape), tuple(float(s) for s in spacing)
    if len(shape) != 3:
        raise ValueError(f"the hecktor task is 3D (z, y, x); got shape {shape}")
    grid = _grid_mm(shape, spacing)
    extent = np.array(shape) * np.array(spacing)
    inf = 1e6
    body = _deformed_ellipsoid(grid, (0, 0, 0), (inf, *(extent[1:] * rng.uniform(0.40, 0.46, 2))),
                               _smooth_noise(rng, shape, spacing, extent.max() / 4), 0.06)
    airway_center = (0, -extent[1] * 0.12, extent[2] * rng.uniform(-0.04, 0.04))
    airway = _deformed_ellipsoid(grid, airway_center, (inf, extent[1] * 0.06, extent[2] * 0.08), 0 * grid[0], 0)
    spine = _deformed_ellipsoid(grid, (0, extent[1] * 0.18, 0), (inf, extent[1] * 0.09, extent[2] * 0.09),
                                0 * grid[0], 0)
    soft = body & ~airway & ~spine

    labels = np.zeros(shape, np.uint8)
    # primary: a lobulated ellipsoid beside the airway, 7-13 mm radius
    radii = rng.uniform(7, 13) * rng.uniform(0.75, 1.25, 3)
    center = (extent[0] * rng.uniform(-0.15, 0.15), airway_center[1] + rng.uniform(-4, 4),
              airway_center[2] + rng.choice([-1, 1]) * rng.uniform(8, 14))
    primary = _deformed_ellipsoid(grid, center, radii, _smooth_noise(rng, shape, spacing, 4.0), 0.35) & soft
    labels[primary] = HECKTOR_LABELS["primary"]
    # nodes: 0-3 spheres of 4-8 mm radius in the lateral neck
    node_zone = soft & (np.abs(grid[2]) > extent[2] * 0.15) & ~ndimage.binary_dilation(primary, iterations=2)
    for _ in range(int(rng.choice([0, 1, 1, 2, 2, 3]))):
        if not node_zone.any():
            break
        node = _ball(grid, _index_to_mm(_random_point(rng, node_zone), shape, spacing),
                     float(np.exp(rng.uniform(np.log(4.0), np.log(8.0))))) & soft
        labels[node & (labels == 0)] = HECKTOR_LABELS["nodes"]
    # distractors: two symmetric PET-avid glands (tonsils / submandibular), not labelled
    glands = np.zeros(shape, bool)
    for side in (-1, 1):
        gland_center = (extent[0] * rng.uniform(-0.2, 0.2), extent[1] * rng.uniform(-0.05, 0.05),
                        side * extent[2] * rng.uniform(0.2, 0.28))
        glands |= _deformed_ellipsoid(grid, gland_center, rng.uniform(4, 8, 3), 0 * grid[0], 0) & soft
    glands &= labels == 0

    ct = np.where(body, 40.0 + 18.0 * _smooth_noise(rng, shape, spacing, 5.0), -1000.0)
    ct = np.where(airway, -950.0, ct)
    ct = np.where(spine, 700.0 + 80 * _smooth_noise(rng, shape, spacing, 3.0), ct)
    ct = np.where(glands, 55.0, ct)
    ct = np.where(labels > 0, rng.uniform(45, 60) + 10 * _smooth_noise(rng, shape, spacing, 2.0), ct)
    ct = _partial_volume(ct, spacing, fwhm_mm=1.5 * min(spacing)) + rng.normal(0.0, 15.0, shape)

    suv = np.where(body, 1.0, 0.0) + np.where(spine, 0.5, 0.0)
    suv = np.where(glands, rng.uniform(3.0, 7.0), suv)
    suv = np.where(labels == HECKTOR_LABELS["nodes"], rng.uniform(3.0, 8.0), suv)
    suv = np.where(labels == HECKTOR_LABELS["primary"], rng.uniform(5.0, 14.0)
                   * (1 + 0.3 * _smooth_noise(rng, shape, spacing, 4.0)), suv)
    suv = np.clip(_partial_volume(suv, spacing, fwhm_mm=6.0), 0.0, None) * rng.uniform(0.7, 1.3)  # uptake scale
    pet = suv + rng.normal(0.0, 1.0, shape) * 0.15 * np.sqrt(suv + 0.05)
    radii_mm = tuple(float(r) for r in radii)
    return Phantom(np.stack([ct, pet]).astype(np.float32), labels, radii_mm)


# -- small_targets: tiny 2D lesions among vessel-like distractors ------------------------------------------
SMALL_TARGET_LABELS = {"background": 0, "lesion": 1}


def _vessels(rng, grid, count: int, width_mm: float) -> np.ndarray:
    """Bright curved lines (vessels or ducts): thin, long, as bright as lesions, never round."""
    mask = np.zeros(grid[0].shape, bool)
    for _ in range(count):
        angle, offset, bend = rng.uniform(0, np.pi), rng.uniform(-0.4, 0.4), rng.uniform(-0.02, 0.02)
        along = grid[0] * np.cos(angle) + grid[1] * np.sin(angle)
        across = -grid[0] * np.sin(angle) + grid[1] * np.cos(angle)
        extent = np.abs(grid[0]).max()
        mask |= np.abs(across - offset * extent - bend * along ** 2) < width_mm / 2
    return mask


def make_small_targets(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> Phantom:
    """One 2D slice: textured tissue under a bias field, 1-3 vessels, and 0-3 lesions of 1-3.5 px radius
    (about 3-40 pixels). Lesion and vessel intensities overlap; only shape and context tell them apart."""
    shape, spacing = tuple(int(s) for s in shape), tuple(float(s) for s in spacing)
    if len(shape) != 2:
        raise ValueError(f"the small_targets task is 2D (y, x); got shape {shape}")
    grid = _grid_mm(shape, spacing)
    extent = np.array(shape) * np.array(spacing)
    tissue = _deformed_ellipsoid(grid, (0, 0), extent * rng.uniform(0.42, 0.48, 2),
                                 _smooth_noise(rng, shape, spacing, extent.max() / 4), 0.1)
    vessels = _vessels(rng, grid, int(rng.integers(1, 4)), width_mm=rng.uniform(1.0, 1.8) * min(spacing)) & tissue
    labels = np.zeros(shape, np.uint8)
    radii = []
    allowed = ndimage.binary_erosion(tissue, iterations=3) & ~ndimage.binary_dilation(vessels, iterations=2)
    for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):  # ~1 in 6 slices has no lesion (low prevalence)
        if not allowed.any():
            break
        radius = float(np.exp(rng.uniform(np.log(1.0), np.log(3.5)))) * min(spacing)
        index = _random_point(rng, allowed)
        lesion = _ball(grid, _index_to_mm(index, shape, spacing), radius)
        lesion[tuple(index)] = True
        labels[lesion & tissue] = SMALL_TARGET_LABELS["lesion"]
        radii.append(radius)

    image = np.where(tissue, 100.0 + 10.0 * _smooth_noise(rng, shape, spacing, 2.0 * min(spacing)), 0.0)
    image = np.where(vessels, rng.uniform(125, 155), image)
    image = np.where(labels > 0, rng.uniform(145, 175), image)
    image = _partial_volume(image, spacing, fwhm_mm=1.2 * min(spacing))
    image = image * bias_field(rng, shape, spacing, 0.15, extent.max() / 2) + rng.normal(0.0, 8.0, shape)
    return Phantom(image[None].astype(np.float32), labels, tuple(radii))


# -- organ_lesion: the default phantom, made harder ---------------------------------------------------------
ORGAN_LESION_LABELS = {"background": 0, "organ": 1, "lesion": 2}


def make_organ_lesion(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> Phantom:
    """The default phantom's anatomy in a large field of view, with a bias field and lower lesion contrast."""
    phantom = make_phantom(rng, shape, spacing, 1)
    ct = phantom.images[0]
    lesion = phantom.labels == ORGAN_LESION_LABELS["lesion"]
    ct = np.where(lesion, ct + rng.uniform(25, 45), ct)  # hypodense lesions at half their usual contrast
    extent = np.array(shape) * np.array(spacing)
    field = bias_field(rng, shape, spacing, 0.03, extent.max() / 2)  # about +-30 HU
    ct = (ct + 1000.0) * field - 1000.0 + rng.normal(0.0, 10.0, ct.shape)
    return Phantom(ct[None].astype(np.float32), phantom.labels, phantom.lesion_radii_mm)


TASKS: Dict[str, Task] = {t.name: t for t in (
    Task("hecktor", make_hecktor, HECKTOR_LABELS, {"0": "CT", "1": "PET"}, (12, 24, 24), (4.0, 3.0, 3.0),
         "head-and-neck CT + PET: primary tumour and small nodes, PET-avid distractors (study A)"),
    Task("small_targets", make_small_targets, SMALL_TARGET_LABELS, {"0": "MR"}, (32, 32), (0.5, 0.5),
         "2D slices with tiny lesions among vessel-like distractors, low prevalence (study B)"),
    Task("organ_lesion", make_organ_lesion, ORGAN_LESION_LABELS, {"0": "CT"}, (32, 80, 80), (4.0, 1.5, 1.5),
         "organ + small low-contrast lesions in a large anisotropic field of view (study C)"),
)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: phantom (default), {', '.join(TASKS)}")
    return TASKS[name]
