"""Synthetic nnU-Net v2 raw datasets: a body, one organ, small lesions inside it; CT-like and optional PET-like channel.

The demo and every test run on these instead of downloading data, so they must look enough like a real
scan to exercise nnU-Net's planning (anisotropic spacing, CT normalisation, several labels, small
foreground objects) while staying a few seconds to write. Layout follows nnU-Net's dataset_format:
``imagesTr/<case>_<XXXX>.nii.gz``, ``labelsTr/<case>.nii.gz``, ``dataset.json``; held-out cases go to
``imagesTs`` and their ground truth to ``labelsTs``.

Label variants mirror nnU-Net's own integration-test datasets (Dataset996-999):
``plain`` (background/organ/lesion), ``ignore`` (extra highest label ``ignore`` on unannotated slices),
``regions`` (organ = {1, 2}, lesion = {2}, with ``regions_class_order``), ``regions_ignore`` (both).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_ext.dataset_names import dataset_folder_name

FILE_ENDING = ".nii.gz"
GENERATOR_TAG = "nnunet_ext.data.phantoms"
BACKGROUND, ORGAN, LESION, IGNORE = 0, 1, 2, 3
LABEL_VARIANTS = ("plain", "ignore", "regions", "regions_ignore")
CHANNEL_NAMES = {1: {"0": "CT"}, 2: {"0": "CT", "1": "PET"}}
# fraction of slices per axis that stay annotated in the ignore variants (nnU-Net's Dataset998 uses 0.1/3 on
# real-size images; ours are tiny, so keep more so every case still has organ and lesion voxels annotated)
ANNOTATED_SLICE_FRACTION = 0.25


@dataclass(frozen=True)
class Phantom:
    """One generated case: image channels (C, *shape) float32 and the label map (*shape) uint8."""
    images: np.ndarray
    labels: np.ndarray
    lesion_radii_mm: Tuple[float, ...]


def dataset_labels(label_variant: str) -> Tuple[Dict[str, object], list | None]:
    """dataset.json ``labels`` and ``regions_class_order`` (None for label-based variants)."""
    if label_variant not in LABEL_VARIANTS:
        raise ValueError(f"unknown label variant {label_variant!r}; expected one of {LABEL_VARIANTS}")
    if label_variant.startswith("regions"):
        # region outputs are painted in this order: organ region -> 1, then lesion region -> 2 on top
        labels: Dict[str, object] = {"background": BACKGROUND, "organ": [ORGAN, LESION], "lesion": LESION}
        order = [ORGAN, LESION]
    else:
        labels, order = {"background": BACKGROUND, "organ": ORGAN, "lesion": LESION}, None
    if label_variant.endswith("ignore"):
        labels["ignore"] = IGNORE  # nnU-Net requires the ignore label to be the highest value
    return labels, order


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
    body = _deformed_ellipsoid(grid, np.zeros(ndim), body_radii, _smooth_noise(rng, shape, spacing, extent.max() / 4), 0.08)

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


def sparsify_annotation(rng: np.random.Generator, labels: np.ndarray, fraction: float = ANNOTATED_SLICE_FRACTION,
                        ignore_label: int = IGNORE) -> np.ndarray:
    """Keep a random ``fraction`` of slices per axis annotated, mark the rest ``ignore_label`` (as nnU-Net's
    Dataset996/998). One slice through the lesion centre of mass always stays annotated."""
    sparse = np.full_like(labels, ignore_label)
    for axis, n in enumerate(labels.shape):
        chosen = list(rng.choice(n, max(1, round(n * fraction)), replace=False))
        if axis == 0 and (labels == LESION).any():
            chosen.append(int(round(ndimage.center_of_mass(labels == LESION)[0])))
        index = [slice(None)] * labels.ndim
        index[axis] = np.array(chosen)
        sparse[tuple(index)] = labels[tuple(index)]
    return sparse


def _write(array: np.ndarray, spacing: Sequence[float], path: Path) -> None:
    """SimpleITK orders spacing x, y, z while our arrays are (z, y, x): reverse it."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(image, str(path), True)


def _check_arguments(dataset_id, name, num_cases, shape, spacing, num_channels, num_test_cases) -> None:
    dataset_folder_name(dataset_id, name)  # id 1..999, name letters/digits/'_'/'-' (nnunet_ext.dataset_names)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must have 2 (y, x) or 3 (z, y, x) entries, got {tuple(shape)}")
    if len(spacing) != len(shape):
        raise ValueError(f"spacing {tuple(spacing)} must have one entry per shape axis {tuple(shape)}")
    if min(shape) < 8:
        raise ValueError(f"every axis needs at least 8 voxels to hold a body, organ and lesion, got {tuple(shape)}")
    if min(spacing) <= 0:
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}")
    if num_channels not in CHANNEL_NAMES:
        raise ValueError(f"num_channels must be 1 (CT) or 2 (CT + PET), got {num_channels}")
    if num_cases < 1 or num_test_cases < 0:
        raise ValueError(f"need >= 1 training case and >= 0 test cases, got {num_cases} and {num_test_cases}")


