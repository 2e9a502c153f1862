"""End to end through nnU-Net's commands for STS-Net: 2d (STSNetTrainer) and the 2.5D network on 3d_fullres
(STSNet25DTrainer): plan_and_preprocess -> nnUNetv2_train -> nnUNetv2_predict -> evaluate. ResNeXt50 is heavy
on two CPU cores, so the phantoms are 32 x 32 slices and the test trainers use batch 2 (the real network)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from e2e_utils import NnUNetWorkspace

pytestmark = pytest.mark.e2e

DATASET = 963


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = NnUNetWorkspace(tmp_path_factory.mktemp("sts_net"))
    ws.generate(DATASET, name="PhantomSTS", num_cases=5, shape=(10, 32, 32), spacing=(3.0, 1.0, 1.0),
                num_test_cases=1, seed=7)
    ws.plan_and_preprocess(DATASET, configurations=("2d", "3d_fullres"))
    return ws


def check_checkpoint(fold, trainer):
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer and checkpoint["current_epoch"] == 2
    weights = checkpoint["network_weights"]
    assert "encoder.attention.4.convs.1.weight" in weights  # ESCA after the last stage, second 1D conv
    assert "encoder.backbone.layer4.2.conv2.weight" in weights and "decoder.0.convs.0.0.weight" in weights
    assert np.isfinite(checkpoint["logging"]["train_losses"]).all()
    return checkpoint


def predict_and_evaluate(ws, configuration, trainer, out, *extra):
    raw = ws.raw / ws.dataset_name(DATASET)
    ws.predict(DATASET, configuration, trainer, raw / "imagesTs", out, *extra)
    cases = sorted(p.name for p in (raw / "labelsTs").glob("*.nii.gz"))
    assert sorted(p.name for p in out.glob("*.nii.gz")) == cases
    for name in cases:
        pred, gt = sitk.ReadImage(str(out / name)), sitk.ReadImage(str(raw / "labelsTs" / name))
        assert pred.GetSize() == gt.GetSize()
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2}
    summary = ws.evaluate(DATASET, raw / "labelsTs", out)
    assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0


def test_sts_net_2d_trains_and_predicts(ws, tmp_path):
    trainer = "STSNetTrainer_test"
    ws.train(DATASET, "2d", 0, trainer)
    fold = ws.model_folder(DATASET, "2d", trainer) / "fold_0"
    weights = check_checkpoint(fold, trainer)["network_weights"]
    assert weights["encoder.backbone.conv1.weight"].shape[1] == 1  # one CT channel in
    predict_and_evaluate(ws, "2d", trainer, tmp_path / "pred")


def test_sts_net_2p5d_trains_on_3d_fullres_and_predicts_a_volume(ws, tmp_path):
    trainer = "STSNet25DTrainer_test"
    ws.train(DATASET, "3d_fullres", 0, trainer)
    folder = ws.model_folder(DATASET, "3d_fullres", trainer)
    checkpoint = check_checkpoint(folder / "fold_0", trainer)
    assert checkpoint["network_weights"]["encoder.backbone.conv1.weight"].shape[1] == 3  # 3 slices x 1 channel
    assert tuple(checkpoint["inference_allowed_mirroring_axes"]) == (1, 2)  # never flipped across slices
    # nnUNetv2_predict reads the window from the plans saved next to the checkpoint
    config = json.loads((folder / "plans.json").read_text())["configurations"]["3d_fullres"]
    assert config["patch_size"] == [5, 32, 32]
    assert config["architecture"]["network_class_name"] == "nnunet_ext_architectures.sts_net.STSNet25D"
    # the trainer's own validation went through nnU-Net's sliding window over whole volumes
    assert (folder / "fold_0" / "validation" / "summary.json").exists()
    predict_and_evaluate(ws, "3d_fullres", trainer, tmp_path / "pred", "--disable_tta")
