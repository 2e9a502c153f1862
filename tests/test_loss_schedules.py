"""DLKUNet phase / sigmoid Dice-CE schedules and ELANRes decaying deep supervision at chosen epochs,
and the trainer mixins reproducing them after a resume."""
import math

import numpy as np
import pytest
import torch

from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunet_ext.losses.region_losses import WeightedRegionLoss
from nnunet_ext.losses.weight_schedules import (DecayingDeepSupervisionSchedule, PhaseDiceCESchedule, PhaseLRScheduler,
                                         SigmoidDiceCESchedule)
from nnunet_ext.training.loss_schedules import (DecayingDeepSupervision, DynamicLossSchedule, ELANResLossFamily,
                                                PhaseLossSchedule)


# ---------------------------------------------------------------- phase-based (Eq. 11)
@pytest.mark.parametrize("epoch, expected", [(0, (0.6, 0.4)), (199, (0.6, 0.4)), (200, (0.7, 0.3)), (399, (0.7, 0.3))])
def test_phase_schedule_paper_400_epochs(epoch, expected):
    # paper epochs [1, 200] = nnU-Net epochs 0..199 are phase one
    assert PhaseDiceCESchedule().weights(epoch, 400) == expected


def test_phase_boundary_is_a_fraction_of_the_training():
    assert PhaseDiceCESchedule().boundary_epoch(1000) == 500
    schedule = PhaseDiceCESchedule(boundary_fraction=0.3)
    assert [schedule.weights(e, 10)[0] for e in range(10)] == [0.6] * 3 + [0.7] * 7


# ---------------------------------------------------------------- sigmoid (Eq. 12-13)
# 400 epochs: k = 20 / 400 = 0.05, x0 = 200.
# epoch 0:   s = 1 / (1 + e^(0.05 * 200)) = 1 / (1 + e^10) = 1 / 22027.4658 = 4.539787e-5
# epoch 200: s = 1 / (1 + e^0) = 0.5
# epoch 399: s = 1 / (1 + e^(-0.05 * 199)) = 1 / (1 + e^-9.95) = 1 / 1.0000477 = 0.99995228
S_FIRST, S_LAST = 4.539787e-5, 0.99995228


def test_sigmoid_intent_dice_rises_ce_falls():
    schedule = SigmoidDiceCESchedule()
    # alpha = A + (1 - A) s = 0.3 + 0.7 s;  beta = 1 + (B - 1) s = 1 - 0.3 s
    assert schedule.weights(0, 400) == pytest.approx((0.3 + 0.7 * S_FIRST, 1 - 0.3 * S_FIRST), rel=1e-6)
    assert schedule.weights(0, 400) == pytest.approx((0.3000318, 0.9999864), rel=1e-6)
    assert schedule.weights(200, 400) == pytest.approx((0.65, 0.85))
    assert schedule.weights(399, 400) == pytest.approx((0.3 + 0.7 * S_LAST, 1 - 0.3 * S_LAST), rel=1e-6)
    assert schedule.weights(399, 400) == pytest.approx((0.9999666, 0.7000143), rel=1e-6)


def test_sigmoid_printed_formula_moves_weight_away_from_dice():
    schedule = SigmoidDiceCESchedule(direction="printed")
    # Eq. 12-13 as printed use (1 - s): alpha = 0.3 + 0.7 (1 - s), beta = 1 - 0.3 (1 - s)
    assert schedule.weights(0, 400) == pytest.approx((0.9999682, 0.7000136), rel=1e-6)
    assert schedule.weights(200, 400) == pytest.approx((0.65, 0.85))
    assert schedule.weights(399, 400) == pytest.approx((0.3000334, 0.9999857), rel=1e-6)


def test_sigmoid_scales_with_training_length_and_accepts_a_fixed_k():
    # the same relative position gives the same weights whatever the length
    assert SigmoidDiceCESchedule().weights(25, 100) == pytest.approx(SigmoidDiceCESchedule().weights(250, 1000))
    # an explicit per-epoch k = 0.05 at 400 epochs equals the default steepness 20 / 400
    assert SigmoidDiceCESchedule(k=0.05).weights(123, 400) == pytest.approx(SigmoidDiceCESchedule().weights(123, 400))
    # short run, 4 epochs: k = 5, x0 = 2; epoch 1: s = 1 / (1 + e^5) = 0.00669285
    assert SigmoidDiceCESchedule().weights(1, 4)[0] == pytest.approx(0.3 + 0.7 * 0.00669285, rel=1e-6)


