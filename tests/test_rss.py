"""Region Specific Scaling: geometry pinned with hand-computed indices, sampling statistics, nnU-Net wiring."""
import numpy as np
import pytest
import torch

from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert3DTo2DTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.registry import entries
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.rss import RSSAugmentation
from nnunet_ext.transforms.rss import (PAPER_P_PER_AXIS, RegionSpecificScaling, foreground_band,
                                       rss_source_coordinates)


def forced(ratio, axes=(0,), **kwargs):
    """RSS that always scales ``axes`` by exactly ``ratio``."""
    return RegionSpecificScaling(ratio_range=(ratio, ratio), ratio_sampling="uniform", p_per_axis=1.0,
                                 axes=axes, **kwargs)


def box_sample(shape, box, label=1, channels=1, seed=0):
    """Random positive image (so padding zeros would show) and a segmentation holding one box."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((channels, *shape), generator=g) + 1
    seg = torch.zeros((1, *shape), dtype=torch.int16)
    seg[(0, *box)] = label
    return image, seg


def run(transform, image, seg):
    out = transform(image=image.clone(), segmentation=seg.clone())
    return out["image"], out["segmentation"]


# ---------------------------------------------------------------- 1-D map, hand-computed
def test_source_coordinates_shrink_by_half():
    # length 20, band 6..13 (L=8) -> 4 voxels; growth -4, band centre kept: intermediate starts at output 2.
    # output 0..1 mirror the intermediate (reflect: in[2], in[1]); 2..7 = in[0..5]; band reads 6.5, 8.5, 10.5,
    # 12.5 (pixel centres of 8 -> 4); 12..17 = in[14..19]; 18, 19 mirror back: in[18], in[17].
    expected = [2, 1, 0, 1, 2, 3, 4, 5, 6.5, 8.5, 10.5, 12.5, 14, 15, 16, 17, 18, 19, 18, 17]
    assert rss_source_coordinates(20, (6, 13), 0.5).tolist() == expected


def test_mirrored_band_fragment_appears_when_the_gap_is_longer_than_the_outer_part():
    # band 2..17 (L=16) -> 8 voxels: a gap of 4 on each side, but only 2 outer voxels (0, 1 and 18, 19) to
    # reflect, so the reflection runs on into the band although the band does not touch the border:
    # output 0..2 read band positions 6.5, 4.5, 2.5 (a mirrored slab of the object), 3..4 read in[1], in[0].
    src = rss_source_coordinates(20, (2, 17), 0.5).tolist()
    assert src[:5] == [6.5, 4.5, 2.5, 1.0, 0.0] and src[-3:] == [16.5, 14.5, 12.5]


def test_source_coordinates_enlarge_by_half():
    # band 6..13 (L=8) -> 12 voxels, growth 4: two voxels cropped on each side.
    src = rss_source_coordinates(20, (6, 13), 1.5)
    assert src[:4].tolist() == [2, 3, 4, 5]  # near part shifted by -2
    assert src[16:].tolist() == [14, 15, 16, 17]  # far part shifted by +2, in[18:] cropped
    # band: pixel centres (j + 0.5) * 8/12 - 0.5 + 6, clamped to [6, 13]
    expected_band = [min(max((j + 0.5) * 8 / 12 - 0.5 + 6, 6), 13) for j in range(12)]
    assert src[4:16].tolist() == pytest.approx(expected_band)


def test_source_coordinates_ratio_one_is_identity():
    assert rss_source_coordinates(17, (3, 9), 1.0).tolist() == list(range(17))


def test_source_coordinates_reject_bad_band_and_ratio():
    with pytest.raises(ValueError, match="band"):
        rss_source_coordinates(10, (4, 10), 1.2)
    with pytest.raises(ValueError, match="ratio"):
        rss_source_coordinates(10, (4, 6), 0.0)


# ---------------------------------------------------------------- geometry on volumes
def test_box_band_scaled_by_ratio_3d_and_outside_untouched():
    image, seg = box_sample((40, 12, 10), (slice(10, 20), slice(3, 9), slice(2, 7)))
    out_img, out_seg = run(forced(1.3), image, seg)
    # L=10 -> round(13) = 13; growth 3, near side grows by int(3/2)=1: band 10..19 -> 9..21
    rows = torch.nonzero(out_seg[0].flatten(1).any(1)).flatten().tolist()
    assert rows == list(range(9, 22))
    assert out_seg.shape == seg.shape and out_img.shape == image.shape
    # cross-section of the box unchanged (no scaling along the other axes)
    assert torch.equal(out_seg[0, 15], seg[0, 15])
    # near part shifted by one (in[0] cropped), far part by +2 (in[38:] cropped): bit-identical copies
    assert torch.equal(out_img[:, 0:9], image[:, 1:10])
    assert torch.equal(out_img[:, 22:40], image[:, 20:38])


def test_shrink_mirror_pads_and_introduces_no_zeros():
    image, seg = box_sample((40, 6, 5), (slice(10, 20), slice(1, 5), slice(1, 4)))
    out_img, out_seg = run(forced(0.5), image, seg)
    # L=10 -> 5, growth -5, near side moves in by 2: band -> 12..16
    rows = torch.nonzero(out_seg[0].flatten(1).any(1)).flatten().tolist()
    assert rows == list(range(12, 17))
    assert torch.equal(out_img[:, 2:12], image[:, 0:10])  # near part
    assert torch.equal(out_img[:, 17:37], image[:, 20:40])  # far part
    # gaps: reflect of the re-attached line (hand-computed above the band: in[2], in[1]; below: in[38..36])
    assert torch.equal(out_img[:, [0, 1]], image[:, [2, 1]])
    assert torch.equal(out_img[:, [37, 38, 39]], image[:, [38, 37, 36]])
    assert out_img.min() >= 1  # input is in [1, 2): mirror padding, not zero padding


def test_enlargement_crops_back_to_original_shape_2d():
    image, seg = box_sample((30, 24), (slice(5, 25), slice(8, 16)))
    out_img, out_seg = run(forced(1.5, axes=(1,)), image, seg)
    assert out_img.shape == (1, 30, 24) and out_seg.shape == (1, 30, 24)
    # axis 1: band 8..15 (L=8) -> 12, growth 4: band 6..17; near part in[2:8] at 0..5, far in[16:22] at 18..23
    cols = torch.nonzero(out_seg[0].any(0)).flatten().tolist()
    assert cols == list(range(6, 18))
    assert torch.equal(out_img[:, :, 0:6], image[:, :, 2:8])
    assert torch.equal(out_img[:, :, 18:24], image[:, :, 16:22])


def test_band_is_global_over_all_slices():
    # two boxes in different slices: the band along axis 0 spans both (4..7 and 14..15 -> 4..15)
    seg = torch.zeros((1, 20, 8, 8), dtype=torch.int16)
    seg[0, 4:8, 1:3, 1:3] = 1
    seg[0, 14:16, 5:7, 5:7] = 1
    assert foreground_band(seg[0] > 0, 0) == (4, 15)
    params = forced(1.25).get_parameters(image=torch.zeros(1, 20, 8, 8), segmentation=seg)
    assert params["steps"][0].band == (4, 15)


def test_image_and_segmentation_stay_aligned():
    g = torch.Generator().manual_seed(3)
    blob = torch.nn.functional.avg_pool3d(torch.rand((1, 1, 24, 20, 16), generator=g), 5, 1, 2)[0]
    seg = (blob > blob.mean()).to(torch.int16)
    transform = RegionSpecificScaling(p_per_axis=1.0)
    for seed in range(5):
        np.random.seed(seed)
        out_img, out_seg = run(transform, seg.float(), seg)
        exact = (out_img == 0) | (out_img == 1)
        assert torch.equal((out_img > 0.5)[exact], (out_seg > 0)[exact])
        mismatch = ((out_img > 0.5) != (out_seg > 0)).float().mean().item()
        assert mismatch < 0.02  # only interpolated boundary voxels may tie / disagree
        assert not torch.equal(out_seg, seg)  # it did do something


def test_no_foreground_is_identity():
    image, _ = box_sample((16, 12, 10), (slice(0, 0),) * 3)
    seg = torch.zeros((1, 16, 12, 10), dtype=torch.int16)
    seg[0, :3] = -1  # nnU-Net's 'outside the image' is not foreground
    transform = RegionSpecificScaling(p_per_axis=1.0, ratio_range=(0.5, 2.0))
    out_img, out_seg = run(transform, image, seg)
    assert torch.equal(out_img, image) and torch.equal(out_seg, seg)


def test_label_values_copied_exactly_and_ignore_label_not_foreground():
    seg = torch.zeros((1, 40, 8, 8), dtype=torch.int16)
    seg[0, :4] = -1
    seg[0, 10:20, 2:6, 2:6] = 1
    seg[0, 14:17, 3:5, 3:5] = 2
    seg[0, 30:36] = 3  # ignore label: must not widen the band
    image = seg.float()
    transform = forced(1.5, ignore_label=3)
    out_img, out_seg = run(transform, image, seg)
    assert out_seg.dtype == torch.int16 and set(out_seg.unique().tolist()) == {-1, 0, 1, 2, 3}
    # band 10..19 -> 15 voxels at 8..22; ignore block shifted by +3 unscaled: 33..38
    assert torch.nonzero((out_seg[0] == 3).flatten(1).any(1)).flatten().tolist() == list(range(33, 39))
    assert torch.nonzero((out_seg[0] > 0).flatten(1).any(1) & ~(out_seg[0] == 3).flatten(1).any(1)
                         ).flatten().tolist() == list(range(8, 23))


def test_foreground_labels_choose_the_band():
    seg = torch.zeros((1, 40, 6, 6), dtype=torch.int16)
    seg[0, 10:20] = 2
    seg[0, 30:35] = 1
    image = torch.zeros(1, 40, 6, 6)
    only_two = forced(1.5, foreground_labels=(2,)).get_parameters(image=image, segmentation=seg)
    both = forced(1.5).get_parameters(image=image, segmentation=seg)
    assert only_two["steps"][0].band == (10, 19)
    assert both["steps"][0].band == (10, 34)
    _, out_seg = run(forced(1.5, foreground_labels=(2,)), image, seg)
    # label 1 lies outside label 2's band: moved by +3 (growth 5, far side takes 3), length kept 5
    assert torch.nonzero((out_seg[0] == 1).flatten(1).any(1)).flatten().tolist() == list(range(33, 38))


def test_axes_are_applied_in_sequence_on_the_transformed_foreground():
    seg = torch.zeros((1, 20, 20), dtype=torch.int16)
    seg[0, 8:12, 8:12] = 1
    seg[0, 0, 18] = 1  # in row 0: enlarging rows 0..11 (L=12 -> 18) pushes it out of the image
    params = forced(1.5, axes=(0, 1)).get_parameters(image=torch.zeros(1, 20, 20), segmentation=seg)
    assert [s.band for s in params["steps"]] == [(0, 11), (8, 11)]  # column 18 no longer counts


def test_multiple_channels_share_the_geometry():
    image, seg = box_sample((30, 10, 8), (slice(8, 18), slice(2, 8), slice(2, 6)), channels=3)
    seg = torch.cat([seg, (seg * 2)], 0)  # second seg channel, e.g. the cascade's previous stage
    transform = RegionSpecificScaling(p_per_axis=1.0)
    np.random.seed(1)
    params = transform.get_parameters(image=image, segmentation=seg)
    assert len(params["steps"]) == 3
    out = transform.apply({"image": image.clone(), "segmentation": seg.clone()}, **params)
    for c in range(3):
        alone = transform.apply({"image": image[c:c + 1].clone(), "segmentation": seg[:1].clone()}, **params)
        assert torch.equal(out["image"][c:c + 1], alone["image"])
    assert torch.equal(out["segmentation"][1], out["segmentation"][0] * 2)


# ---------------------------------------------------------------- sampling
def test_per_axis_probability_matches_paper():
    assert PAPER_P_PER_AXIS == pytest.approx(0.2063, abs=1e-4)
    seg = torch.ones((1, 3, 3, 3), dtype=torch.int16)
    transform = RegionSpecificScaling()
    np.random.seed(0)
    n = 4000
    counts = np.zeros(3)
    any_axis = 0
    for _ in range(n):
        axes = [s.axis for s in transform.get_parameters(segmentation=seg)["steps"]]
        counts[axes] += 1
        any_axis += bool(axes)
    # binomial sd: sqrt(0.2063 * 0.7937 / 4000) = 0.0064 per axis; 0.0079 for 'at least one'; 4 sd
    assert np.all(np.abs(counts / n - 0.2063) < 0.026)
    assert abs(any_axis / n - 0.5) < 0.032


def test_ratio_sampling_split_and_uniform():
    np.random.seed(0)
    split = RegionSpecificScaling()
    ratios = np.array([split.draw_ratio() for _ in range(4000)])
    assert ratios.min() >= 2 / 3 and ratios.max() <= 3 / 2
    assert abs((ratios < 1).mean() - 0.5) < 0.04  # half shrink, half enlarge
    assert abs(ratios[ratios < 1].mean() - 5 / 6) < 0.01  # U[2/3, 1]
    assert abs(ratios[ratios >= 1].mean() - 5 / 4) < 0.01  # U[1, 3/2]
    uniform = RegionSpecificScaling(ratio_sampling="uniform", ratio_range=(0.5, 2.0))
    ratios = np.array([uniform.draw_ratio() for _ in range(4000)])
    assert abs(ratios.mean() - 1.25) < 0.03 and ratios.min() >= 0.5 and ratios.max() <= 2.0


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    ({"ratio_range": (1.5, 0.5)}, "ratio_range"),
    ({"ratio_range": (0.8, 0.9)}, "split"),
    ({"p_per_axis": 1.5}, "p_per_axis"),
    ({"ratio_sampling": "gauss"}, "ratio_sampling"),
    ({"axes": (0, 0)}, "axes"),
    ({"foreground_labels": (0, 1)}, "foreground_labels"),
])
def test_bad_configuration_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegionSpecificScaling(**kwargs)


def test_bad_data_is_named():
    seg = torch.zeros((1, 8, 8), dtype=torch.int16)
    with pytest.raises(ValueError, match="segmentation"):
        RegionSpecificScaling()(image=torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="spatial shape"):
        RegionSpecificScaling()(image=torch.zeros(1, 8, 9), segmentation=seg)
    with pytest.raises(ValueError, match="floating-point"):
        RegionSpecificScaling()(image=torch.zeros(1, 8, 8, dtype=torch.int16), segmentation=seg)
    with pytest.raises(ValueError, match="axes"):
        RegionSpecificScaling(axes=(2,))(image=torch.zeros(1, 8, 8), segmentation=seg)


def test_registered_as_transform():
    assert "RegionSpecificScaling" in [e.name for e in entries("transform")]


# ---------------------------------------------------------------- nnU-Net wiring
ROTATION = (-np.pi / 6, np.pi / 6)


class RSSTrainer(RSSAugmentation, ExtTrainer):
    pass


def pipeline_of(cls, dummy_2d=False, **kwargs):
    # nnU-Net calls it through the instance; no plans needed for that
    trainer = cls.__new__(cls)
    return trainer.get_training_transforms((32, 32, 32), ROTATION, None, (0, 1, 2), dummy_2d,
                                           foreground_labels=[1, 2], **kwargs)


def test_mixin_inserts_rss_before_spatial_transform():
    base = [type(t) for t in pipeline_of(nnUNetTrainer).transforms]
    ours = pipeline_of(RSSTrainer).transforms
    assert [type(t) for t in ours[1:]] == base
    assert isinstance(ours[0], RegionSpecificScaling) and isinstance(ours[1], SpatialTransform)
    assert ours[0].ratio_range == pytest.approx((2 / 3, 3 / 2)) and \
        ours[0].p_per_axis == pytest.approx(0.2063, abs=1e-4)
    assert ours[0].foreground_labels == (1, 2)
    dummy = pipeline_of(RSSTrainer, dummy_2d=True).transforms
    assert isinstance(dummy[0], RegionSpecificScaling) and isinstance(dummy[1], Convert3DTo2DTransform)


def test_mixin_class_attributes_configure_rss_and_cooperate():
    class Marker(RegionSpecificScaling):
        pass

    class OtherAugmentation:
        @classmethod
        def edit_training_transforms(cls, pipeline, args):
            pipeline = super().edit_training_transforms(pipeline, args)
            pipeline.transforms.append(Marker())
            return pipeline

    class Narrow(RSSAugmentation, OtherAugmentation, ExtTrainer):
        rss_ratio_range = (0.8, 1.25)
        rss_p_per_axis = 0.5
        rss_foreground_labels = (2,)

    transforms = pipeline_of(Narrow, ignore_label=3).transforms
    rss = transforms[0]
    assert rss.ratio_range == (0.8, 1.25) and rss.p_per_axis == 0.5
    assert rss.foreground_labels == (2,) and rss.ignore_label == 3
    assert isinstance(transforms[-1], Marker)


def test_mixin_refuses_a_trainer_without_the_hook():
    # on nnU-Net's own trainer edit_training_transforms is never called: RSS would silently not run
    with pytest.raises(TypeError, match="RSSAugmentation needs ExtTrainer"):
        type("OnBareNnUNet", (RSSAugmentation, nnUNetTrainer), {})


def test_full_nnunet_pipeline_runs_with_rss():
    pipeline = pipeline_of(RSSTrainer)
    pipeline.transforms[0].p_per_axis = 1.0
    image, seg = box_sample((40, 40, 40), (slice(12, 28), slice(15, 25), slice(10, 30)))
    seg[0, :, :, :3] = -1
    np.random.seed(0)
    out = pipeline(image=image, segmentation=seg)
    assert out["image"].shape == (1, 32, 32, 32) and out["segmentation"].shape == (1, 32, 32, 32)
    assert set(out["segmentation"].unique().tolist()) <= {0, 1}


def test_the_card_name_es_unet_dwd_trainer_is_the_full_method_with_rss():
    """`-tr ESUNetDWDTrainer` (the name users type) trains ES-UNet + DWD + RSS; Table 5's '+DWD' row without RSS
    is `ESUNetDWDOnlyTrainer`. Both build the DWD + focal loss; only the full method scales regions."""
    from nnunet_ext.training.dwd import DWDFocalLoss
    from nnunet_ext_trainers.es_unet_trainers import ESUNetDWDOnlyTrainer, ESUNetDWDRSSTrainer, ESUNetDWDTrainer

    full, dwd_only = pipeline_of(ESUNetDWDTrainer).transforms, pipeline_of(ESUNetDWDOnlyTrainer).transforms
    assert isinstance(full[0], RegionSpecificScaling) and full[0].foreground_labels == (1, 2)
    assert not any(isinstance(t, RegionSpecificScaling) for t in dwd_only)
    assert [type(t) for t in full] == [type(t) for t in pipeline_of(ESUNetDWDRSSTrainer).transforms]
    for cls in (ESUNetDWDTrainer, ESUNetDWDOnlyTrainer):
        assert cls.build_segmentation_loss is DWDFocalLoss.build_segmentation_loss
