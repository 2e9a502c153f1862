"""A model trained with an nnunet-ext trainer, shipped with nnU-Net's own commands: export_model_to_zip ->
install_pretrained_model_from_zip into another results folder -> nnUNetv2_predict there; the plugin missing
from nnUNet_extTrainer is named; `nnunet-ext export` writes ONNX that onnxruntime runs like PyTorch."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_ext.export import load_model
from nnunet_ext.workspace import CommandFailed, NnUNetWorkspace

pytestmark = pytest.mark.e2e

DATASET = 951
TRAINER = "ESUNetTrainer_ep1it2val1"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """Trained (2d, fold 0) in one workspace, zipped, installed into a second one."""
    root = tmp_path_factory.mktemp("export")
    ws = NnUNetWorkspace(root / "lab")
    ws.generate(DATASET, name="PhantomExport", num_cases=5, shape=(8, 32, 32), num_test_cases=1, seed=3)
    ws.plan_and_preprocess(DATASET, configurations=("2d",))
    ws.train(DATASET, "2d", 0, TRAINER)
    zip_file = root / "model.zip"
    ws.run("nnUNetv2_export_model_to_zip", "-d", DATASET, "-o", zip_file, "-c", "2d", "-tr", TRAINER, "-f", 0)
    clinic = NnUNetWorkspace(root / "clinic")  # another machine's nnU-Net folders: no raw, no preprocessed data
    clinic.run("nnUNetv2_install_pretrained_model_from_zip", zip_file)
    return ws, clinic


def test_installed_model_predicts_like_the_original(shipped, tmp_path):
    ws, clinic = shipped
    images = ws.raw / ws.dataset_name(DATASET) / "imagesTs"
    ws.predict(DATASET, "2d", TRAINER, images, tmp_path / "lab")
    # the installed model is found by name under the other results folder (no raw/preprocessed data there)
    installed = clinic.results / ws.dataset_name(DATASET) / f"{TRAINER}__nnUNetPlans__2d"
    assert (installed / "fold_0" / "checkpoint_final.pth").is_file()
    clinic.predict(DATASET, "2d", TRAINER, images, tmp_path / "clinic")
    [case] = sorted(p.name for p in (tmp_path / "lab").glob("*.nii.gz"))
    lab, there = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / s / case))) for s in ("lab", "clinic"))
    assert lab.shape == (8, 32, 32) and np.array_equal(lab, there)


def test_missing_plugin_is_named(shipped, tmp_path):
    ws, clinic = shipped
    images = ws.raw / ws.dataset_name(DATASET) / "imagesTs"
    no_plugin = {"nnUNet_extTrainer": ""}
    with pytest.raises(CommandFailed, match="nnUNet_extTrainer"):  # nnU-Net's own error names the variable
        clinic.predict(DATASET, "2d", TRAINER, images, tmp_path / "out", env=no_plugin)
    installed = clinic.results / ws.dataset_name(DATASET) / f"{TRAINER}__nnUNetPlans__2d"
    with pytest.raises(CommandFailed, match=r"an nnunet-ext trainer.*pip install nnunet-ext, then export "
                                            r"nnUNet_extTrainer=\$\(nnunet-ext trainers-dir\)"):
        clinic.run("nnunet-ext", "export", "--check-only", "-m", installed, env=no_plugin)


def test_export_command_writes_onnx_that_matches_pytorch(shipped, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    ws, clinic = shipped
    out = tmp_path / "exported"
    output = clinic.run("nnunet-ext", "export", "-d", DATASET, "-tr", TRAINER, "-c", "2d", "-o", out)
    assert "onnx: max |difference| to PyTorch" in output
    info = json.loads((out / "export.json").read_text())
    model = load_model(clinic.results / ws.dataset_name(DATASET) / f"{TRAINER}__nnUNetPlans__2d", 0)
    assert info["input"]["shape"] == ["batch", 1, *model.patch_size] and info["output"]["channels"] == 3
    x = torch.randn(2, 1, *model.patch_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.network(x).numpy()
    session = onnxruntime.InferenceSession(str(out / "network.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, atol=1e-4, rtol=1e-4)
    assert (out / "plans.json").is_file() and (out / "dataset.json").is_file()
