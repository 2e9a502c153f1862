"""End to end through the real nnU-Net CLI: every loss trainer of the losses issue (nnU-Net's network,
DLKUNet-L, ELANRes-MSCA-UNet) trains, predicts, logs the weights its schedule prescribes at every epoch,
``--c`` resumes the schedule where it stopped, and the losses train on region-based and ignore-label data."""
import json
import re

import numpy as np
import pytest

from e2e_utils import Phantom, final_checkpoint as load_final, planned_phantom, predict_test_cases
from nnunet_ext.losses.weight_schedules import (DecayingDeepSupervisionSchedule, PhaseDiceCESchedule,
                                                SigmoidDiceCESchedule)
from nnunet_ext.training.short_schedule import STOP_ENV
from nnunet_ext.workspace import CommandFailed

pytestmark = pytest.mark.e2e

# 2d patch 32 x 32: the smallest nnU-Net plans here, and still divisible by DLKUNet-L's total stride 16
PHANTOM = Phantom(612, "LossPhantom", ("2d",),
                  dict(num_cases=5, shape=(16, 32, 32), spacing=(3.0, 1.0, 1.0), num_test_cases=1, seed=3))
DATASET = PHANTOM.dataset_id
EPOCHS = 4  # tests/trainers/nnunet_ext_test_trainers_loss_schedules.py
LOSS_LINE = re.compile(r"loss weights \(epoch (\d+)\): dice ([\d.]+) ce ([\d.]+)")
DS_LINE = re.compile(r"deep supervision weights \(epoch (\d+)\): ([\d. ]+)")


def logged(ws, trainer, fold, pattern=LOSS_LINE, dataset=DATASET):
    """{epoch: logged weights} from every training log of the run (later logs win), and the logs' texts."""
    folder = ws.model_folder(dataset, "2d", trainer) / f"fold_{fold}"
    texts = [p.read_text() for p in sorted(folder.glob("training_log_*.txt"))]
    values = {}
    for text in texts:
        for match in pattern.finditer(text):
            values[int(match[1])] = tuple(float(v) for v in " ".join(match.groups()[1:]).split())
    return values, texts


def train_and_predict(ws, trainer, tmp_path):
    ws.train(DATASET, "2d", 0, trainer)
    predict_test_cases(ws, DATASET, "2d", trainer, tmp_path / "pred", "--disable_tta", evaluate=False)


def expected_loss_weights(schedule, epochs=EPOCHS):
    return {e: tuple(round(w, 6) for w in schedule.weights(e, epochs)) for e in range(epochs)}


def final_checkpoint(ws, trainer, fold=0, dataset=DATASET):
    return load_final(ws.model_folder(dataset, "2d", trainer) / f"fold_{fold}")


def assert_decaying_deep_supervision(weights):
    """Logged weights of a 4-epoch run with one decay per epoch (the test trainers' EVERY_EPOCH)."""
    assert sorted(weights) == list(range(EPOCHS))
    schedule = DecayingDeepSupervisionSchedule(period_epochs=1)
    for epoch, ds_weights in weights.items():
        # 1 on full resolution, 0.4 * 0.8^epoch on every lower one: 0.4, 0.32, 0.256, 0.2048
        assert ds_weights[0] == 1.0 and len(ds_weights) >= 2
        assert ds_weights[1:] == pytest.approx([schedule.alpha(epoch)] * (len(ds_weights) - 1), abs=1e-6)


# nnU-Net's poly rate 0.01 (1 - e / 4)^0.9, x0.01 from the phase boundary (epoch 2) on:
# 0.75^0.9 = 0.771890, 0.5^0.9 = 0.535887, 0.25^0.9 = 0.287175
PHASE_LRS = [0.01, 0.01 * 0.771890, 1e-4 * 0.535887, 1e-4 * 0.287175]


# trainer, its Dice/CE schedule, epochs, a state_dict key only its network has (None: nnU-Net's PlainConvUNet).
# nnUNetTrainerDynamicLoss runs in test_losses_on_regions_and_ignore_label.
DLK_KEY = "encoder.stages.4.1.attention.spatial.weight"
DICE_CE_RUNS = [
    ("nnUNetTrainerPhaseLoss_test", PhaseDiceCESchedule(), EPOCHS, None),
    ("DLKUNetLPhaseLossTrainer_test", PhaseDiceCESchedule(), 2, DLK_KEY),
    ("DLKUNetLDynamicLossTrainer_test", SigmoidDiceCESchedule(), 2, DLK_KEY),
]


@pytest.mark.parametrize("trainer, schedule, epochs, key", DICE_CE_RUNS, ids=[r[0] for r in DICE_CE_RUNS])
def test_dice_ce_schedule_trainers(ws, tmp_path, trainer, schedule, epochs, key):
    train_and_predict(ws, trainer, tmp_path)
    weights, _ = logged(ws, trainer, 0)
    # phase, 4 epochs: 0, 1 at (0.6, 0.4), 2, 3 at (0.7, 0.3); 2 epochs: (0.6, 0.4), (0.7, 0.3)
    # sigmoid, 2 epochs: k = 20 / 2 = 10, x0 = 1: epoch 0 s = 1 / (1 + e^10), epoch 1 s = 0.5 -> (0.65, 0.85)
    assert weights == expected_loss_weights(schedule, epochs)
    network = final_checkpoint(ws, trainer)["network_weights"]
    if key is None:
        assert any(k.startswith("encoder.stages.") for k in network) and not any("attention" in k for k in network)
    else:  # DLKUNet-L: five stages, the last one's large-kernel attention
        assert key in network and "encoder.stages.5.0.attention.spatial.weight" not in network


