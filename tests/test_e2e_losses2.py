"""End to end through the real nnU-Net CLI: the loss-schedule trainers train, predict, log the weights
their schedule prescribes at every epoch, and ``--c`` resumes the schedule where it stopped."""
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from e2e_utils import NnUNetWorkspace
from nnunet_ext.losses.schedules import DecayingDeepSupervisionSchedule, PhaseDiceCESchedule, SigmoidDiceCESchedule
from nnunet_ext.workspace import CommandFailed

pytestmark = pytest.mark.e2e

DATASET = 612
EPOCHS = 4  # tests/trainers/nnunet_ext_test_trainers_losses2.py
STOP_ENV = "NNUNET_EXT_TEST_STOP_AT_EPOCH"
LOSS_LINE = re.compile(r"loss weights \(epoch (\d+)\): dice ([\d.]+) ce ([\d.]+)")
DS_LINE = re.compile(r"deep supervision weights \(epoch (\d+)\): ([\d. ]+)")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = NnUNetWorkspace(tmp_path_factory.mktemp("losses2"))
    ws.generate(DATASET, name="LossPhantom", num_cases=5, shape=(16, 48, 48), spacing=(3.0, 1.0, 1.0),
                num_test_cases=1, seed=3)
    ws.plan_and_preprocess(DATASET, configurations=("2d",))
    return ws


def logged(ws, trainer, fold, pattern=LOSS_LINE):
    """{epoch: logged weights} from every training log of the run (later logs win), and the logs' texts."""
    folder = ws.model_folder(DATASET, "2d", trainer) / f"fold_{fold}"
    texts = [p.read_text() for p in sorted(folder.glob("training_log_*.txt"))]
    values = {}
    for text in texts:
        for match in pattern.finditer(text):
            values[int(match[1])] = tuple(float(v) for v in " ".join(match.groups()[1:]).split())
    return values, texts


def train_and_predict(ws, trainer, tmp_path):
    ws.train(DATASET, "2d", 0, trainer)
    raw = ws.raw / ws.dataset_name(DATASET)
    out = tmp_path / "pred"
    ws.predict(DATASET, "2d", trainer, raw / "imagesTs", out, "--disable_tta")
    predictions = sorted(out.glob("*.nii.gz"))
    assert [p.name for p in predictions] == [p.name for p in sorted((raw / "labelsTs").glob("*.nii.gz"))]
    labels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(predictions[0]))))
    assert set(labels.tolist()) <= {0, 1, 2}


def expected_loss_weights(schedule):
    return {e: tuple(round(w, 6) for w in schedule.weights(e, EPOCHS)) for e in range(EPOCHS)}


@pytest.mark.parametrize("trainer, schedule", [
    ("nnUNetTrainerPhaseLoss_test", PhaseDiceCESchedule()),
    ("nnUNetTrainerDynamicLoss_test", SigmoidDiceCESchedule()),
])
def test_dice_ce_schedule_trainers(workspace, tmp_path, trainer, schedule):
    train_and_predict(workspace, trainer, tmp_path)
    weights, _ = logged(workspace, trainer, 0)
    # phase: epochs 0, 1 at (0.6, 0.4), epochs 2, 3 at (0.7, 0.3); sigmoid: k = 20 / 4 = 5, x0 = 2
    assert weights == expected_loss_weights(schedule)


@pytest.mark.parametrize("trainer", ["nnUNetTrainerDecayingDS_test", "ELANResMSCAUNetPaperLossTrainer_test"])
def test_decaying_deep_supervision_trainers(workspace, tmp_path, trainer):
    train_and_predict(workspace, trainer, tmp_path)
    weights, _ = logged(workspace, trainer, 0, DS_LINE)
    assert sorted(weights) == list(range(EPOCHS))
    schedule = DecayingDeepSupervisionSchedule(period_epochs=1)
    for epoch, ws_weights in weights.items():
        # 1 on full resolution, 0.4 * 0.8^epoch on every lower one: 0.4, 0.32, 0.256, 0.2048
        assert ws_weights[0] == 1.0 and len(ws_weights) >= 2
        assert ws_weights[1:] == pytest.approx([schedule.alpha(epoch)] * (len(ws_weights) - 1), abs=1e-6)


def test_elanres_loss_trainer(workspace, tmp_path):
    train_and_predict(workspace, "nnUNetTrainerELANResLoss_test", tmp_path)
    log = logged(workspace, "nnUNetTrainerELANResLoss_test", 0)[1][-1]
    losses = [float(v) for v in re.findall(r"train_loss (-?[\d.]+)", log)]
    # Dice + Tversky + CE are each >= 0, unlike nnU-Net's -Dice + CE: the logged loss is positive
    assert len(losses) == EPOCHS and all(v > 0 for v in losses)


def test_resume_continues_the_schedules(workspace):
    trainer = "nnUNetTrainerDynamicLossDecayingDS_test"
    workspace.train(DATASET, "2d", 0, trainer)  # uninterrupted
    with pytest.raises(CommandFailed, match="interrupted on purpose"):
        workspace.train(DATASET, "2d", 1, trainer, env={STOP_ENV: "2"})
    workspace.train(DATASET, "2d", 1, trainer, "--c")

    for pattern in (LOSS_LINE, DS_LINE):
        uninterrupted, _ = logged(workspace, trainer, 0, pattern)
        resumed, texts = logged(workspace, trainer, 1, pattern)
        assert len(texts) == 2  # one log per nnUNetv2_train call
        after_resume = {int(m[1]) for m in pattern.finditer(texts[-1])}
        assert after_resume == {2, 3}  # the resumed run picked up at epoch 2 ...
        assert resumed == uninterrupted  # ... with exactly the uninterrupted run's weights
        assert resumed[2] != resumed[0]  # and the schedule really moved
