"""Test-only loss-schedule trainers: 4 epochs x 1 iteration (env NNUNET_EXT_STOP_AT_EPOCH=k interrupts a run
once epochs 0..k-1 are done and checkpointed, so that ``nnUNetv2_train --c`` can be tested). The final validation
(nnU-Net's sliding-window predictor over the validation cases, minutes on a shared CPU) is skipped: the tests run
nnUNetv2_predict instead."""
from nnunet_ext.losses.weight_schedules import DecayingDeepSupervisionSchedule
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.loss_schedules import DecayingDeepSupervision, DynamicLossSchedule
from nnunet_ext.training.short_schedule import ShortSchedule
from nnunet_ext_test_mixins import NarrowDLKUNet
from nnunet_ext_trainers.dlkunet_trainers import (DLKUNetLDynamicLossTrainer, DLKUNetLPhaseLossTrainer,
                                                 nnUNetTrainerDynamicLoss, nnUNetTrainerPhaseLoss,
                                                 nnUNetTrainerPhaseLossPhaseLR)
from nnunet_ext_trainers.elanres_trainers import (ELANResMSCAUNetPaperLossTrainer, nnUNetTrainerDecayingDS,
                                                 nnUNetTrainerELANResLoss, nnUNetTrainerELANResLossDecayingDS)

# one decay per epoch, so four epochs show four different deep-supervision weights
EVERY_EPOCH = DecayingDeepSupervisionSchedule(period_epochs=1)


class _FourEpochs(ShortSchedule):
    """Four epochs (two per phase) of one iteration, one validation iteration."""

    short_epochs, short_iterations, skip_final_validation = 4, 1, True


class nnUNetTrainerPhaseLoss_test(_FourEpochs, nnUNetTrainerPhaseLoss):
    pass


class nnUNetTrainerPhaseLossPhaseLR_test(_FourEpochs, nnUNetTrainerPhaseLossPhaseLR):
    pass


class nnUNetTrainerDynamicLoss_test(_FourEpochs, nnUNetTrainerDynamicLoss):
    pass


class nnUNetTrainerELANResLoss_test(_FourEpochs, nnUNetTrainerELANResLoss):
    pass


class nnUNetTrainerDecayingDS_test(_FourEpochs, nnUNetTrainerDecayingDS):
    deep_supervision_schedule = EVERY_EPOCH


class nnUNetTrainerELANResLossDecayingDS_test(_FourEpochs, nnUNetTrainerELANResLossDecayingDS):
    deep_supervision_schedule = EVERY_EPOCH


class nnUNetTrainerDynamicLossDecayingDS_test(_FourEpochs, DecayingDeepSupervision, DynamicLossSchedule, ExtTrainer):
    """Both kinds of schedule in one run, for the resume test."""

    deep_supervision_schedule = EVERY_EPOCH


class ELANResMSCAUNetPaperLossTrainer_test(_FourEpochs, ELANResMSCAUNetPaperLossTrainer):
    deep_supervision_schedule = EVERY_EPOCH


class DLKUNetLPhaseLossTrainer_test(_FourEpochs, NarrowDLKUNet, DLKUNetLPhaseLossTrainer):
    short_epochs = 2  # one epoch per phase: DLKUNet processes are the slowest here


class DLKUNetLDynamicLossTrainer_test(_FourEpochs, NarrowDLKUNet, DLKUNetLDynamicLossTrainer):
    short_epochs = 2
