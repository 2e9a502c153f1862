"""End to end, real nnU-Net commands: both two-stage pipelines from raw images to evaluated predictions.

One module-scoped workspace keeps this small: the source phantom and both stage-2 crop datasets are planned
and preprocessed by one nnUNetv2_plan_and_preprocess call, the three models are trained once, and stage 1's
segmentations from the cascade run are reused by the no-region test.
organ -> lesion cascade: nnUNetv2_train stage 1 -> `cascade prepare` -> nnUNetv2_train stage 2 ->
predict_cascade (nnUNetv2_predict twice, LCC, paste back) -> nnUNetv2_evaluate_folder.
detector pipeline: detector trained on nnU-Net's preprocessed data -> stage-2 crops (all labels) ->
StageSkippingSegmentorTrainer -> `nnunet-ext cascade predict --detector` -> evaluation; and stage-2 training
crops from the detector's boxes (`cascade prepare --region-source detector`).
"""
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from e2e_utils import NnUNetWorkspace
from nnunet_ext.cascade.compare import (BENCHMARK_FOLDER, CASES_FILE, ComparisonSettings, compare_pipelines,
                                        pipelines_section)
from nnunet_ext.cascade.detector import DetectorConfig, detect_raw_case, load_detector, train_detector_from_preprocessed
from nnunet_ext.cascade.predict import NnUNetModel, predict_cascade
from nnunet_ext.cascade.prepare import CascadeSettings, prepare_stage2_dataset
from nnunet_ext.cascade.roi import bounding_box, box_iou, box_of_crop, expand_box, margin_in_voxels

pytestmark = pytest.mark.e2e

SOURCE, CASCADE, DETECTOR_STAGE2, DETECTOR_CROPS = 941, 942, 943, 944
TRAINER = "nnUNetTrainer_ep1it2"
SEGMENTOR_TRAINER = "StageSkippingSegmentorTrainer_ep1it2"
CONFIG = "3d_fullres"
TEST_CASES = {"cascadee2e_005", "cascadee2e_006"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Source phantom (5 training + 2 test cases of 16x32x32), both stage-2 datasets, three trained models."""
    ws = NnUNetWorkspace(tmp_path_factory.mktemp("cascade"))
    ws.generate(SOURCE, name="CascadeE2E", num_cases=5, shape=(16, 32, 32), num_test_cases=2, seed=2)
    # stage-2 datasets come from the ground truth, so they need nothing trained first
    prepare_stage2_dataset(ws.raw, SOURCE, CASCADE,
                           settings=CascadeSettings(target="lesion", margin=4.0, margin_unit="mm", organ_channel=True))
    prepare_stage2_dataset(ws.raw, SOURCE, DETECTOR_STAGE2,
                           settings=CascadeSettings(target="all", margin=4.0, organ_channel=False))
    ws.run("nnUNetv2_plan_and_preprocess", "-d", SOURCE, CASCADE, DETECTOR_STAGE2, "-c", CONFIG,
           "--verify_dataset_integrity", "-np", 1, "-npfp", 1, env={"nnUNet_n_proc_DA": "1"})
    ws.train(SOURCE, CONFIG, 0, TRAINER)
    ws.train(CASCADE, CONFIG, 0, TRAINER)
    ws.train(DETECTOR_STAGE2, CONFIG, 0, SEGMENTOR_TRAINER)
    return ws


def _test_dirs(ws):
    raw = ws.raw / ws.dataset_name(SOURCE)
    return raw / "imagesTs", raw / "labelsTs"


@pytest.fixture(scope="module")
def cascade_run(ws, tmp_path_factory):
    """The organ -> lesion cascade on the test images; its work folder (stage 1's segmentations) is kept."""
    images, _ = _test_dirs(ws)
    root = tmp_path_factory.mktemp("cascade_run")
    result = predict_cascade(ws, images, root / "pred", NnUNetModel(CASCADE, CONFIG, TRAINER),
                             stage1=NnUNetModel(SOURCE, CONFIG, TRAINER), work_dir=root / "work", keep_work=True)
    return result, root


def test_organ_lesion_cascade_from_raw_images_to_evaluation(ws, cascade_run):
    images, labels = _test_dirs(ws)
    result, root = cascade_run
    meta = json.loads((ws.raw / ws.dataset_name(CASCADE) / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "noNorm"} and meta["labels"] == {"background": 0, "lesion": 1}
    assert set(result.boxes) == TEST_CASES
    for case, box in result.boxes.items():
        reference = sitk.ReadImage(str(images / f"{case}_0000.nii.gz"))
        pred_image = sitk.ReadImage(str(root / "pred" / f"{case}.nii.gz"))
        assert pred_image.GetOrigin() == reference.GetOrigin() and pred_image.GetSpacing() == reference.GetSpacing()
        pred = sitk.GetArrayFromImage(pred_image)
        assert set(np.unique(pred)) <= {0, 1, 2}
        if box is not None:  # lesions only inside the crop
            outside = np.ones(pred.shape, bool)
            outside[box.slices] = False
            assert not (pred[outside] == 2).any()
    assert result.seconds > 0 and result.peak_rss_mib > 0
    summary = ws.evaluate(SOURCE, labels, root / "pred")
    assert set(summary["mean"]) == {"1", "2"}
    assert all(0.0 <= v["Dice"] <= 1.0 or np.isnan(v["Dice"]) for v in summary["mean"].values())


def test_stage1_without_foreground_gives_empty_prediction_and_warning(ws, cascade_run, tmp_path):
    images, _ = _test_dirs(ws)
    stage1 = tmp_path / "stage1"
    shutil.copytree(cascade_run[1] / "work" / "stage1_output", stage1)  # stage 1 of the cascade run, not rerun
    empty_case = "cascadee2e_005"
    seg = sitk.ReadImage(str(stage1 / f"{empty_case}.nii.gz"))
    blank = sitk.GetImageFromArray(np.zeros(sitk.GetArrayFromImage(seg).shape, np.uint8))
    blank.CopyInformation(seg)
    sitk.WriteImage(blank, str(stage1 / f"{empty_case}.nii.gz"))
    with pytest.warns(UserWarning, match="found no region"):
        result = predict_cascade(ws, images, tmp_path / "pred", NnUNetModel(CASCADE, CONFIG, TRAINER),
                                 stage1=NnUNetModel(SOURCE, CONFIG, TRAINER), stage1_predictions=stage1)
    assert empty_case in result.empty_cases and result.boxes[empty_case] is None
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "pred" / f"{empty_case}.nii.gz"))).any()
    assert result.cost["region"].seconds == 0  # stage 1 was read, not run


