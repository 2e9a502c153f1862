"""End to end through nnU-Net's own commands: plan_and_preprocess -> train (-tr our trainer, found via
nnUNet_extTrainer) -> resume -> predict -> evaluate -> find_best_configuration -> ensemble -> postprocessing."""
import json
import time

import pytest
import torch

from e2e_utils import Phantom, final_checkpoint, planned_phantom, predict_test_cases
from nnunet_ext.training.short_schedule import STOP_ENV
from nnunet_ext.workspace import CommandFailed

pytestmark = pytest.mark.e2e

PHANTOM = Phantom(901, "PhantomE2E", ("2d", "3d_fullres"), dict(num_cases=6, shape=(16, 32, 32), num_test_cases=2,
                                                                  seed=1))
DATASET = PHANTOM.dataset_id
TRAINER = "ESUNetDWDTrainer_test"


@pytest.fixture(scope="module")
def trained(ws):
    """ESUNetDWDTrainer (short) on both configurations, fold 0, with probabilities for ensembling.

    The 3d_fullres run is interrupted at the start of epoch 1 and resumed with `--c`."""
    folds = {c: ws.model_folder(DATASET, c, TRAINER) / "fold_0" for c in ("3d_fullres", "2d")}
    with pytest.raises(CommandFailed, match="simulated interruption before epoch 1"):
        ws.train(DATASET, "3d_fullres", 0, TRAINER, "--npz", env={STOP_ENV: "1"})
    latest = torch.load(folds["3d_fullres"] / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    assert latest["current_epoch"] == 1 and not (folds["3d_fullres"] / "checkpoint_final.pth").exists()
    logs_before_resume = set(folds["3d_fullres"].glob("training_log_*.txt"))
    time.sleep(1.1)  # nnU-Net names logs by the second
    ws.train(DATASET, "3d_fullres", 0, TRAINER, "--npz", "--c")
    ws.resumed_logs = set(folds["3d_fullres"].glob("training_log_*.txt")) - logs_before_resume
    ws.train(DATASET, "2d", 0, TRAINER, "--npz")
    return folds


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_training_writes_checkpoint_and_validation(trained, configuration):
    fold = trained[configuration]
    checkpoint = final_checkpoint(fold)
    assert checkpoint["trainer_name"] == TRAINER
    assert checkpoint["current_epoch"] == 2
    # the network that trained is ES-UNet, not nnU-Net's PlainConvUNet
    assert any(".skips." in k or "attention" in k or "heads" in k for k in checkpoint["network_weights"])
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}


def test_resume_continues_from_latest_checkpoint(ws, trained):
    """`nnUNetv2_train --c` after an interruption runs only the missing epoch."""
    assert len(ws.resumed_logs) == 1
    log = next(iter(ws.resumed_logs)).read_text()
    assert "Epoch 1 " in log or "Epoch 1\n" in log
    assert "Epoch 0 " not in log and "Epoch 0\n" not in log
    final = final_checkpoint(trained["3d_fullres"])
    assert final["current_epoch"] == 2


def test_predict_and_evaluate_held_out_cases(ws, trained, tmp_path):
    predict_test_cases(ws, DATASET, "3d_fullres", TRAINER, tmp_path / "pred3d")


def test_find_best_configuration_ensemble_and_postprocessing(ws, trained, tmp_path):
    ws.run("nnUNetv2_find_best_configuration", DATASET, "-c", "2d", "3d_fullres", "-tr", TRAINER, "-f", 0,
           "-np", 1)
    folder = ws.results / ws.dataset_name(DATASET)
    instructions = (folder / "inference_instructions.txt").read_text()
    assert TRAINER in instructions
    raw = ws.raw / ws.dataset_name(DATASET)
    for configuration in ("2d", "3d_fullres"):
        ws.predict(DATASET, configuration, TRAINER, raw / "imagesTs", tmp_path / configuration, "--save_probabilities")
    ws.run("nnUNetv2_ensemble", "-i", tmp_path / "2d", tmp_path / "3d_fullres", "-o", tmp_path / "ensemble", "-np", 1)
    assert len(list((tmp_path / "ensemble").glob("*.nii.gz"))) == 2
    # the post-processing nnU-Net chose (for the best single model or the ensemble), as its instructions say
    pp_line = next(line for line in instructions.splitlines() if "nnUNetv2_apply_postprocessing" in line).split()
    pp_pkl = pp_line[pp_line.index("-pp_pkl_file") + 1]
    plans_json = pp_line[pp_line.index("-plans_json") + 1]
    ws.run("nnUNetv2_apply_postprocessing", "-i", tmp_path / "ensemble", "-o", tmp_path / "pp", "-pp_pkl_file",
           pp_pkl, "-np", 1, "-plans_json", plans_json)
    assert len(list((tmp_path / "pp").glob("*.nii.gz"))) == 2


