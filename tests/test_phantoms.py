"""Generated raw datasets: layout, dataset.json, geometry, label semantics, reproducibility, nnU-Net's own checks."""
import itertools
import json
import types

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_ext.cli import main as cli_main
from nnunet_ext.data.phantoms import (BACKGROUND, IGNORE, LESION, ORGAN, generate_dataset, make_phantom,
                                      sparsify_annotation)
import nnunetv2.experiment_planning.verify_dataset_integrity as verify_module
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

SMALL = dict(num_cases=3, shape=(16, 32, 32), spacing=(3.0, 1.0, 1.0))


class InProcessPool:
    """Stands in for the spawn pool nnU-Net's integrity check opens: same checks, no interpreter start-up."""

    def __init__(self, *_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starmap(self, fn, iterable):
        return list(itertools.starmap(fn, iterable))


@pytest.fixture(autouse=True)
def in_process_verify(monkeypatch):
    fake = types.SimpleNamespace(get_context=lambda _method: types.SimpleNamespace(Pool=InProcessPool))
    monkeypatch.setattr(verify_module, "multiprocessing", fake)


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_same_seed_gives_identical_arrays_and_other_seed_differs(tmp_path):
    a = generate_dataset(tmp_path / "a", 901, **SMALL, num_channels=2, label_variant="ignore", seed=3)
    b = generate_dataset(tmp_path / "b", 901, **SMALL, num_channels=2, label_variant="ignore", seed=3)
    c = generate_dataset(tmp_path / "c", 901, **SMALL, num_channels=2, label_variant="ignore", seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*.nii.gz"))
    assert len(files) == 3 * 2 + 3
    for f in files:
        assert read(a / f).tobytes() == read(b / f).tobytes(), f
    assert read(a / "imagesTr/phantom_000_0000.nii.gz").tobytes() != \
        read(c / "imagesTr/phantom_000_0000.nii.gz").tobytes()


def test_adding_cases_keeps_earlier_cases(tmp_path):
    few = generate_dataset(tmp_path / "few", 1, num_cases=2, shape=(16, 32, 32))
    more = generate_dataset(tmp_path / "more", 1, num_cases=4, shape=(16, 32, 32))
    assert np.array_equal(read(few / "labelsTr/phantom_001.nii.gz"), read(more / "labelsTr/phantom_001.nii.gz"))


EXPECTED_LABELS = {
    "plain": ({"background": 0, "organ": 1, "lesion": 2}, None, {0, 1, 2}),
    "ignore": ({"background": 0, "organ": 1, "lesion": 2, "ignore": 3}, None, {0, 1, 2, 3}),
    "regions": ({"background": 0, "organ": [1, 2], "lesion": 2}, [1, 2], {0, 1, 2}),
    "regions_ignore": ({"background": 0, "organ": [1, 2], "lesion": 2, "ignore": 3}, [1, 2], {0, 1, 2, 3}),
}


@pytest.mark.parametrize("variant", sorted(EXPECTED_LABELS))
def test_dataset_json_and_label_values_per_variant(tmp_path, variant):
    labels, order, values = EXPECTED_LABELS[variant]
    out = generate_dataset(tmp_path, 902, "Var", **SMALL, label_variant=variant, num_test_cases=1)
    dj = json.loads((out / "dataset.json").read_text())
    assert out.name == "Dataset902_Var"
    assert dj["labels"] == labels
    assert dj.get("regions_class_order") == order
    assert dj["channel_names"] == {"0": "CT"} and dj["numTraining"] == 3 and dj["file_ending"] == ".nii.gz"
    found = set()
    for f in (out / "labelsTr").iterdir():
        found |= set(np.unique(read(f)).tolist())
    assert found == values
    # held-out ground truth is always fully annotated
    assert set(np.unique(read(out / "labelsTs/var_003.nii.gz")).tolist()) == {0, 1, 2}
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["var_003_0000.nii.gz"]


def test_two_channels_are_ct_and_pet_with_hot_lesions(tmp_path):
    out = generate_dataset(tmp_path, 903, **SMALL, num_channels=2)
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "CT", "1": "PET"}
    for case in range(3):
        ct, pet = (read(out / f"imagesTr/phantom_{case:03d}_{c:04d}.nii.gz") for c in (0, 1))
        seg = read(out / f"labelsTr/phantom_{case:03d}.nii.gz")
        assert ct[seg == BACKGROUND].min() < -900  # air outside the body
        assert pet[seg == LESION].mean() > 2 * pet[seg == ORGAN].mean()  # lesions are hot in PET


def test_spacing_round_trip_3d(tmp_path):
    out = generate_dataset(tmp_path, 904, num_cases=1, shape=(12, 20, 28), spacing=(2.5, 0.8, 0.7))
    image = sitk.ReadImage(str(out / "imagesTr/phantom_000_0000.nii.gz"))
    assert image.GetSize() == (28, 20, 12)  # SimpleITK: x, y, z
    assert np.allclose(image.GetSpacing(), (0.7, 0.8, 2.5))
    data, props = SimpleITKIO().read_images([str(out / "imagesTr/phantom_000_0000.nii.gz")])
    assert data.shape == (1, 12, 20, 28)
    assert np.allclose(props["spacing"], (2.5, 0.8, 0.7))  # nnU-Net: array order


def test_2d_dataset_is_read_by_nnunet_as_single_slice(tmp_path):
    out = generate_dataset(tmp_path, 905, num_cases=2, shape=(40, 48), spacing=(0.5, 0.7))
    image = sitk.ReadImage(str(out / "imagesTr/phantom_000_0000.nii.gz"))
    assert image.GetDimension() == 2 and image.GetSize() == (48, 40)
    data, props = SimpleITKIO().read_images([str(out / "imagesTr/phantom_000_0000.nii.gz")])
    assert data.shape == (1, 1, 40, 48)
    assert np.allclose(props["spacing"], (0.7 * 999, 0.5, 0.7))  # SimpleITKIO's convention for 2D files
    verify_dataset_integrity(str(out), num_processes=1)


def test_lesions_are_enclosed_by_organ_and_vary_in_size():
    volumes = []
    for case in range(8):
        ph = make_phantom(np.random.default_rng([0, case]), (32, 64, 64), (3.0, 1.0, 1.0))
        lesion = ph.labels == LESION
        assert lesion.any()
        touching = ndimage.binary_dilation(lesion) & (ph.labels == BACKGROUND)
        assert not touching.any(), f"case {case}: lesion touches background"
        components, n = ndimage.label(lesion)
        volumes += np.bincount(components.ravel())[1:].tolist()
        assert 1 <= len(ph.lesion_radii_mm) <= 3
    assert min(volumes) >= 1 and max(volumes) >= 8 * min(volumes), volumes


def test_sparsified_annotation_keeps_the_union_of_chosen_slices():
    labels = np.ones((32, 64, 64), dtype=np.uint8)  # no lesion, so exactly round(0.25 * n) slices per axis
    sparse = sparsify_annotation(np.random.default_rng(0), labels, fraction=0.25)
    annotated = (sparse != IGNORE).mean()
    assert annotated == pytest.approx(1 - (1 - 8 / 32) * (1 - 16 / 64) * (1 - 16 / 64))
    assert set(np.unique(sparse).tolist()) == {1, IGNORE}


@pytest.mark.parametrize("variant,channels", [("plain", 1), ("ignore", 1), ("regions", 2), ("regions_ignore", 1)])
def test_nnunet_verify_dataset_integrity_accepts_variant(tmp_path, variant, channels):
    out = generate_dataset(tmp_path, 906, **SMALL, num_channels=channels, label_variant=variant, num_test_cases=1)
    verify_dataset_integrity(str(out), num_processes=1)  # raises on any problem


def test_cli_writes_into_raw_folder(tmp_path, capsys):
    assert cli_main(["generate", "--id", "907", "--name", "Cli", "--cases", "2", "--shape", "16", "24", "24",
                     "--spacing", "2", "1", "1", "--channels", "2", "--labels", "ignore", "--test-cases", "1",
                     "--raw", str(tmp_path)]) == 0
    out = tmp_path / "Dataset907_Cli"
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "cli_000_0000.nii.gz", "cli_000_0001.nii.gz", "cli_001_0000.nii.gz", "cli_001_0001.nii.gz"]
    assert read(out / "labelsTs/cli_002.nii.gz").shape == (16, 24, 24)


