"""nnunet_ext.evaluation.metrics on hand-made masks, and the benchmark's per-case rows built on it."""
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.benchmark.case_scores import MEAN_CLASS, case_rows
from nnunet_ext.evaluation.metrics import binary_metrics, case_metrics, foreground_classes


def squares():
    """4x4 ground-truth square and the same square shifted one column: 12 of 16 voxels overlap."""
    gt = np.zeros((10, 10), bool)
    gt[2:6, 2:6] = True
    pred = np.zeros((10, 10), bool)
    pred[2:6, 3:7] = True
    return gt, pred


def test_overlap_and_surface_metrics_by_hand():
    gt, pred = squares()
    m = binary_metrics(gt, pred, (1.0, 1.0))
    assert m["dice"] == pytest.approx(2 * 12 / 32)
    assert m["iou"] == pytest.approx(12 / 20)
    assert m["precision"] == pytest.approx(12 / 16) and m["recall"] == pytest.approx(12 / 16)
    assert m["rvd"] == 0.0
    # 12 boundary voxels each side (4x4 minus the 2x2 interior); 6 of them lie on the other boundary and
    # 6 are one voxel away, in both directions: ASSD = 12 / 24, HD95 = 1, all within a 1 mm tolerance
    assert m["assd"] == pytest.approx(0.5)
    assert m["hd95"] == pytest.approx(1.0)
    assert m["nsd"] == pytest.approx(1.0)
    assert binary_metrics(gt, pred, (1.0, 1.0), nsd_tolerance=0.5)["nsd"] == pytest.approx(0.5)


def test_distances_scale_with_spacing():
    gt, pred = squares()
    m = binary_metrics(gt, pred, (2.0, 2.0), nsd_tolerance=1.0)
    assert m["hd95"] == pytest.approx(2.0) and m["assd"] == pytest.approx(1.0)
    assert m["nsd"] == pytest.approx(0.5)  # the 2 mm misses are now outside the 1 mm tolerance
    assert m["dice"] == pytest.approx(0.75)  # overlap does not depend on spacing


def test_relative_volume_difference_sign():
    gt, _ = squares()
    bigger = np.zeros_like(gt)
    bigger[2:6, 2:8] = True  # 24 voxels for 16
    assert binary_metrics(gt, bigger, (1.0, 1.0))["rvd"] == pytest.approx(0.5)


def test_empty_mask_conventions():
    empty = np.zeros((6, 6), bool)
    some = np.zeros((6, 6), bool)
    some[1:3, 1:3] = True
    both = binary_metrics(empty, empty, (1.0, 1.0))
    assert both == dict(dice=1.0, iou=1.0, hd95=0.0, assd=0.0, nsd=1.0, rvd=0.0, precision=1.0, recall=1.0)
    missed = binary_metrics(some, empty, (1.0, 1.0))  # nothing predicted
    assert missed["dice"] == 0.0 and missed["recall"] == 0.0 and missed["rvd"] == -1.0
    assert math.isnan(missed["precision"]) and math.isnan(missed["hd95"]) and missed["nsd"] == 0.0
    hallucinated = binary_metrics(empty, some, (1.0, 1.0))  # nothing to find
    assert hallucinated["dice"] == 0.0 and hallucinated["precision"] == 0.0
    assert math.isnan(hallucinated["recall"]) and math.isnan(hallucinated["rvd"]) and math.isnan(hallucinated["assd"])


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(np.zeros((3, 3)), np.zeros((3, 4)), (1, 1))
    with pytest.raises(ValueError, match="spacing"):
        binary_metrics(np.zeros((3, 3)), np.zeros((3, 3)), (1, 1, 1))


def test_case_metrics_regions_and_ignore_label():
    gt = np.array([[0, 1, 1, 2], [0, 1, 2, 2], [3, 3, 0, 0]])
    pred = np.array([[0, 1, 2, 2], [0, 1, 1, 2], [1, 2, 0, 0]])  # row 2 is ignored in the ground truth
    classes = foreground_classes({"labels": {"background": 0, "organ": [1, 2], "lesion": 2, "ignore": 3}})
    assert classes == {"organ": (1, 2), "lesion": 2}
    m = case_metrics(gt, pred, classes, (1.0, 1.0), ignore_label=3)
    assert m["organ"]["dice"] == pytest.approx(1.0)  # the region {1, 2} is identical outside the ignored row
    assert m["lesion"]["dice"] == pytest.approx(2 * 2 / 6)  # gt lesion 3 voxels, pred 3, overlap 2


def _write(array, path, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_case_rows_take_dice_from_nnunet_summary_and_average_classes(tmp_path):
    gt = np.zeros((4, 10, 10), np.uint8)
    gt[:, 2:6, 2:6] = 1
    pred = np.zeros_like(gt)
    pred[:, 2:6, 3:7] = 1
    _write(gt, tmp_path / "c1.nii.gz", spacing=(1.0, 1.0, 3.0))  # SimpleITK order x, y, z
    _write(pred, tmp_path / "p1.nii.gz", spacing=(1.0, 1.0, 3.0))
    # nnU-Net writes NaN Dice for a class absent from both masks (lesion here); the summary keys are its own
    summary = {"metric_per_case": [{"reference_file": str(tmp_path / "c1.nii.gz"),
                                    "prediction_file": str(tmp_path / "p1.nii.gz"),
                                    "metrics": {"1": {"Dice": 0.75, "IoU": 0.6}, "2": {"Dice": None, "IoU": None}}}],
               "mean": {"1": {}, "2": {}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    dataset_json = {"labels": {"background": 0, "organ": 1, "lesion": 2}, "file_ending": ".nii.gz",
                    "channel_names": {"0": "CT"}}
    rows = {r["class"]: r for r in case_rows(tmp_path / "summary.json", dataset_json)}
    assert rows["organ"]["case"] == "c1" and rows["organ"]["dice"] == 0.75 and rows["organ"]["iou"] == 0.6
    # surface metrics come from metrics.py on the arrays in (z, y, x) order with spacing (3, 1, 1)
    ours = binary_metrics(gt == 1, pred == 1, (3.0, 1.0, 1.0))
    assert ours["assd"] != binary_metrics(gt == 1, pred == 1, (1.0, 1.0, 3.0))["assd"]  # the order matters
    assert rows["organ"]["assd"] == pytest.approx(ours["assd"]) and rows["organ"]["hd95"] == pytest.approx(1.0)
    assert math.isnan(rows["lesion"]["dice"]) and rows["lesion"]["hd95"] == 0.0
    assert rows[MEAN_CLASS]["dice"] == 0.75  # NaN classes drop out of the per-case mean
    assert rows[MEAN_CLASS]["assd"] == pytest.approx(ours["assd"] / 2)  # (organ + 0.0) / 2


def test_case_rows_reject_a_class_count_mismatch(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"metric_per_case": [{}], "mean": {"1": {}}}))
    with pytest.raises(ValueError, match="classes"):
        case_rows(tmp_path / "summary.json", {"labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz"})
