"""STS-Net amplification: statistics (Eq. 1-2), operations, amplified sampling, cache. Numbers worked by hand."""
import json
import math

import numpy as np
import pytest
import torch

from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2, comp_blosc2_params
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_ext.data import lesion_stats as ls
from nnunet_ext.data.amplified_loader import (AmplificationPlan, AmplifiedDataLoader, amplified_probability,
                                              lesion_centred_bbox)
from nnunet_ext.data.lesion_stats import (default_cache_path, default_lesion_label, lesion_units_of_case,
                                          load_or_compute_lesion_stats, perfect_power_ceil, size_thresholds)
from nnunet_ext.training.amplification import SmallLesionAmplification, amplification_plan
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.transforms.amplification import (AMPLIFY_KEY, PAPER_METHODS, BorderCropResizeTransform,
                                                 CentreExpansionCropTransform, LesionFlipTransform,
                                                 RefineIfStillSmallTransform, SmallLesionAmplificationTransform,
                                                 build_amplification_transform)

LESION, ORGAN = 2, 1


# ----------------------------------------------------------------------------------------------- statistics
def test_perfect_power_ceil():
    assert perfect_power_ceil(2000, 2) == 2025  # sqrt(2000) = 44.72 -> 45^2
    assert perfect_power_ceil(1012.5, 2) == 1024  # sqrt = 31.82 -> 32^2
    assert perfect_power_ceil(1024, 2) == 1024  # exact squares stay
    assert perfect_power_ceil(1025, 2) == 1089  # 33^2
    assert perfect_power_ceil(27, 3) == 27 and perfect_power_ceil(28, 3) == 64
    assert perfect_power_ceil(0.3, 2) == 1
    with pytest.raises(ValueError, match="positive"):
        perfect_power_ceil(0, 2)


def test_paper_thresholds_2025_and_1024():
    # Table 7: N1 = 2025 (45x45), N2 = 1024 (32x32): any mean lesion area in (44^2, 45^2] gives them.
    assert size_thresholds(total_size=7 * 2000, num_units=7, ndim=2) == (2025, 1024)
    with pytest.raises(ValueError, match="no lesion"):
        size_thresholds(0, 0, 2)


def hand_made_cases():
    """Case a: 3 slices; case b: 2 slices (12 x 12). Lesion sizes are given in the comments."""
    a = np.zeros((1, 3, 12, 12), np.int16)
    a[0, 0, 1:4, 1:4] = LESION  # 9
    a[0, 1, 0:6, 0:6] = ORGAN  # slice 1: organ only (36 voxels)
    a[0, 2, 0:2, 8:10] = LESION  # 4
    a[0, 2, 10, 2:7] = LESION  # 5 (separate component in slice 2; slice total 9)
    b = np.zeros((1, 2, 12, 12), np.int16)
    b[0, 0, 1:11, 1:11] = LESION  # 100
    return {"a": a, "b": b}


@pytest.mark.parametrize("ndim, unit, expected", [
    # 2D images: A = 3 slices (a0, a2, b0), S = 9 + 9 + 100 = 118, S/A = 39.33, sqrt 6.27 -> N1 = 7^2 = 49,
    # N1/2 = 24.5, sqrt 4.95 -> N2 = 5^2 = 25; 5 < size < 25: a0, a2
    (2, "image", dict(U=5, A=3, S=118, N1=49, N2=25, below_N2=[9, 9])),
    # 2D components 9, 4, 5, 100: S/A = 29.5, sqrt 5.43 -> 36; 18, sqrt 4.24 -> 25; 5 < size < 25: only 9
    (2, "component", dict(U=5, A=4, S=118, N1=36, N2=25, below_N2=[9])),
    # 3D cases: a = 18, b = 100: S/A = 59, cbrt 3.89 -> 4^3 = 64; 32, cbrt 3.17 -> 64; below 64: 18
    (3, "image", dict(U=2, A=2, S=118, N1=64, N2=64, below_N2=[18])),
    # 3D components (the three lesions of a do not touch): 29.5, cbrt 3.09 -> 64; 32 -> 64; below: 9
    (3, "component", dict(U=2, A=4, S=118, N1=64, N2=64, below_N2=[9])),
])
def test_statistics_on_hand_made_labels(ndim, unit, expected):
    units = [u for case, seg in hand_made_cases().items() for u in lesion_units_of_case(case, seg, LESION, ndim, unit)]
    stats = ls.LesionStats(LESION, ndim, unit, {"a": 3 if ndim == 2 else 1, "b": 2 if ndim == 2 else 1}, units)
    assert (stats.num_images, stats.A, stats.S) == (expected["U"], expected["A"], expected["S"])
    assert stats.thresholds == (expected["N1"], expected["N2"])
    assert sorted(u.size for u in stats.qualifying(stats.N2)) == expected["below_N2"]