@pytest.mark.parametrize("trainer", ["nnUNetTrainerDecayingDS_test", "ELANResMSCAUNetPaperLossTrainer_test"])
def test_decaying_deep_supervision_trainers(ws, tmp_path, trainer):
    train_and_predict(ws, trainer, tmp_path)
    assert_decaying_deep_supervision(logged(ws, trainer, 0, DS_LINE)[0])


def test_resume_continues_the_schedules(ws):
    """Interrupted after epoch 1 and resumed with --c: the resumed process logs epochs 2, 3 only, with the
    weights the schedules prescribe there, the same values the uninterrupted runs of the other tests log."""
    trainer = "nnUNetTrainerDynamicLossDecayingDS_test"
    with pytest.raises(CommandFailed, match="simulated interruption before epoch 2"):
        ws.train(DATASET, "2d", 1, trainer, env={STOP_ENV: "2"})
    ws.train(DATASET, "2d", 1, trainer, "--c")

    for pattern in (LOSS_LINE, DS_LINE):
        resumed, texts = logged(ws, trainer, 1, pattern)
        assert len(texts) == 2  # one log per nnUNetv2_train call
        assert [{int(m[1]) for m in pattern.finditer(t)} for t in texts] == [{0, 1}, {2, 3}]
        assert resumed[2] != resumed[0]  # the schedule really moved
    assert logged(ws, trainer, 1)[0] == expected_loss_weights(SigmoidDiceCESchedule())
    assert_decaying_deep_supervision(logged(ws, trainer, 1, DS_LINE)[0])


# ---------------------------------------------------------------- region-based and ignore-label data
VARIANT_DATASETS = {"ignore": 613, "regions_ignore": 614}
IGNORE = 3  # nnunet_ext.data.phantoms: the ignore label is the highest value


@pytest.fixture(scope="module")
def variant_workspace(request, tmp_path_factory):
    """As tests/test_e2e_foundation.py::test_label_variants_train_and_predict: sparse annotation with an ignore
    label (softmax, CE with ignore_index), and overlapping regions (sigmoid, BCE) with the ignore label too."""
    variant = request.param
    dataset = VARIANT_DATASETS[variant]
    ws = planned_phantom(tmp_path_factory, dataset, f"LossPhantom{variant.title().replace('_', '')}", ("2d",),
                         num_cases=5, shape=(16, 32, 32), label_variant=variant, num_test_cases=1, seed=2)
    return ws, variant, dataset


# Per variant one Dice/CE-schedule trainer and one ELANRes-family trainer; these four trainers are covered
# here only (the schedule checks do not depend on the label variant).
VARIANT_RUNS = [
    ("ignore", "nnUNetTrainerPhaseLossPhaseLR_test"),
    ("ignore", "nnUNetTrainerELANResLossDecayingDS_test"),
    ("regions_ignore", "nnUNetTrainerDynamicLoss_test"),
    ("regions_ignore", "nnUNetTrainerELANResLoss_test"),
]


@pytest.mark.parametrize("variant_workspace, trainer", VARIANT_RUNS, indirect=["variant_workspace"], scope="module",
                         ids=[f"{v}-{t}" for v, t in VARIANT_RUNS])
def test_losses_on_regions_and_ignore_label(variant_workspace, tmp_path, trainer):
    ws, variant, dataset = variant_workspace
    raw = ws.raw / ws.dataset_name(dataset)
    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    assert labels["ignore"] == IGNORE and isinstance(labels["organ"], list) == variant.startswith("regions")

    ws.train(dataset, "2d", 0, trainer)
    checkpoint = final_checkpoint(ws, trainer, dataset=dataset)
    train_losses = np.array(checkpoint["logging"]["train_losses"])
    assert len(train_losses) == EPOCHS and np.isfinite(train_losses).all()
    assert np.isfinite(checkpoint["logging"]["val_losses"]).all()
    if trainer.startswith("nnUNetTrainerPhaseLoss"):
        assert logged(ws, trainer, 0, dataset=dataset)[0] == expected_loss_weights(PhaseDiceCESchedule())
        assert checkpoint["logging"]["lrs"] == pytest.approx(PHASE_LRS, rel=1e-5)
    elif trainer.startswith("nnUNetTrainerDynamicLoss"):
        # sigmoid, 4 epochs: k = 20 / 4 = 5, x0 = 2
        assert logged(ws, trainer, 0, dataset=dataset)[0] == expected_loss_weights(SigmoidDiceCESchedule())
    else:
        # Dice + Tversky + (B)CE are each >= 0, unlike nnU-Net's -Dice + CE, and the masked terms stay finite
        assert (train_losses > 0).all()
        if "DecayingDS" in trainer:
            assert_decaying_deep_supervision(logged(ws, trainer, 0, DS_LINE, dataset=dataset)[0])

    # nnU-Net never predicts the ignore label; regions are painted back to labels 1 (organ), 2 (lesion)
    predict_test_cases(ws, dataset, "2d", trainer, tmp_path / "pred", "--disable_tta", evaluate=False)