def test_sigmoid_intent_is_monotone():
    dice = [SigmoidDiceCESchedule().weights(e, 50)[0] for e in range(50)]
    ce = [SigmoidDiceCESchedule().weights(e, 50)[1] for e in range(50)]
    assert all(np.diff(dice) > 0) and all(np.diff(ce) < 0)


def test_schedule_bad_input_is_named():
    with pytest.raises(ValueError, match="direction"):
        SigmoidDiceCESchedule(direction="reversed")
    with pytest.raises(ValueError, match="boundary_fraction"):
        PhaseDiceCESchedule(boundary_fraction=1.5)
    with pytest.raises(ValueError, match="first_phase"):
        PhaseDiceCESchedule(first_phase=(-0.1, 1.0))
    with pytest.raises(ValueError, match="num_epochs"):
        PhaseDiceCESchedule().weights(0, 0)
    with pytest.raises(ValueError, match="decay"):
        DecayingDeepSupervisionSchedule(decay=1.5)
    with pytest.raises(ValueError, match="initial_alpha"):
        DecayingDeepSupervisionSchedule(initial_alpha=0)


# ---------------------------------------------------------------- decaying deep supervision (Eq. 1-2)
@pytest.mark.parametrize("epoch, alpha", [(0, 0.4), (29, 0.4), (30, 0.32), (59, 0.32), (60, 0.256), (95, 0.2048)])
def test_decaying_alpha(epoch, alpha):
    # 0.4, 0.4 * 0.8 = 0.32, 0.32 * 0.8 = 0.256, 0.256 * 0.8 = 0.2048
    assert DecayingDeepSupervisionSchedule().alpha(epoch) == pytest.approx(alpha)


def test_decaying_weights_full_resolution_one_rest_alpha():
    np.testing.assert_allclose(DecayingDeepSupervisionSchedule().weights(4, 30), [1, 0.32, 0.32, 0.32])
    # normalised: 1 + 3 * 0.32 = 1.96
    np.testing.assert_allclose(DecayingDeepSupervisionSchedule(normalize=True).weights(4, 30),
                               [1 / 1.96, 0.32 / 1.96, 0.32 / 1.96, 0.32 / 1.96])
    np.testing.assert_allclose(DecayingDeepSupervisionSchedule(period_epochs=2).weights(3, 5), [1, 0.256, 0.256])


# ---------------------------------------------------------------- per-phase learning rate
def test_phase_lr_scheduler():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = PhaseLRScheduler(optimizer, 0.01, 10, boundary_epoch=5)
    expected = {0: 0.01, 4: 0.01 * 0.6 ** 0.9, 5: 0.01 * 0.01 * 0.5 ** 0.9, 9: 0.01 * 0.01 * 0.1 ** 0.9}
    for epoch, lr in expected.items():
        scheduler.step(epoch)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)


# ---------------------------------------------------------------- mixins and resume
class FakeTrainer:
    """Just enough of nnUNetTrainer for the mixins: epoch counters, the DS-wrapped loss, a log."""

    def __init__(self, num_epochs=20, current_epoch=0, n_outputs=4):
        self.num_epochs, self.current_epoch, self.n_outputs, self.log = num_epochs, current_epoch, n_outputs, []
        self.is_ddp = False
        self.loss = DeepSupervisionWrapper(self.build_segmentation_loss(), self.deep_supervision_weights())

    def build_segmentation_loss(self):
        return DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                              dice_class=MemoryEfficientSoftDiceLoss)

    def deep_supervision_weights(self):
        return np.ones(self.n_outputs)

    def _get_deep_supervision_scales(self):
        return [[1.0]] * self.n_outputs

    def on_train_epoch_start(self):
        pass

    def print_to_log_file(self, *args, **kwargs):
        self.log.append(" ".join(map(str, args)))


class PhaseFake(PhaseLossSchedule, FakeTrainer):
    pass


class DynamicDecayingFake(DecayingDeepSupervision, DynamicLossSchedule, FakeTrainer):
    deep_supervision_schedule = DecayingDeepSupervisionSchedule(period_epochs=3)