def test_units_carry_slices_and_boxes():
    units = lesion_units_of_case("a", hand_made_cases()["a"], LESION, 2, "image")
    assert [(u.slice, u.size, u.component_sizes) for u in units] == [(0, 9, (9,)), (2, 9, (4, 5))]
    assert units[0].boxes == (((0, 1), (1, 4), (1, 4)),)
    assert sorted(units[1].boxes) == [((2, 3), (0, 2), (8, 10)), ((2, 3), (10, 11), (2, 7))]


def test_lesion_label_is_configurable():
    # organ (label 1): one slice of 36 voxels: N1 = 36, N2 = ceil(sqrt(18))^2 = 25
    units = [u for c, s in hand_made_cases().items() for u in lesion_units_of_case(c, s, ORGAN, 2)]
    stats = ls.LesionStats(ORGAN, 2, "image", {"a": 3, "b": 2}, units)
    assert (stats.A, stats.S, stats.thresholds) == (1, 36, (36, 25))
    assert default_lesion_label({"background": 0, "organ": 1, "lesion": 2, "ignore": 3}) == 2
    assert default_lesion_label({"background": 0, "organ": [1, 2], "lesion": 2}) == 2
    with pytest.raises(ValueError, match="not a foreground label"):
        ls.resolve_lesion_label(5, [1, 2])


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown lesion unit"):
        lesion_units_of_case("a", hand_made_cases()["a"], LESION, 2, "blob")
    with pytest.raises(ValueError, match="ndim=4"):
        lesion_units_of_case("a", hand_made_cases()["a"], LESION, 4)


# ---------------------------------------------------------------------------------- preprocessed folder + cache
def write_case(folder, identifier, seg):
    data = np.random.default_rng(0).standard_normal(seg.shape).astype(np.float32)
    blocks, chunks = comp_blosc2_params(data.shape, seg.shape[2:])
    class_locations = {lab: np.argwhere(seg == lab) for lab in (ORGAN, LESION)}
    for old in folder.glob(f"{identifier}*"):  # blosc2 does not overwrite; preprocessing writes fresh files
        old.unlink()
    nnUNetDatasetBlosc2.save_case(data, seg, {"class_locations": class_locations}, str(folder / identifier),
                                  chunks=chunks, blocks=blocks)


@pytest.fixture
def preprocessed(tmp_path):
    folder = tmp_path / "Dataset001_X" / "nnUNetPlans_2d"
    folder.mkdir(parents=True)
    for case, seg in hand_made_cases().items():
        write_case(folder, case, seg)
    return folder


