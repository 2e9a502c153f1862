"""Crop / paste-back geometry of the ROI cascade, checked against hand-computed boxes and origins."""
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.cascade.prepare import CascadeSettings, prepare_stage2_dataset, region_box
from nnunet_ext.cascade.roi import (Box, bounding_box, box_iou, box_of_crop, crop_array, crop_image, expand_box,
                                    jitter_box, margin_in_voxels, paste_array)


def test_bounding_box_is_half_open_and_none_when_empty():
    mask = np.zeros((5, 6, 7), bool)
    mask[1, 2, 3] = mask[3, 4, 6] = True
    assert bounding_box(mask) == Box((1, 2, 3), (4, 5, 7))
    assert bounding_box(np.zeros((3, 3, 3))) is None


def test_margin_mm_rounds_up_per_axis_and_voxels_pass_through():
    # 5 mm at (3, 1, 0.8) mm: 5/3 = 1.67 -> 2, 5/1 = 5, 5/0.8 = 6.25 -> 7; 6 mm at 3 mm is exactly 2
    assert margin_in_voxels(5.0, (3.0, 1.0, 0.8), "mm") == (2, 5, 7)
    assert margin_in_voxels(6.0, (3.0, 1.0, 1.0), "mm") == (2, 6, 6)
    assert margin_in_voxels((1, 2, 3), (3.0, 1.0, 1.0), "voxels") == (1, 2, 3)
    with pytest.raises(ValueError, match="unit"):
        margin_in_voxels(1, (1, 1, 1), "cm")
    with pytest.raises(ValueError, match="whole numbers"):
        margin_in_voxels(1.5, (1, 1, 1), "voxels")


def test_expand_clips_at_the_volume_borders():
    box = Box((0, 3, 8), (2, 5, 10))
    assert expand_box(box, (2, 1, 3), (6, 10, 10)) == Box((0, 2, 5), (4, 6, 10))


def test_crop_then_paste_reproduces_the_input_inside_and_fill_outside():
    rng = np.random.default_rng(0)
    volume = rng.integers(1, 9, (6, 7, 8)).astype(np.int16)
    for box in (Box((0, 0, 0), (6, 7, 8)), Box((0, 2, 5), (3, 7, 8)), Box((2, 1, 1), (4, 3, 2))):
        pasted = paste_array(crop_array(volume, box), box, volume.shape)
        np.testing.assert_array_equal(pasted[box.slices], volume[box.slices])
        outside = np.ones(volume.shape, bool)
        outside[box.slices] = False
        assert (pasted[outside] == 0).all()
        assert pasted.sum() == volume[box.slices].sum()


def test_crop_keeps_channel_axes_and_rejects_boxes_outside():
    volume = np.arange(2 * 4 * 4 * 4).reshape(2, 4, 4, 4)
    assert crop_array(volume, Box((1, 1, 1), (3, 2, 4))).shape == (2, 2, 1, 3)
    with pytest.raises(ValueError, match="outside"):
        crop_array(volume, Box((1, 1, 1), (5, 2, 4)))
    with pytest.raises(ValueError, match="does not fit"):
        paste_array(np.zeros((2, 2, 2)), Box((0, 0, 0), (2, 2, 3)), (4, 4, 4))


def _image(shape_zyx, spacing_xyz, origin, direction=None):
    image = sitk.GetImageFromArray(np.arange(np.prod(shape_zyx), dtype=np.float32).reshape(shape_zyx))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_crop_origin_is_the_physical_position_of_the_first_voxel_anisotropic():
    image = _image((10, 12, 14), (0.8, 1.0, 3.0), (-10.0, 20.0, 5.0))
    box = Box((2, 3, 4), (7, 9, 12))  # z, y, x
    crop = crop_image(image, box)
    # origin = origin + index (x, y, z) * spacing: x: -10 + 4*0.8, y: 20 + 3*1, z: 5 + 2*3
    np.testing.assert_allclose(crop.GetOrigin(), (-6.8, 23.0, 11.0))
    assert crop.GetSpacing() == image.GetSpacing()
    assert crop.GetSize() == (8, 6, 5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(crop), sitk.GetArrayFromImage(image)[box.slices])
    assert box_of_crop(image, crop) == box


def test_crop_origin_follows_the_direction_matrix():
    # x axis flipped: the first voxel of the crop lies at origin - 4 * spacing_x along physical x
    flipped = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    image = _image((4, 5, 6), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), flipped)
    box = Box((1, 2, 4), (3, 5, 6))
    crop = crop_image(image, box)
    np.testing.assert_allclose(crop.GetOrigin(), (-8.0, 2.0, 1.0))
    assert crop.GetDirection() == flipped
    assert box_of_crop(image, crop) == box


