"""End to end through nnU-Net's commands for DLKUNet (2d presets, 3d plans-driven) and ELANRes-MSCA-UNet
(3d_fullres): plan_and_preprocess -> nnUNetv2_train -> nnUNetv2_predict -> evaluate, deep supervision on and off;
then nnU-Net's own predictor on the ELANRes checkpoint runs the fused convolutions."""
import numpy as np
import pytest
import torch

from e2e_utils import Phantom, final_checkpoint, predict_test_cases

pytestmark = pytest.mark.e2e

PHANTOM = Phantom(932, "PhantomDLKELAN", ("2d", "3d_fullres"),
                  dict(num_cases=5, shape=(16, 48, 48), num_test_cases=1, seed=3))
DATASET = PHANTOM.dataset_id

# trainer, configuration, deep supervision, a state_dict key only that architecture has
RUNS = [
    ("DLKUNetSTrainer_test", "2d", True, "encoder.stages.0.0.attention.spatial.weight"),
    ("DLKUNetLTrainerNoDS_test", "2d", False, "encoder.stages.4.1.attention.spatial.weight"),
    ("DLKUNetMTrainer_test", "3d_fullres", True, "decoder.stages.2.block.attention.spatial.weight"),
    ("ELANResMSCAUNetTrainer_test", "3d_fullres", True, "encoder.stages.0.0.stem.pointwise.0.weight"),
    ("ELANResMSCAUNetTrainerNoDS_test", "3d_fullres", False, "encoder.stages.1.1.attention.2.strips.2.0.weight"),
]


@pytest.mark.parametrize("trainer, configuration, deep_supervision, key", RUNS, ids=[r[0] for r in RUNS])
def test_train_predict_evaluate(ws, tmp_path, trainer, configuration, deep_supervision, key):
    ws.train(DATASET, configuration, 0, trainer)
    checkpoint = final_checkpoint(ws.model_folder(DATASET, configuration, trainer) / "fold_0")
    assert checkpoint["trainer_name"] == trainer and checkpoint["current_epoch"] == 2
    weights = checkpoint["network_weights"]
    assert key in weights
    # the checkpoint holds the trainable (unfused) form: every deep-supervision head, whatever the switch
    assert any(k.startswith("decoder.seg_layers.1.") for k in weights)
    assert np.isfinite(checkpoint["logging"]["train_losses"]).all()

    predict_test_cases(ws, DATASET, configuration, trainer, tmp_path / "pred")


def test_nnunet_predictor_runs_elanres_fused_and_matches_branches(ws, monkeypatch):
    trainer = "ELANResMSCAUNetTrainer_test"
    fold = ws.model_folder(DATASET, "3d_fullres", trainer) / "fold_0"
    if not (fold / "checkpoint_final.pth").exists():
        ws.train(DATASET, "3d_fullres", 0, trainer)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    monkeypatch.setenv("nnUNet_extTrainer", ws.env["nnUNet_extTrainer"])  # how the predictor finds our trainers

    # no Gaussian: nnU-Net accumulates the Gaussian-weighted logits and the weights in float16, where the
    # patch corners' weights (~1e-10 of the centre's) are subnormal, so two networks equal to 1e-6 can give
    # logits a few percent apart there (CI saw 0.034); with weight 1 only the final float16 rounding is left
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=False, use_mirroring=False,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(fold.parent), (0,), "checkpoint_final.pth")
    network = predictor.network
    patch = predictor.configuration_manager.patch_size
    x = torch.randn(1, *patch, generator=torch.Generator().manual_seed(0))
    fused = predictor.predict_sliding_window_return_logits(x)
    assert all(m._fused_cache is not None for m in network.rep_convs())  # eval ran the single convolutions
    network.set_fused_inference(False)
    branches = predictor.predict_sliding_window_return_logits(x)
    # nnU-Net stores sliding-window logits in float16: agreement is up to that rounding (one ulp at the
    # logits' scale); the float32 check at 1e-4 is in tests/test_elanres.py
    assert fused.dtype == branches.dtype
    scale = max(1.0, branches.float().abs().max().item())
    tolerance = max(1e-4, torch.finfo(fused.dtype).eps * scale)
    assert (fused.float() - branches.float()).abs().max().item() <= tolerance