def test_comparison_scores_every_held_out_case(ws, tmp_path):
    """What `benchmark --pipelines` runs keeps one row per (pipeline, case, class), and the report tests them.

    Reuses the module's trained models (single stage and cascade stage 2; the same crop settings, so re-preparing
    the stage-2 dataset writes the same files)."""
    pipelines = ("single_stage", "cascade")
    settings = ComparisonSettings(trainer=TRAINER, margin=4.0, pipelines=pipelines)
    root = tmp_path / BENCHMARK_FOLDER
    means = compare_pipelines(ws, SOURCE, CASCADE, DETECTOR_STAGE2, settings, output_root=root, log=lambda *_: None)
    cases = json.loads((root / CASES_FILE).read_text())
    assert sorted((r["pipeline"], r["case"], r["class"]) for r in cases) == \
        sorted((p, c, k) for p in pipelines for c in TEST_CASES for k in ("organ", "lesion", "mean"))
    for row in means:  # the table's Dice per class is nnU-Net's mean over the same per-case values
        for cls in ("organ", "lesion"):
            values = [r["dice"] for r in cases if r["pipeline"] == row["pipeline"] and r["class"] == cls]
            expected = np.nanmean(values) if np.isfinite(values).any() else float("nan")
            assert row[f"dice_{cls}"] == pytest.approx(expected, nan_ok=True)
    assert all(r["hd95"] >= 0 or np.isnan(r["hd95"]) for r in cases)
    section = "\n".join(pipelines_section(tmp_path, pipelines, out_dir=tmp_path))
    assert "| **single_stage** (reference) | mean |" in section and "| cascade | lesion |" in section
    assert (tmp_path / "pipeline_cases.csv").read_text().startswith("pipeline,case,class,dice,")


def test_detector_and_stage_skipping_segmentor_pipeline(ws, tmp_path):
    checkpoint, summary = train_detector_from_preprocessed(
        ws.preprocessed, ws.results, SOURCE, CONFIG, config=DetectorConfig(view_size=32, width=8, steps=30),
        log=lambda *_: None)
    # A detector answering "the whole volume" scores the GT box's share of it, 0.15 on these phantoms
    # (11 x 14 x 16 of 16 x 32 x 32); this seeded one measured 0.63 held out, 0.71 / 0.85 on the test cases.
    assert summary["held_out_iou"] and all(0.3 <= v <= 1.0 for v in summary["held_out_iou"].values())
    # stage-2 training crops from the detector's own boxes (the paper tunes its segmentor on detector ROIs)
    crops = prepare_stage2_dataset(ws.raw, SOURCE, DETECTOR_CROPS, detector_checkpoint=checkpoint,
                                   preprocessed_root=ws.preprocessed,
                                   settings=CascadeSettings(target="all", margin=4.0, organ_channel=False,
                                                            region_source="detector"))
    detector, meta = load_detector(checkpoint)
    image_file = ws.raw / ws.dataset_name(SOURCE) / "imagesTr" / "cascadee2e_000_0000.nii.gz"
    full = sitk.ReadImage(str(image_file))
    expected = expand_box(detect_raw_case(detector, meta, [image_file], ws.preprocessed),
                          margin_in_voxels(4.0, tuple(reversed(full.GetSpacing())), "mm"),
                          tuple(reversed(full.GetSize())))
    assert box_of_crop(full, sitk.ReadImage(str(crops / "imagesTr" / "cascadee2e_000_roi0_0000.nii.gz"))) == expected
    weights = torch.load(ws.model_folder(DETECTOR_STAGE2, CONFIG, SEGMENTOR_TRAINER) / "fold_0"
                         / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert any(k.startswith("gates.") for k in weights)  # the stage-skipping segmentor trained, not PlainConvUNet
    images, labels = _test_dirs(ws)
    for case in sorted(TEST_CASES):
        box = detect_raw_case(detector, meta, [images / f"{case}_0000.nii.gz"], ws.preprocessed)
        truth = bounding_box(sitk.GetArrayFromImage(sitk.ReadImage(str(labels / f"{case}.nii.gz"))) > 0)
        assert np.prod(np.subtract(box.stop, box.start)) < np.prod(tuple(reversed(full.GetSize())))
        assert box_iou(box, truth) >= 0.3, (case, box, truth)
    output = ws.run("nnunet-ext", "cascade", "predict", "-i", images, "-o", tmp_path / "pred",
                    "--stage2", DETECTOR_STAGE2, CONFIG, SEGMENTOR_TRAINER, "--detector", checkpoint)
    assert "cascadee2e_005 [[" in output
    summary = ws.evaluate(SOURCE, labels, tmp_path / "pred")
    assert set(summary["mean"]) == {"1", "2"}