def test_box_of_crop_rejects_an_origin_off_the_grid():
    image = _image((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    crop = crop_image(image, Box((0, 0, 0), (2, 2, 2)))
    crop.SetOrigin((0.5, 0.0, 0.0))
    with pytest.raises(ValueError, match="voxel grid"):
        box_of_crop(image, crop)


def test_jitter_moves_faces_within_bounds_and_never_empties():
    rng = np.random.default_rng(1)
    box = Box((2, 2, 2), (4, 4, 4))
    for _ in range(200):
        j = jitter_box(box, rng, 2, (6, 6, 6))
        assert all(0 <= a < b <= 6 for a, b in zip(j.start, j.stop))
        assert all(abs(a - b) <= 2 for a, b in zip(j.start, box.start))
    assert jitter_box(box, rng, 0, (6, 6, 6)) == box


def test_box_iou_by_hand():
    # 2x2x2 boxes overlapping in 1x2x2 = 4 voxels: 4 / (8 + 8 - 4) = 1/3
    assert box_iou(Box((0, 0, 0), (2, 2, 2)), Box((1, 0, 0), (3, 2, 2))) == pytest.approx(1 / 3)
    assert box_iou(Box((0, 0, 0), (1, 1, 1)), Box((2, 2, 2), (3, 3, 3))) == 0.0


def test_region_box_is_tight_box_plus_margin_without_rng():
    region = np.zeros((10, 20, 20), bool)
    region[4:6, 8:12, 9:11] = True
    settings = CascadeSettings(margin=3.0, margin_unit="mm").validate()
    # margin 3 mm at (3, 1, 1) mm -> (1, 3, 3) voxels
    assert region_box(region, (3.0, 1.0, 1.0), settings) == Box((3, 5, 6), (7, 15, 14))
    assert region_box(np.zeros_like(region), (3.0, 1.0, 1.0), settings) is None


def test_prepare_writes_crops_with_geometry_labels_and_organ_channel(tmp_path):
    from nnunet_ext.data.phantoms import generate_dataset

    generate_dataset(tmp_path, 11, "Src", num_cases=2, shape=(12, 24, 24), spacing=(3.0, 1.0, 1.0), seed=0)
    settings = CascadeSettings(margin=2, margin_unit="voxels", jitter_voxels=0)
    out = prepare_stage2_dataset(tmp_path, 11, 12, settings=settings)
    src = tmp_path / "Dataset011_Src"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "labelsTr" / "src_000.nii.gz")))
    full = sitk.ReadImage(str(src / "imagesTr" / "src_000_0000.nii.gz"))
    expected = expand_box(bounding_box(labels > 0), (2, 2, 2), labels.shape)
    crop = sitk.ReadImage(str(out / "imagesTr" / "src_000_roi0_0000.nii.gz"))
    assert box_of_crop(full, crop) == expected
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "src_000_roi0.nii.gz")))
    np.testing.assert_array_equal(lesion, (labels[expected.slices] == 2).astype(np.uint8))
    organ = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / "src_000_roi0_0001.nii.gz")))
    np.testing.assert_array_equal(organ, (labels[expected.slices] > 0).astype(np.float32))
    import json
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "noNorm"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["cascade"]["margin"] == 2 and meta["numTraining"] == 2
    with pytest.raises(ValueError, match="own id"):
        prepare_stage2_dataset(tmp_path, 11, 11, settings=settings)


