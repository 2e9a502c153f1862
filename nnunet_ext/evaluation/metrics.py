"""Per-case overlap and surface metrics (the ones the five papers report), surface distances by MONAI.

Conventions for empty masks (nnU-Net reports NaN Dice when both are empty; a benchmark that pairs
cases needs a number, so we say what a perfect or a useless answer scores):
- ground truth and prediction both empty: overlap metrics 1, distances 0, relative volume 0;
- exactly one empty: Dice / IoU 0; distances NaN (undefined, reported and skipped by means);
  precision NaN if nothing was predicted, recall NaN if there was nothing to find.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Mapping, Sequence, Tuple, Union

import numpy as np

LabelOrRegion = Union[int, Sequence[int]]
METRIC_NAMES = ("dice", "iou", "hd95", "assd", "nsd", "rvd", "precision", "recall")


def _surface_metrics(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float], nsd_tolerance: float):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    y = torch.from_numpy(gt[None, None].astype(np.float32))
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # a MONAI-internal deprecation, not ours to fix
        hd95 = compute_hausdorff_distance(p, y, include_background=True, percentile=95, spacing=spacing)
        assd = compute_average_surface_distance(p, y, include_background=True, symmetric=True, spacing=spacing)
        nsd = compute_surface_dice(p, y, class_thresholds=[nsd_tolerance], include_background=True, spacing=spacing)
    return float(hd95.item()), float(assd.item()), float(nsd.item())


def binary_metrics(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float],
                   nsd_tolerance: float = 1.0) -> Dict[str, float]:
    """Metrics of one binary mask pair; ``spacing`` in array axis order, ``nsd_tolerance`` in the same units."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth shape {gt.shape} and prediction shape {pred.shape} differ")
    if len(spacing) != gt.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} entries for a {gt.ndim}-D mask")
    tp = float(np.logical_and(gt, pred).sum())
    n_gt, n_pred = float(gt.sum()), float(pred.sum())
    if n_gt == 0 and n_pred == 0:
        return dict(dice=1.0, iou=1.0, hd95=0.0, assd=0.0, nsd=1.0, rvd=0.0, precision=1.0, recall=1.0)
    nan = math.nan
    out = dict(
        dice=2 * tp / (n_gt + n_pred),
        iou=tp / (n_gt + n_pred - tp),
        rvd=(n_pred - n_gt) / n_gt if n_gt else nan,
        precision=tp / n_pred if n_pred else nan,
        recall=tp / n_gt if n_gt else nan,
    )
    if n_gt and n_pred:
        out["hd95"], out["assd"], out["nsd"] = _surface_metrics(gt, pred, spacing, nsd_tolerance)
    else:
        out["hd95"] = out["assd"] = nan
        out["nsd"] = 0.0
    return {k: out[k] for k in METRIC_NAMES}


def region_mask(labelmap: np.ndarray, label_or_region: LabelOrRegion) -> np.ndarray:
    if isinstance(label_or_region, (int, np.integer)):
        return labelmap == label_or_region
    return np.isin(labelmap, list(label_or_region))


def case_metrics(gt: np.ndarray, pred: np.ndarray, classes: Mapping[str, LabelOrRegion],
                 spacing: Sequence[float], nsd_tolerance: float = 1.0,
                 ignore_label: int | None = None) -> Dict[str, Dict[str, float]]:
    """Metrics per named class (a label or a region = tuple of labels); voxels with ``ignore_label`` are left out."""
    if ignore_label is not None:
        keep = gt != ignore_label
        gt, pred = np.where(keep, gt, 0), np.where(keep, pred, 0)
    return {name: binary_metrics(region_mask(gt, lab), region_mask(pred, lab), spacing, nsd_tolerance)
            for name, lab in classes.items()}


def read_segmentation(path) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """Array in SimpleITK's (z, y, x) order and the spacing in the same order."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), tuple(image.GetSpacing())[::-1]


def foreground_classes(dataset_json: dict) -> Dict[str, LabelOrRegion]:
    """Named foreground classes of an nnU-Net dataset.json (labels or regions; background and ignore left out)."""
    out = {}
    for name, value in dataset_json["labels"].items():
        if name in ("background", "ignore"):
            continue
        out[name] = tuple(value) if isinstance(value, (list, tuple)) else int(value)
    return out
