"""Per-case scores of one (trainer, fold): Dice/IoU from nnU-Net's own summary.json, the rest from our metrics.

nnU-Net's evaluator is the reference for overlap (its Dice is NaN when ground truth and prediction are
both empty); HD95, ASSD, NSD, RVD, precision and recall come from nnunet_ext.evaluation.metrics.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Iterable, List

import numpy as np

from nnunet_ext.evaluation.metrics import METRIC_NAMES, case_metrics, foreground_classes

# what the per-case table holds for each class (and for the mean over classes)
CASE_METRICS = ("dice", "iou", "hd95", "assd", "nsd", "rvd", "precision", "recall")
HIGHER_IS_BETTER = {"dice": True, "iou": True, "hd95": False, "assd": False, "nsd": True, "rvd": None,
                    "precision": True, "recall": True}
MEAN_CLASS = "mean"


def reader_writer(dataset_json: dict, example_file: str):
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    return determine_reader_writer_from_dataset_json(dataset_json, example_file)()


def read_seg(rw, path) -> tuple:
    """Label map in nnU-Net's array order and spacing in the same order (nnU-Net's reader, any file format)."""
    seg, props = rw.read_seg(str(path))
    return seg[0], tuple(float(s) for s in props["spacing"])


def case_rows(summary_file: Path, dataset_json: dict, nsd_tolerance_mm: float = 1.0) -> List[Dict]:
    """One row per (case, class) plus a ``mean`` row per case, from an nnU-Net summary.json."""
    summary = json.loads(Path(summary_file).read_text())
    classes = foreground_classes(dataset_json)
    ignore = dataset_json["labels"].get("ignore")
    if not summary.get("metric_per_case"):
        raise ValueError(f"{summary_file} lists no cases; was the prediction folder empty?")
    summary_keys = list(summary["mean"].keys())
    if len(summary_keys) != len(classes):
        raise ValueError(f"{summary_file} scores {len(summary_keys)} classes but dataset.json names {len(classes)}")
    ending = dataset_json["file_ending"]
    rw = reader_writer(dataset_json, summary["metric_per_case"][0]["reference_file"])
    rows = []
    for entry in summary["metric_per_case"]:
        case = Path(entry["reference_file"]).name[: -len(ending)]
        gt, spacing = read_seg(rw, entry["reference_file"])
        pred, _ = read_seg(rw, entry["prediction_file"])
        ours = case_metrics(gt, pred, classes, spacing, nsd_tolerance_mm, ignore_label=ignore)
        per_class = {}
        for name, key in zip(classes, summary_keys):
            values = dict(ours[name])
            values["dice"] = _float(entry["metrics"][key]["Dice"])
            values["iou"] = _float(entry["metrics"][key]["IoU"])
            per_class[name] = values
            rows.append({"case": case, "class": name, **values})
        rows.append({"case": case, "class": MEAN_CLASS,
                     **{m: _nanmean([per_class[c][m] for c in per_class]) for m in CASE_METRICS}})
    return rows


def never_predicted(rows: Iterable[Dict]) -> bool:
    """One model's rows of one class: it predicted none of the class's voxels on any case, though some case
    contains the class (precision is NaN exactly when nothing was predicted, recall when nothing was there).
    A learning curve that is flat there shows a dead output channel, not an optimum."""
    rows = list(rows)
    return (bool(rows) and all(math.isnan(float(r["precision"])) for r in rows)
            and any(math.isfinite(float(r["recall"])) for r in rows))


def _float(v) -> float:
    return math.nan if v is None else float(v)


def _nanmean(values) -> float:
    x = np.asarray(values, dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


assert set(CASE_METRICS) == set(METRIC_NAMES)