def _prepare_folder(nnunet_raw: Path, dataset_id: int, folder_name: str) -> Path:
    """Refuse to clash with another dataset of the same id; replace only a folder we generated ourselves."""
    for other in nnunet_raw.glob(f"Dataset{dataset_id:03d}_*"):
        if other.name != folder_name:
            raise FileExistsError(f"{other} already uses dataset id {dataset_id}; pick another id or remove it "
                                  f"(and its nnUNet_preprocessed / nnUNet_results folders)")
    out = nnunet_raw / folder_name
    if out.exists():
        dataset_json = out / "dataset.json"
        ours = dataset_json.is_file() and json.loads(dataset_json.read_text()).get("generator") == GENERATOR_TAG
        if not ours:
            raise FileExistsError(f"{out} exists and was not written by nnunet-ext generate; not overwriting it")
        shutil.rmtree(out)
    return out


def generate_dataset(nnunet_raw: str | Path, dataset_id: int, name: str = "Phantom", *, num_cases: int = 8,
                     shape: Sequence[int] = (32, 64, 64), spacing: Sequence[float] = (3.0, 1.0, 1.0),
                     num_channels: int = 1, label_variant: str = "plain", num_test_cases: int = 0,
                     seed: int = 0, task: str = "phantom") -> Path:
    """Write ``<nnunet_raw>/Dataset{id:03d}_{name}`` and return its path.

    ``shape``/``spacing`` are in numpy order: (z, y, x) for 3D, (y, x) for 2D (written as 2D NIfTI, which
    nnU-Net's SimpleITKIO reads as a single slice and plans only the ``2d`` configuration for).
    Case ``i`` is drawn from ``default_rng([seed, i])``, so the same seed gives identical arrays and adding
    cases does not change the earlier ones. ``task`` other than "phantom" picks a study task
    (``nnunet_ext.data.tasks``), which brings its own labels and channels (plain labels only).
    """
    _check_arguments(dataset_id, name, num_cases, shape, spacing, num_channels, num_test_cases)
    labels_json, regions_class_order = dataset_labels(label_variant)
    channel_names, make = dict(CHANNEL_NAMES[num_channels]), None
    if task != "phantom":
        from nnunet_ext.data.tasks import get_task

        spec = get_task(task)
        if label_variant != "plain":
            raise ValueError(f"task {task!r} has plain labels only, got label variant {label_variant!r}")
        if len(shape) != len(spec.shape):
            raise ValueError(f"task {task!r} is {len(spec.shape)}D; shape {tuple(shape)} has {len(shape)} axes")
        labels_json, channel_names, make = dict(spec.labels), dict(spec.channel_names), spec.maker
    folder_name = f"Dataset{int(dataset_id):03d}_{name}"
    out = _prepare_folder(Path(nnunet_raw), int(dataset_id), folder_name)
    splits = [("Tr", range(num_cases))]
    if num_test_cases:
        splits.append(("Ts", range(num_cases, num_cases + num_test_cases)))
    for suffix, cases in splits:
        (out / f"images{suffix}").mkdir(parents=True)
        (out / f"labels{suffix}").mkdir(parents=True)
        for case in cases:
            rng = np.random.default_rng([int(seed), case])
            phantom = make(rng, shape, spacing) if make else make_phantom(rng, shape, spacing, num_channels)
            labels = phantom.labels
            if "ignore" in label_variant and suffix == "Tr":  # held-out ground truth stays fully annotated
                labels = sparsify_annotation(rng, labels)
            identifier = f"{name.lower()}_{case:03d}"
            for channel, image in enumerate(phantom.images):
                _write(image, spacing, out / f"images{suffix}" / f"{identifier}_{channel:04d}{FILE_ENDING}")
            _write(labels, spacing, out / f"labels{suffix}" / f"{identifier}{FILE_ENDING}")

    dataset_json = {
        "channel_names": channel_names,
        "labels": labels_json,
        "numTraining": int(num_cases),
        "file_ending": FILE_ENDING,
        "name": name,
        "description": f"synthetic phantom ({len(shape)}D, task {task!r}, label variant {label_variant!r}, "
                       f"seed {seed})",
        "generator": GENERATOR_TAG,
    }
    if regions_class_order is not None:
        dataset_json["regions_class_order"] = regions_class_order
    (out / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    return out