def test_cache_is_written_reused_and_refreshed(preprocessed, monkeypatch):
    stats = load_or_compute_lesion_stats(preprocessed, LESION, 2)
    cache = default_cache_path(preprocessed, LESION)
    assert cache == preprocessed.parent / "nnUNetPlans_2d_lesion_stats_label2_image.json"
    assert json.loads(cache.read_text())["summary"]["N1"] == 49 and (stats.A, stats.S) == (3, 118)

    real_compute = ls.compute_lesion_stats
    monkeypatch.setattr(ls, "compute_lesion_stats", lambda *a, **k: pytest.fail("cache was not reused"))
    again = load_or_compute_lesion_stats(preprocessed, LESION, 2)
    assert again.units == stats.units and again.images_per_case == {"a": 3, "b": 2}

    calls = []
    monkeypatch.setattr(ls, "compute_lesion_stats", lambda *a, **k: calls.append(a) or real_compute(*a, **k))
    seg_b = hand_made_cases()["b"]
    seg_b[0, 1, 0:2, 0:2] = LESION  # re-preprocessed case b gains a 4-voxel lesion on slice 1
    write_case(preprocessed, "b", seg_b)
    fresh = load_or_compute_lesion_stats(preprocessed, LESION, 2)
    assert len(calls) == 1 and (fresh.A, fresh.S) == (4, 122)
    load_or_compute_lesion_stats(preprocessed, ORGAN, 2)  # other settings: own cache file
    assert len(calls) == 2 and default_cache_path(preprocessed, ORGAN).is_file()


def test_subset_restricts_to_training_cases(preprocessed):
    stats = load_or_compute_lesion_stats(preprocessed, LESION, 2).subset(["a"])
    # a only: A = 2, S = 18, S/A = 9 -> N1 = 9, N2 = ceil(sqrt(4.5))^2 = 9
    assert (stats.num_images, stats.A, stats.S, stats.thresholds) == (3, 2, 18, (9, 9))
    with pytest.raises(ValueError, match="no entry for case"):
        stats.subset(["c"])