def test_prepare_from_detector_boxes_crops_where_the_detector_points(tmp_path, monkeypatch):
    # the detector stands in with fixed raw-array boxes per case; margin 2 voxels, no jitter:
    # case 0: (1, 3, 4)-(9, 15, 20) -> (0, 1, 2)-(11, 17, 22); case 1 touches the far border -> clipped to (12, 24, 24)
    from nnunet_ext.cascade import detector as detector_module
    from nnunet_ext.data.phantoms import generate_dataset

    generate_dataset(tmp_path, 11, "Src", num_cases=2, shape=(12, 24, 24), spacing=(3.0, 1.0, 1.0), seed=0)
    detected = {"src_000": Box((1, 3, 4), (9, 15, 20)), "src_001": Box((5, 10, 10), (12, 23, 24))}
    calls = []

    def fake_detect(detector, meta, files, preprocessed_root):
        calls.append((meta["name"], str(preprocessed_root)))
        return detected[files[0].name[:-len("_0000.nii.gz")]]

    monkeypatch.setattr(detector_module, "load_detector", lambda checkpoint: ("net", {"name": str(checkpoint)}))
    monkeypatch.setattr(detector_module, "detect_raw_case", fake_detect)
    settings = CascadeSettings(target="all", organ_channel=False, margin=2, margin_unit="voxels",
                               region_source="detector")
    out = prepare_stage2_dataset(tmp_path, 11, 12, settings=settings, detector_checkpoint="det.pt",
                                 preprocessed_root=tmp_path / "pre")
    assert out.name == "Dataset012_SrcStage2AllDetector" and calls == [("det.pt", str(tmp_path / "pre"))] * 2
    src = tmp_path / "Dataset011_Src"
    for case, expected in (("src_000", Box((0, 1, 2), (11, 17, 22))), ("src_001", Box((3, 8, 8), (12, 24, 24)))):
        full = sitk.ReadImage(str(src / "imagesTr" / f"{case}_0000.nii.gz"))
        assert box_of_crop(full, sitk.ReadImage(str(out / "imagesTr" / f"{case}_roi0_0000.nii.gz"))) == expected
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "labelsTr" / f"{case}.nii.gz")))
        crop_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / f"{case}_roi0.nii.gz")))
        np.testing.assert_array_equal(crop_labels, labels[expected.slices])  # target 'all': source labels
    import json
    assert json.loads((out / "dataset.json").read_text())["cascade"]["region_source"] == "detector"


def test_detector_region_source_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="target 'all' and one copy"):
        CascadeSettings(target="lesion", region_source="detector").validate()
    with pytest.raises(ValueError, match="target 'all' and one copy"):
        CascadeSettings(target="all", organ_channel=False, copies=2, region_source="detector").validate()
    with pytest.raises(ValueError, match="region source must be one of"):
        CascadeSettings(region_source="atlas").validate()
    with pytest.raises(ValueError, match="needs the detector checkpoint"):
        prepare_stage2_dataset(tmp_path, 11, 12, settings=CascadeSettings(target="all", organ_channel=False,
                                                                           region_source="detector"))
    with pytest.raises(ValueError, match="region source is 'ground_truth'"):
        prepare_stage2_dataset(tmp_path, 11, 12, detector_checkpoint="det.pt")


def test_grouped_splits_keep_every_copy_of_a_case_on_one_side():
    from nnunet_ext.cascade.prepare import grouped_splits
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    by_case = {f"c{i}": [f"c{i}_roi0", f"c{i}_roi1", f"c{i}_roi2"] for i in range(6)}
    splits = grouped_splits(by_case)
    nnunet = generate_crossval_split(sorted(by_case), seed=12345, n_splits=5)  # the same draw over cases
    assert len(splits) == 5
    for fold, ours in zip(nnunet, splits):
        assert ours["val"] == sorted(f"{c}_roi{k}" for c in fold["val"] for k in range(3))
        assert not {i.rsplit("_roi", 1)[0] for i in ours["train"]} & {i.rsplit("_roi", 1)[0] for i in ours["val"]}
        assert len(ours["train"]) + len(ours["val"]) == 18
    assert len(grouped_splits({"a": ["a_roi0"], "b": ["b_roi0"]})) == 2  # fewer cases than folds: one fold each
    with pytest.raises(ValueError, match="at least 2 source cases"):
        grouped_splits({"a": ["a_roi0", "a_roi1"]})


def test_prepare_with_copies_writes_a_split_grouped_by_source_case(tmp_path):
    import json

    from nnunet_ext.data.phantoms import generate_dataset

    generate_dataset(tmp_path, 11, "Src", num_cases=3, shape=(12, 24, 24), spacing=(3.0, 1.0, 1.0), seed=0)
    out = prepare_stage2_dataset(tmp_path, 11, 12, settings=CascadeSettings(copies=2))
    splits = json.loads((out / "splits_final.json").read_text())
    # 3 source cases -> 3 folds, each validating both copies of one case and training on the other four crops
    assert [s["val"] for s in splits] == [[f"src_00{i}_roi0", f"src_00{i}_roi1"] for i in
                                          [int(s["val"][0][6]) for s in splits]]
    assert sorted(v for s in splits for v in s["val"]) == sorted(f"src_00{i}_roi{k}" for i in range(3) for k in (0, 1))
    assert all(len(s["train"]) == 4 for s in splits)
    single = prepare_stage2_dataset(tmp_path, 11, 13, settings=CascadeSettings())
    assert not (single / "splits_final.json").exists()  # one crop per case: nnU-Net's own split is already grouped