@pytest.mark.parametrize("variant", ["ignore", "regions"])
def test_label_variants_train_and_predict(tmp_path_factory, variant):
    """Like nnU-Net's own integration datasets: an ignore label, and region-based training (sigmoid)."""
    dataset = 902 if variant == "ignore" else 903
    ws = planned_phantom(tmp_path_factory, dataset, f"Phantom{variant.title()}", ("2d",), num_cases=5,
                         shape=(16, 32, 32), label_variant=variant, num_test_cases=1, seed=2)
    ws.train(dataset, "2d", 0, "ESUNetDWDRSSTrainer_test")
    labels = json.loads((ws.raw / ws.dataset_name(dataset) / "dataset.json").read_text())["labels"]
    if variant == "ignore":  # nnU-Net never predicts the ignore label: not among the labels checked below
        assert labels["ignore"] == 3
    # the predictions hold labels 0, 1, 2 only (regions are painted back to labels)
    predict_test_cases(ws, dataset, "2d", "ESUNetDWDRSSTrainer_test", tmp_path_factory.mktemp(f"pred_{variant}"),
                       evaluate=False)


def test_vanilla_network_with_dwd_and_rss(ws, tmp_path):
    """The paper's Table 5 rows for 3D UNet: nnU-Net's own network with DWD + RSS."""
    ws.train(DATASET, "3d_fullres", 1, "nnUNetTrainerDWDRSS_test")
    checkpoint = final_checkpoint(ws.model_folder(DATASET, "3d_fullres", "nnUNetTrainerDWDRSS_test") / "fold_1")
    assert any(k.startswith("encoder.stages") for k in checkpoint["network_weights"])


def test_unet3plus_trainer_2d(ws, tmp_path):
    """The 3D UNet 3+ baseline trainers run on a 2d configuration too (conv op from the plans)."""
    ws.train(DATASET, "2d", 1, "UNet3PlusDWDRSSTrainer_test")
    predict_test_cases(ws, DATASET, "2d", "UNet3PlusDWDRSSTrainer_test", tmp_path / "pred", folds=(1,),
                       evaluate=False)


def test_unet3plus_batch_dice_overrides_the_plans_in_a_real_run(ws, tmp_path):
    """nnU-Net plans per-case Dice for this 3d_fullres; the BatchDice trainer trains with one Dice over the batch,
    says so in its training log, and predicts."""
    plans = json.loads((ws.preprocessed / ws.dataset_name(DATASET) / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["batch_dice"] is False
    ws.train(DATASET, "3d_fullres", 2, "UNet3PlusBatchDiceTrainer_test")
    folder = ws.model_folder(DATASET, "3d_fullres", "UNet3PlusBatchDiceTrainer_test") / "fold_2"
    log = "\n".join(p.read_text() for p in folder.glob("training_log_*.txt"))
    assert log.count("BatchDice: every Dice term is one Dice over the batch (the plans say batch_dice = False)") == 1
    predict_test_cases(ws, DATASET, "3d_fullres", "UNet3PlusBatchDiceTrainer_test", tmp_path / "pred", folds=(2,),
                       evaluate=False)


def test_architecture_plans_train_and_predict(ws, tmp_path):
    """`nnunet-ext plans` writes nnUNetPlans_ESUNet.json on the same preprocessed data; -p uses it."""
    ws.run("nnunet-ext", "plans", "-d", DATASET, "-a", "ESUNet", "-c", "2d", "--memory-gb", "8")
    plans = json.loads((ws.preprocessed / ws.dataset_name(DATASET) / "nnUNetPlans_ESUNet.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"] == \
        "nnunet_ext_architectures.es_unet.ESUNet"
    assert plans["configurations"]["2d"]["data_identifier"] == "nnUNetPlans_2d"
    ws.train(DATASET, "2d", 2, TRAINER, plans="nnUNetPlans_ESUNet")
    predict_test_cases(ws, DATASET, "2d", TRAINER, tmp_path / "pred", folds=(2,), plans="nnUNetPlans_ESUNet",
                       evaluate=False)


def test_es_unet_paper_trainer_trains_with_the_papers_optimizer(ws):
    """The paper's full recipe through nnUNetv2_train: Adam (0.9, 0.99), lr 1e-3, no weight decay, paper
    augmentation."""
    ws.train(DATASET, "2d", 1, "ESUNetDWDRSSPaperTrainer_test")  # 2d, one iteration, no final validation
    checkpoint = final_checkpoint(ws.model_folder(DATASET, "2d", "ESUNetDWDRSSPaperTrainer_test") / "fold_1")
    group = checkpoint["optimizer_state"]["param_groups"][0]
    assert group["weight_decay"] == 0.0 and tuple(group["betas"]) == (0.9, 0.99)
    assert group["lr"] == pytest.approx(1e-3)  # cosine restart curve at epoch 0 of a 1-epoch run