# --------------------------------------------------------------------------------------------- operations
def coordinate_sample(shape, box):
    """Image channels hold each voxel's own coordinates: linear resizing reproduces them exactly, so the
    transformed image says which source position every output voxel came from."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    seg = torch.zeros((1, *shape), dtype=torch.int16)
    seg[(0, *[slice(a, b) for a, b in box])] = LESION
    return torch.stack(grids), seg


def assert_aligned_and_lesion_kept(image, seg, out, exact=True):
    """The segmentation must equal the source label at the position the image says (nearest), and every
    source lesion voxel must appear somewhere in the output. Two resizes in a row (method 3) compose two
    nearest-neighbour lookups, which may differ from one lookup by a voxel at label edges: ``exact=False``."""
    coords = out["image"]
    src = torch.floor(coords + 0.5).long()
    frac = (coords - torch.floor(coords)).sub(0.5).abs()
    clean = (frac > 1e-3).all(0)  # exact .5 ties may round either way
    expected = seg[0][tuple(src)]
    agree = (out["segmentation"][0][clean] == expected[clean]).float().mean()
    assert agree == 1 if exact else agree > 0.98
    assert clean.float().mean() > 0.4  # most voxels are not ties
    lesion_src = {tuple(p) for p in src[:, out["segmentation"][0] == LESION].T.tolist()}
    if exact:
        assert lesion_src >= {tuple(p) for p in torch.nonzero(seg[0] == LESION).tolist()}
    else:
        assert len(lesion_src) > 0.5 * int((seg[0] == LESION).sum())


def window_of(out):
    """(lo, hi) per axis read back from the coordinate channels."""
    return [(int(round(float(c.min()))), int(round(float(c.max()))) + 1) for c in out["image"]]


def test_border_crop_windows_2d():
    # 48 x 96 patch: border = round(50/480 * 48) = 5 and round(50/480 * 96) = 10; the three paper variants
    image, seg = coordinate_sample((48, 96), [(20, 24), (40, 44)])
    t = BorderCropResizeTransform(LESION)
    assert t.variants((48, 96)) == [(0, 1), (0,), (1,)]
    seen = set()
    np.random.seed(0)
    for _ in range(30):
        out = t(image=image.clone(), segmentation=seg.clone())
        seen.add(tuple(window_of(out)))
        assert_aligned_and_lesion_kept(image, seg, out)
    assert seen == {((5, 43), (10, 86)), ((5, 43), (0, 96)), ((0, 48), (10, 86))}


def test_border_crop_never_cuts_the_lesion():
    # lesion touching the corner: the window grows to hold it, variant all axes -> y (0, 43), x (0, 86)
    image, seg = coordinate_sample((48, 96), [(0, 3), (0, 2)])
    np.random.seed(1)
    for _ in range(20):
        out = BorderCropResizeTransform(LESION)(image=image.clone(), segmentation=seg.clone())
        (ylo, yhi), (xlo, xhi) = window_of(out)
        assert ylo == 0 and xlo == 0 and yhi in (43, 48) and xhi in (86, 96)
        assert_aligned_and_lesion_kept(image, seg, out)


def test_centre_expansion_window_2d():
    # lesion [40, 46) x [50, 54), dilated by 1 -> [39, 47) x [49, 55); centres 43 and 52;
    # half-size round(U(150/480, 160/480) * 96) in {30, 31, 32}, per axis
    image, seg = coordinate_sample((96, 96), [(40, 46), (50, 54)])
    np.random.seed(2)
    halves = set()
    for _ in range(40):
        out = CentreExpansionCropTransform(LESION)(image=image.clone(), segmentation=seg.clone())
        (ylo, yhi), (xlo, xhi) = window_of(out)
        assert 43 - ylo == yhi - 43 and 52 - xlo == xhi - 52
        halves |= {43 - ylo, 52 - xlo}
        assert_aligned_and_lesion_kept(image, seg, out)
    assert halves == {30, 31, 32}


def test_centre_expansion_clips_at_the_border_and_skips_lesion_free_patches():
    # lesion at rows [2, 4): dilated [1, 5), centre 3 -> half clipped to 3 -> but never below 2 -> rows [0, 6)
    image, seg = coordinate_sample((96, 96), [(2, 4), (60, 62)])
    np.random.seed(3)
    out = CentreExpansionCropTransform(LESION)(image=image.clone(), segmentation=seg.clone())
    assert window_of(out)[0] == (0, 6)
    assert_aligned_and_lesion_kept(image, seg, out)
    empty = torch.zeros_like(seg)
    out = CentreExpansionCropTransform(LESION)(image=image.clone(), segmentation=empty)
    assert torch.equal(out["image"], image)


def test_flips_and_3d_operations_stay_aligned():
    image, seg = coordinate_sample((20, 24, 28), [(9, 12), (3, 6), (20, 23)])
    assert torch.equal(LesionFlipTransform(-1)(image=image.clone(), segmentation=seg.clone())["segmentation"],
                       torch.flip(seg, dims=(-1,)))
    assert BorderCropResizeTransform(LESION).variants((20, 24, 28)) == [(0, 1, 2), (0,), (1,), (2,)]
    np.random.seed(4)
    for method in PAPER_METHODS:
        t = build_amplification_transform(method, LESION)
        for i in range(15):
            out = t(image=image.clone(), segmentation=seg.clone(), **{AMPLIFY_KEY: 1000})
            assert AMPLIFY_KEY not in out
            # an operation ran on the marked sample: every flip / crop moves the coordinate image
            assert t.counts == {"amplified": i + 1, "lesion_outside_patch": 0}
            assert not torch.equal(out["image"], image)
            assert_aligned_and_lesion_kept(image, seg, out, exact=method != 3)
    with pytest.raises(ValueError, match="counted from the end"):
        LesionFlipTransform(0)


def test_random_lesions_are_never_removed_2d():
    rng = np.random.default_rng(5)
    np.random.seed(5)
    transform = build_amplification_transform(4, LESION)
    for _ in range(40):
        y, x = rng.integers(0, 60), rng.integers(0, 60)
        h, w = rng.integers(1, 5), rng.integers(1, 5)
        image, seg = coordinate_sample((64, 64), [(y, min(64, y + h)), (x, min(64, x + w))])
        out = transform(image=image.clone(), segmentation=seg.clone(), **{AMPLIFY_KEY: 1024})
        assert_aligned_and_lesion_kept(image, seg, out)


def test_marked_sample_whose_lesion_left_the_patch_is_counted_not_amplified():
    image, seg = coordinate_sample((32, 32), [(14, 18), (14, 18)])
    organ_only = torch.where(seg == LESION, torch.full_like(seg, ORGAN), seg)  # rotation pushed the lesion out
    t = build_amplification_transform(4, LESION)
    np.random.seed(7)
    with pytest.warns(UserWarning, match="no voxel of label 2 left in its patch"):
        out = t(image=image.clone(), segmentation=organ_only.clone(), **{AMPLIFY_KEY: 1000})
    assert AMPLIFY_KEY not in out and torch.equal(out["image"], image)
    assert t.counts == {"amplified": 0, "lesion_outside_patch": 1}
    t(image=image.clone(), segmentation=seg.clone(), **{AMPLIFY_KEY: 1000})
    assert t.counts == {"amplified": 1, "lesion_outside_patch": 1}


def test_methods_and_dispatch():
    # copies per qualifying image: 4 standard (M1, M2), 8 (M3), 4 + 1 centre (M4) -> 5, 5, 9, 6 training images
    assert {m: PAPER_METHODS[m].copies for m in PAPER_METHODS} == {1: 4, 2: 4, 3: 8, 4: 5}
    assert [len(build_amplification_transform(m, LESION).operations) for m in (1, 2, 3, 4)] == [4, 4, 8, 5]
    image, seg = coordinate_sample((32, 32), [(14, 18), (14, 18)])
    t = build_amplification_transform(4, LESION)
    out = t(image=image.clone(), segmentation=seg.clone())  # not marked: untouched
    assert torch.equal(out["image"], image) and torch.equal(out["segmentation"], seg)
    with pytest.raises(ValueError, match="Table 7 has"):
        build_amplification_transform(5, LESION)
    with pytest.raises(ValueError, match="at least one"):
        SmallLesionAmplificationTransform([])


def test_method3_refines_only_while_still_small():
    # 16-voxel lesion; first a flip, then a border crop only if the lesion is still below the threshold
    image, seg = coordinate_sample((48, 48), [(20, 24), (20, 24)])
    t = RefineIfStillSmallTransform(LesionFlipTransform(-1), BorderCropResizeTransform(LESION), LESION)
    np.random.seed(6)
    small = t(image=image.clone(), segmentation=seg.clone(), **{AMPLIFY_KEY: 1000})
    assert window_of(small) != [(0, 48), (0, 48)]  # cropped after the flip
    large = t(image=image.clone(), segmentation=seg.clone(), **{AMPLIFY_KEY: 16})  # 16 is not < 16
    assert window_of(large) == [(0, 48), (0, 48)]
    assert torch.equal(large["segmentation"], torch.flip(seg, dims=(-1,)))


# -------------------------------------------------------------------------------------------- sampling
def test_amplified_probability_and_plan(preprocessed):
    # U = 5 slices, Q = 2 qualifying, 5 copies each: 10 / (5 + 10) = 2/3 of the draws are copies
    assert amplified_probability(5, 2, 5) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="cannot exceed"):
        amplified_probability(2, 3, 5)
    stats = load_or_compute_lesion_stats(preprocessed, LESION, 2)
    plans = {m: amplification_plan(stats, PAPER_METHODS[m]) for m in PAPER_METHODS}
    assert [plans[m].threshold for m in (1, 2, 3, 4)] == [49, 25, 25, 25]
    assert [len(plans[m].units) for m in (1, 2, 3, 4)] == [2, 2, 2, 2]
    # M1/M2: 8/(5+8); M3: 16/(5+16); M4: 10/(5+10)
    assert [plans[m].probability for m in (1, 2, 3, 4)] == pytest.approx([8 / 13, 8 / 13, 16 / 21, 2 / 3])
    assert amplification_plan(stats, PAPER_METHODS[4], amplified_fraction=0.25).probability == 0.25


def make_loader(folder, plan, transforms=None):
    lm = LabelManager({"background": 0, "organ": ORGAN, "lesion": LESION}, None)
    return AmplifiedDataLoader(nnUNetDatasetBlosc2(str(folder)), 10, (8, 8), (8, 8), lm, plan,
                               oversample_foreground_percent=0.33, transforms=transforms)


def test_small_lesion_images_are_drawn_at_the_intended_rate(preprocessed):
    stats = load_or_compute_lesion_stats(preprocessed, LESION, 2)
    plan = amplification_plan(stats, PAPER_METHODS[4])
    loader = make_loader(preprocessed, plan)
    np.random.seed(7)
    n, amplified, per_slice = 0, 0, {}
    for _ in range(600):
        keys = loader.get_indices()
        for key, unit in zip(keys, loader._slots):
            n += 1
            if unit is not None:
                amplified += 1
                assert unit.case == key
                per_slice[(unit.case, unit.slice)] = per_slice.get((unit.case, unit.slice), 0) + 1
    p = 2 / 3
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(amplified / n - p) < 4 * sigma  # 6000 draws: sigma = 0.0061
    assert set(per_slice) == {("a", 0), ("a", 2)}  # b0 (100 voxels) is too large
    half = amplified / 2
    assert abs(per_slice[("a", 0)] - half) < 4 * math.sqrt(amplified * 0.25)


def test_amplified_slots_are_lesion_centred_and_marked(preprocessed):
    stats = load_or_compute_lesion_stats(preprocessed, LESION, 2)
    plan = amplification_plan(stats, PAPER_METHODS[4])
    seen = []

    def record(**data_dict):
        seen.append((data_dict.get(AMPLIFY_KEY), data_dict["segmentation"].clone()))
        return data_dict

    loader = make_loader(preprocessed, plan, transforms=record)
    np.random.seed(8)
    for _ in range(20):
        batch = loader.generate_train_batch()
        assert batch["data"].shape == (10, 1, 8, 8)
    marked = [seg for flag, seg in seen if flag is not None]
    assert all(flag in (None, 25) for flag, _ in seen)
    assert 0.5 < len(marked) / len(seen) < 0.8
    for seg in marked:
        centre = seg[0, 4, 4].item()  # patch centre voxel = a voxel of the qualifying lesion's box
        assert (seg == LESION).any() and centre in (LESION, 0)
    with pytest.raises(ValueError, match="not in this loader"):
        make_loader(preprocessed, AmplificationPlan((ls.LesionUnit("zz", 0, 9, (((0, 1), (0, 3), (0, 3)),), (9,)),),
                                                    0.5, 25))


# ------------------------------------------------------------------------------------------ trainer mixin
class _Probe(SmallLesionAmplification, ExtTrainer):
    pass


def test_mixin_samples_through_the_ext_trainer_hook():
    # the loader is swapped in ExtTrainer's hook, not by overriding nnU-Net's get_dataloaders wholesale
    assert _Probe.build_training_dataloader is SmallLesionAmplification.build_training_dataloader
    assert _Probe.get_dataloaders is ExtTrainer.get_dataloaders
    assert _Probe.build_validation_dataloader is ExtTrainer.build_validation_dataloader
    with pytest.raises(TypeError, match="needs ExtTrainer"):
        type("OnBareNnUNet", (SmallLesionAmplification, nnUNetTrainer), {})


def test_mixin_puts_amplification_behind_the_spatial_transform():
    pipeline = _Probe.get_training_transforms((32, 32), (-np.pi, np.pi), None, (0, 1), False,
                                              foreground_labels=[1, 2])
    kinds = [type(t).__name__ for t in pipeline.transforms]
    position = kinds.index("SmallLesionAmplificationTransform")
    assert kinds[position - 1] == "SpatialTransform" and kinds.count("SmallLesionAmplificationTransform") == 1
    amplify = pipeline.transforms[position]
    assert len(amplify.operations) == 5 and amplify.operations[4].lesion_label == 2
    image, seg = coordinate_sample((46, 46), [(21, 25), (21, 25)])
    torch.manual_seed(0)
    out = pipeline(image=image[:1].clone(), segmentation=seg.clone(), **{AMPLIFY_KEY: 25})
    assert out["image"].shape == (1, 32, 32) and AMPLIFY_KEY not in out and (out["segmentation"] == LESION).any()
    dummy_2d = _Probe.get_training_transforms((8, 32, 32), (-np.pi, np.pi), None, (1, 2), True,
                                              foreground_labels=[1, 2])
    kinds = [type(t).__name__ for t in dummy_2d.transforms]
    assert kinds[kinds.index("SmallLesionAmplificationTransform") - 1] == "Convert2DTo3DTransform"

    class BadLabel(_Probe):
        lesion_label = 7

    with pytest.raises(ValueError, match="lesion label 7"):
        BadLabel.get_training_transforms((32, 32), (-np.pi, np.pi), None, (0, 1), False, foreground_labels=[1, 2])

    class BadMethod(_Probe):
        amplification_method = 9

    with pytest.raises(ValueError, match="amplification_method = 9"):
        BadMethod.get_training_transforms((32, 32), (-np.pi, np.pi), None, (0, 1), False, foreground_labels=[1, 2])


def test_in_plane_only_crops_for_slice_stacks():
    # a 2.5D stack (5 slices): crops must leave the slice axis alone
    image, seg = coordinate_sample((5, 40, 40), [(2, 3), (18, 22), (18, 22)])
    assert BorderCropResizeTransform(LESION, axes=(-2, -1)).variants((5, 40, 40)) == [(1, 2), (1,), (2,)]
    np.random.seed(9)
    for t in (BorderCropResizeTransform(LESION, axes=(-2, -1)), CentreExpansionCropTransform(LESION, axes=(-2, -1))):
        for _ in range(10):
            out = t(image=image.clone(), segmentation=seg.clone())
            assert window_of(out)[0] == (0, 5) and window_of(out)[1:] != [(0, 40), (0, 40)]
            assert_aligned_and_lesion_kept(image, seg, out)
    with pytest.raises(ValueError, match="do not exist"):
        BorderCropResizeTransform(LESION, axes=(-4,)).variants((5, 40, 40))


def test_slice_unit_centres_a_slice_stack():
    # 2D statistics used with a (5, 8, 8) patch: the window is centred on the qualifying slice
    unit = ls.LesionUnit("a", 2, 9, (((2, 3), (0, 2), (8, 10)),), (9,))
    np.random.seed(10)
    lbs, ubs = lesion_centred_bbox(unit, (5, 8, 8))
    assert lbs[0] == 0 and ubs[0] == 5  # slice 2 -> slices [0, 5)
    assert 0 - 4 <= lbs[1] <= 1 - 4 and 8 - 4 <= lbs[2] <= 9 - 4


def test_sts_net_25d_trainer_amplifies_in_plane_on_slice_statistics():
    from nnunet_ext_trainers.sts_net_trainers import STSNet25DAmplifyTrainer

    assert STSNet25DAmplifyTrainer.lesion_stats_ndim == 2
    pipeline = STSNet25DAmplifyTrainer.get_training_transforms((5, 32, 32), (-np.pi, np.pi), None, (1, 2), True,
                                                                foreground_labels=[1, 2])
    amplify = next(t for t in pipeline.transforms if isinstance(t, SmallLesionAmplificationTransform))
    assert amplify.operations[2].axes == (-2, -1) and amplify.operations[4].axes == (-2, -1)