@pytest.mark.parametrize("kwargs,message", [
    (dict(label_variant="sparse"), "unknown label variant"),
    (dict(shape=(4, 8, 8, 8), spacing=(1, 1, 1, 1)), r"2 \(y, x\) or 3 \(z, y, x\)"),
    (dict(spacing=(1.0, 1.0)), "one entry per shape axis"),
    (dict(num_channels=3), "num_channels must be 1"),
    (dict(spacing=(0.0, 1.0, 1.0)), "spacing must be positive"),
])
def test_bad_arguments_name_the_problem(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, 908, **{**SMALL, **kwargs})


def test_never_overwrites_foreign_data_or_clashing_ids(tmp_path):
    generate_dataset(tmp_path, 909, "Mine", **SMALL)
    generate_dataset(tmp_path, 909, "Mine", **SMALL)  # regenerating our own folder is fine
    with pytest.raises(FileExistsError, match="already uses dataset id 909"):
        generate_dataset(tmp_path, 909, "Other", **SMALL)
    foreign = tmp_path / "Dataset910_Real"
    foreign.mkdir()
    (foreign / "dataset.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not written by nnunet-ext generate"):
        generate_dataset(tmp_path, 910, "Real", **SMALL)


def test_integrity_check_in_process_still_catches_bad_labels(tmp_path):
    out = generate_dataset(tmp_path, 911, **SMALL)
    seg_path = out / "labelsTr/phantom_000.nii.gz"
    seg = sitk.ReadImage(str(seg_path))
    bad = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(seg).shape, 5, dtype=np.uint8))
    bad.CopyInformation(seg)
    sitk.WriteImage(bad, str(seg_path))
    with pytest.raises(RuntimeError, match="unexpected labels"):
        verify_dataset_integrity(str(out), num_processes=1)