def loss_state(trainer):
    return trainer.loss.loss.weight_dice, trainer.loss.loss.weight_ce, trainer.loss.weight_factors


@pytest.mark.parametrize("cls", [PhaseFake, DynamicDecayingFake])
@pytest.mark.parametrize("resume_epoch", [0, 7, 10, 19])
def test_resumed_trainer_sets_the_same_weights(cls, resume_epoch):
    """Stepping 0..e (uninterrupted) and constructing at e (nnU-Net --c restores current_epoch) agree."""
    uninterrupted = cls()
    for epoch in range(resume_epoch + 1):
        uninterrupted.current_epoch = epoch
        uninterrupted.on_train_epoch_start()
    resumed = cls(current_epoch=resume_epoch)
    resumed.on_train_epoch_start()
    assert loss_state(resumed) == loss_state(uninterrupted)


def test_mixins_set_the_schedule_weights_each_epoch():
    trainer = DynamicDecayingFake(num_epochs=20)
    trainer.current_epoch = 10  # midpoint: (0.65, 0.85); 10 // 3 = 3 decays: 0.4 * 0.8^3 = 0.2048
    trainer.on_train_epoch_start()
    assert trainer.loss.loss.weight_dice == pytest.approx(0.65) and trainer.loss.loss.weight_ce == pytest.approx(0.85)
    assert trainer.loss.weight_factors == pytest.approx((1.0, 0.2048, 0.2048, 0.2048))
    assert trainer.log == ["loss weights (epoch 10): dice 0.650000 ce 0.850000",
                           "deep supervision weights (epoch 10): 1.000000 0.204800 0.204800 0.204800"]
    phase = PhaseFake(num_epochs=20)
    for epoch, expected in [(9, (0.6, 0.4)), (10, (0.7, 0.3))]:
        phase.current_epoch = epoch
        phase.on_train_epoch_start()
        assert loss_state(phase)[:2] == expected


def test_weights_are_already_right_when_the_loss_is_built():
    # validation before any epoch start, or a loss built after a resume, must not use epoch-0 weights
    assert loss_state(DynamicDecayingFake(current_epoch=19))[0] == \
        pytest.approx(SigmoidDiceCESchedule().weights(19, 20)[0])


def test_schedule_on_a_loss_without_dice_ce_weights_is_refused():
    class ELANResFake(ELANResLossFamily, FakeTrainer):
        label_manager = type("LM", (), {"has_regions": False, "ignore_label": None})()

        def dice_over_batch(self):  # ExtTrainer's hook (the plans' batch_dice)
            return True

    assert isinstance(ELANResFake().loss.loss, WeightedRegionLoss)

    class Wrong(PhaseLossSchedule, ELANResFake):
        pass

    with pytest.raises(RuntimeError, match="weight_dice"):
        Wrong()


def test_phase_learning_rate_option():
    class Base(FakeTrainer):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
            return optimizer, None

    class Trainer(PhaseLossSchedule, Base):
        phase_learning_rate = True
        initial_lr = 0.01

    optimizer, scheduler = Trainer(num_epochs=20).configure_optimizers()
    assert isinstance(scheduler, PhaseLRScheduler) and scheduler.boundary_epoch == 10
    scheduler.step(10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.01 * 0.5 ** 0.9)
    assert math.isclose(scheduler.lr_at(9), 0.01 * 0.55 ** 0.9)


def test_phase_learning_rate_after_resume_matches_uninterrupted():
    """nnU-Net --c builds a fresh optimizer and scheduler and calls step(current_epoch): the phase rate must
    not depend on the steps taken before (the scheduler's counter starts at 0 again)."""
    def fresh():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        return optimizer, PhaseLRScheduler(optimizer, 0.01, 20, boundary_epoch=10)

    uninterrupted, scheduler = fresh()
    rates = {}
    for epoch in range(20):
        scheduler.step(epoch)
        rates[epoch] = uninterrupted.param_groups[0]["lr"]
    for resume_epoch in (7, 10, 19):
        resumed, scheduler = fresh()
        scheduler.step(resume_epoch)
        assert resumed.param_groups[0]["lr"] == rates[resume_epoch]
    # epoch 10 (first of the second phase): 0.01 * 0.01 * (1 - 10 / 20)^0.9 = 1e-4 * 0.535887
    assert rates[10] == pytest.approx(1e-4 * 0.535887, rel=1e-5)
