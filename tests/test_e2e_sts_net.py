"""End to end through nnU-Net's commands for STS-Net: 2d (STSNetTrainer) and the 2.5D network on 3d_fullres
(STSNet25DTrainer): plan_and_preprocess -> nnUNetv2_train -> nnUNetv2_predict -> evaluate. ResNeXt50 is heavy
on two CPU cores, so the phantoms are 32 x 32 slices and the test trainers use batch 2 (the real network)."""
import json

import numpy as np
import pytest

from e2e_utils import Phantom, final_checkpoint, predict_test_cases

pytestmark = pytest.mark.e2e

PHANTOM = Phantom(963, "PhantomSTS", ("2d", "3d_fullres"),
                  dict(num_cases=5, shape=(10, 32, 32), spacing=(3.0, 1.0, 1.0), num_test_cases=1, seed=7))
DATASET = PHANTOM.dataset_id


def check_checkpoint(fold, trainer):
    checkpoint = final_checkpoint(fold)
    assert checkpoint["trainer_name"] == trainer and checkpoint["current_epoch"] == 2
    weights = checkpoint["network_weights"]
    assert "encoder.attention.4.convs.1.weight" in weights  # ESCA after the last stage, second 1D conv
    assert "encoder.backbone.layer4.2.conv2.weight" in weights and "decoder.0.convs.0.0.weight" in weights
    assert np.isfinite(checkpoint["logging"]["train_losses"]).all()
    return checkpoint


def test_sts_net_2d_trains_and_predicts(ws, tmp_path):
    trainer = "STSNetTrainer_test"
    ws.train(DATASET, "2d", 0, trainer)
    fold = ws.model_folder(DATASET, "2d", trainer) / "fold_0"
    weights = check_checkpoint(fold, trainer)["network_weights"]
    assert weights["encoder.backbone.conv1.weight"].shape[1] == 1  # one CT channel in
    predict_test_cases(ws, DATASET, "2d", trainer, tmp_path / "pred")


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
    predict_test_cases(ws, DATASET, "3d_fullres", trainer, tmp_path / "pred", "--disable_tta")
