"""Slice-box detector: view geometry, combination of three 2D boxes, and learning a trivial box."""
import numpy as np
import pytest
import torch

from nnunet_ext.cascade.detector import (DetectorConfig, DetectorSample, SliceBoxDetector, combine_view_boxes,
                                         intervals_from_logits, interval_targets, mean_box_iou,
                                         preprocessed_box_to_raw, train_detector, view_boxes_from_box,
                                         volume_views)
from nnunet_ext.cascade.roi import Box

# shape (Z, Y, X) = (10, 20, 40); rows: view 0 sees (y, x), view 1 (z, x), view 2 (z, y)
HAND_BOXES = np.array([[0.10, 0.25, 0.50, 0.50],
                       [0.20, 0.20, 0.60, 0.60],
                       [0.30, 0.20, 0.50, 0.40]])


def test_union_combination_by_hand():
    # z: views 1, 2 -> [min(.2, .3), max(.6, .5)] = [.2, .6] * 10 = [2, 6)
    # y: views 0, 2 -> [.1, .5] * 20 = [2, 10);  x: views 0, 1 -> [.2, .6] * 40 = [8, 24)
    assert combine_view_boxes(HAND_BOXES, (10, 20, 40), "union") == Box((2, 2, 8), (6, 10, 24))


def test_mean_combination_by_hand():
    # z: [(.2+.3)/2, (.6+.5)/2] = [.25, .55] * 10 = [2.5, 5.5] -> floor/ceil [2, 6)
    # y: [.15, .45] * 20 = [3, 9);  x: [.225, .55] * 40 = [9, 22)
    assert combine_view_boxes(HAND_BOXES, (10, 20, 40), "mean") == Box((2, 3, 9), (6, 9, 22))


def test_projected_boxes_recombine_to_the_same_box_with_either_rule():
    box, shape = Box((1, 5, 7), (4, 13, 30)), (10, 20, 40)
    views = view_boxes_from_box(box, shape)
    np.testing.assert_allclose(views[0], [5 / 20, 7 / 40, 13 / 20, 30 / 40])
    np.testing.assert_allclose(views[2], [1 / 10, 5 / 20, 4 / 10, 13 / 20])
    assert combine_view_boxes(views, shape, "union") == box
    assert combine_view_boxes(views, shape, "mean") == box


def test_combination_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        combine_view_boxes(np.zeros((2, 4)), (4, 4, 4))
    with pytest.raises(ValueError, match="combine rule"):
        combine_view_boxes(HAND_BOXES, (4, 4, 4), "max")


def test_views_are_mean_projections_or_centre_slices():
    volume = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    mean = volume_views(volume, "mean")
    np.testing.assert_allclose(mean[0], volume.mean(axis=1))
    assert [v.shape for v in mean] == [(1, 3, 4), (1, 2, 4), (1, 2, 3)]
    centre = volume_views(volume, "centre")
    np.testing.assert_array_equal(centre[1], volume[:, :, 1, :])
    with pytest.raises(ValueError, match=r"\(C, Z, Y, X\)"):
        volume_views(volume[0], "mean")


def test_preprocessed_box_maps_back_through_resampling_crop_and_transpose():
    # preprocessed (transposed) array 8 x 20 x 20 resampled from a 4 x 10 x 20 crop that started at (1, 2, 3);
    # transpose_forward (2, 0, 1) -> transpose_backward (1, 2, 0)
    props = {"shape_after_cropping_and_before_resampling": (4, 10, 20),
             "bbox_used_for_cropping": [[1, 5], [2, 12], [3, 23]], "shape_before_cropping": (6, 14, 30)}
    box = preprocessed_box_to_raw(Box((2, 4, 0), (6, 10, 20)), (8, 20, 20), props, (1, 2, 0))
    # transposed raw: axis0 [2/2+1, 6/2+1] = [2, 4), axis1 [4/2+2, 10/2+2] = [4, 7), axis2 [0+3, 20+3] = [3, 23)
    # back to raw order (axes 1, 2, 0 of the transposed): ([4, 7), [3, 23), [2, 4))
    assert box == Box((4, 3, 2), (7, 23, 4))


def _cuboid_samples(n, rng, shape=(16, 32, 32)):
    samples = []
    for _ in range(n):
        size = rng.integers([4, 8, 8], [9, 17, 17])
        start = [int(rng.integers(0, s - z + 1)) for s, z in zip(shape, size)]
        box = Box(tuple(start), tuple(a + int(z) for a, z in zip(start, size)))
        volume = rng.normal(0, 0.2, (1, *shape)).astype(np.float32)
        volume[(0, *box.slices)] += 2.0
        samples.append(DetectorSample(volume, box))
    return samples


def test_detector_learns_a_bright_cuboid_in_a_few_steps():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    train, held_out = _cuboid_samples(24, rng), _cuboid_samples(6, rng)
    config = DetectorConfig(view_size=32, width=8, steps=40, batch_size=8, learning_rate=1e-2)
    untrained = SliceBoxDetector(1, config)
    before = mean_box_iou(untrained, held_out)
    detector = train_detector(train, 1, config)
    after = mean_box_iou(detector, held_out)
    assert after > 0.8, (before, after)
    assert after > before + 0.3


def test_interval_masks_and_their_spans_by_hand():
    # S = 8: box [0.25, 0.75) -> centres (i + .5) / 8 inside for i = 2..5
    masks = interval_targets(torch.tensor([[0.25, 0.0, 0.75, 0.5]]), 8)
    np.testing.assert_array_equal(masks[0, 0].numpy(), [0, 0, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(masks[0, 1].numpy(), [1, 1, 1, 1, 0, 0, 0, 0])
    # logits > 0 at 2..4 on axis 0 -> [2/8, 5/8); none on axis 1 -> the argmax (index 6) alone: [6/8, 7/8)
    logits = torch.full((2, 8), -1.0)
    logits[0, 2:5] = 1.0
    logits[1, 6] = -0.5
    np.testing.assert_allclose(intervals_from_logits(logits), [2 / 8, 6 / 8, 5 / 8, 7 / 8])


def test_detector_rejects_wrong_channel_count():
    detector = SliceBoxDetector(2, DetectorConfig(view_size=16, width=4))
    with pytest.raises(ValueError, match="2 channels"):
        detector.predict_box(np.zeros((1, 8, 8, 8), np.float32))
