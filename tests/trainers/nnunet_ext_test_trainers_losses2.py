"""Test-only loss-schedule trainers: 4 epochs x 1 iteration, a checkpoint every epoch, and an
on-purpose interruption (env NNUNET_EXT_TEST_STOP_AT_EPOCH=k stops once epochs 0..k-1 are done)
so that ``nnUNetv2_train --c`` can be tested. The final validation (nnU-Net's sliding-window predictor
over the validation cases, minutes on a shared CPU) is skipped: the tests run nnUNetv2_predict instead."""
import os

import torch

from nnunet_ext.losses.schedules import DecayingDeepSupervisionSchedule
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.loss_schedules import DecayingDeepSupervision, DynamicLossSchedule
from nnunet_ext_trainers.dlkunet_trainers import DLKUNetLDynamicLossTrainer, DLKUNetLPhaseLossTrainer
from nnunet_ext_trainers.elanres_trainers import ELANResMSCAUNetPaperLossTrainer
from nnunet_ext_trainers.loss_schedule_trainers import (nnUNetTrainerDecayingDS, nnUNetTrainerDynamicLoss,
                                                        nnUNetTrainerELANResLoss, nnUNetTrainerELANResLossDecayingDS,
                                                        nnUNetTrainerPhaseLoss, nnUNetTrainerPhaseLossPhaseLR)

STOP_ENV = "NNUNET_EXT_TEST_STOP_AT_EPOCH"
# one decay per epoch, so four epochs show four different deep-supervision weights
EVERY_EPOCH = DecayingDeepSupervisionSchedule(period_epochs=1)


class _Short4:
    """Four epochs (two per phase) of one iteration, one validation iteration, a checkpoint every epoch."""

    short_epochs = 4

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.short_epochs
        self.num_iterations_per_epoch = 1
        self.num_val_iterations_per_epoch = 1
        self.save_every = 1

    def on_epoch_end(self):
        super().on_epoch_end()  # saves checkpoint_latest, then counts the epoch
        stop = os.environ.get(STOP_ENV)
        if stop is not None and self.current_epoch == int(stop):
            raise RuntimeError(f"test: training interrupted on purpose before epoch {self.current_epoch}")

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("final validation skipped (test trainer)")


class nnUNetTrainerPhaseLoss_test(_Short4, nnUNetTrainerPhaseLoss):
    pass


class nnUNetTrainerPhaseLossPhaseLR_test(_Short4, nnUNetTrainerPhaseLossPhaseLR):
    pass


class nnUNetTrainerDynamicLoss_test(_Short4, nnUNetTrainerDynamicLoss):
    pass


class nnUNetTrainerELANResLoss_test(_Short4, nnUNetTrainerELANResLoss):
    pass


class nnUNetTrainerDecayingDS_test(_Short4, nnUNetTrainerDecayingDS):
    deep_supervision_schedule = EVERY_EPOCH


class nnUNetTrainerELANResLossDecayingDS_test(_Short4, nnUNetTrainerELANResLossDecayingDS):
    deep_supervision_schedule = EVERY_EPOCH


class nnUNetTrainerDynamicLossDecayingDS_test(_Short4, DecayingDeepSupervision, DynamicLossSchedule, ExtTrainer):
    """Both kinds of schedule in one run, for the resume test."""

    deep_supervision_schedule = EVERY_EPOCH


class ELANResMSCAUNetPaperLossTrainer_test(_Short4, ELANResMSCAUNetPaperLossTrainer):
    deep_supervision_schedule = EVERY_EPOCH


class _NarrowDLKUNet:
    """Widths / 4 (24 ... 384 channels, 1.2 M instead of 17.7 M parameters): about 5x faster on CPU. The depth
    stays the paper's L (5 stages, total stride 16), so the phantom's 32 x 32 2d patch still fits (2 x 2
    bottleneck; a forward pass of the full-width L works down to 16 x 16)."""

    @classmethod
    def dlkunet_kwargs(cls, configuration_manager) -> dict:
        kwargs = super().dlkunet_kwargs(configuration_manager)
        return {**kwargs, "features_per_stage": [f // 4 for f in kwargs["features_per_stage"]]}


class DLKUNetLPhaseLossTrainer_test(_Short4, _NarrowDLKUNet, DLKUNetLPhaseLossTrainer):
    short_epochs = 2  # one epoch per phase: DLKUNet processes are the slowest here


class DLKUNetLDynamicLossTrainer_test(_Short4, _NarrowDLKUNet, DLKUNetLDynamicLossTrainer):
    short_epochs = 2
