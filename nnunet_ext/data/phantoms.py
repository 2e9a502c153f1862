"""Synthetic nnU-Net v2 raw datasets: a body, one organ, small lesions inside it; CT-like and optional PET-like channel.

The demo and every test run on these instead of downloading data, so they must look enough like a real
scan to exercise nnU-Net's planning (anisotropic spacing, CT normalisation, several labels, small
foreground objects) while staying a few seconds to write. Layout follows nnU-Net's dataset_format:
``imagesTr/<case>_<XXXX>.nii.gz``, ``labelsTr/<case>.nii.gz``, ``dataset.json``; held-out cases go to
``imagesTs`` and their ground truth to ``labelsTs``.

Label variants mirror nnU-Net's own integration-test datasets (Dataset996-999):
``plain`` (background/organ/lesion), ``ignore`` (extra highest label ``ignore`` on unannotated slices),
``regions`` (organ = {1, 2}, lesion = {2}, with ``regions_class_order``), ``regions_ignore`` (both).
The anatomy is drawn in ``anatomy.py``; ``task`` picks a study task from ``tasks.py`` instead.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_ext.data.anatomy import BACKGROUND, LESION, ORGAN, Phantom, make_phantom
from nnunet_ext.data.tasks import get_task
from nnunet_ext.dataset_names import dataset_folder_name

__all__ = ["BACKGROUND", "ORGAN", "LESION", "IGNORE", "LABEL_VARIANTS", "Phantom", "make_phantom", "dataset_labels",
           "sparsify_annotation", "generate_dataset"]

FILE_ENDING = ".nii.gz"
GENERATOR_TAG = "nnunet_ext.data.phantoms"
IGNORE = 3
LABEL_VARIANTS = ("plain", "ignore", "regions", "regions_ignore")
CHANNEL_NAMES = {1: {"0": "CT"}, 2: {"0": "CT", "1": "PET"}}
# fraction of slices per axis that stay annotated in the ignore variants (nnU-Net's Dataset998 uses 0.1/3 on
# real-size images; ours are tiny, so keep more so every case still has organ and lesion voxels annotated)
ANNOTATED_SLICE_FRACTION = 0.25


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
