"""Test-only trainers: project trainers with a schedule short enough for CI (found via nnUNet_extTrainer)."""
import os

import torch

from nnunet_ext_trainers.es_unet_trainers import (ESUNetDWDRSSPaperTrainer, ESUNetDWDTrainer, ESUNetDWDRSSTrainer,
                                                 UNet3PlusDWDRSSTrainer)
from nnunet_ext_trainers.vanilla_trainers import nnUNetTrainerDWDRSS
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class _Short:
    """Two epochs of two iterations, one validation iteration: enough to exercise every code path."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
        self.save_every = 1  # a checkpoint_latest after epoch 0, so `--c` can be tested

    def on_epoch_start(self):
        # NNUNET_EXT_TEST_INTERRUPT_AT_EPOCH=N simulates a run killed at the start of epoch N
        if os.environ.get("NNUNET_EXT_TEST_INTERRUPT_AT_EPOCH") == str(self.current_epoch):
            raise SystemExit(f"simulated interruption at epoch {self.current_epoch}")
        super().on_epoch_start()


class ESUNetDWDTrainer_test(_Short, ESUNetDWDTrainer):
    pass


class ESUNetDWDRSSTrainer_test(_Short, ESUNetDWDRSSTrainer):
    pass


class UNet3PlusDWDRSSTrainer_test(_Short, UNet3PlusDWDRSSTrainer):
    pass


class nnUNetTrainerDWDRSS_test(_Short, nnUNetTrainerDWDRSS):
    pass


class nnUNetTrainer_test(_Short, nnUNetTrainer):
    pass


class _OneStepNoValidation:
    """One epoch of one iteration and no final validation: only checks that a trainer trains (the other
    foundation tests exercise validation and prediction)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 1
        self.num_val_iterations_per_epoch = 1

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("final validation skipped (test trainer)")


class ESUNetDWDRSSPaperTrainer_test(_OneStepNoValidation, ESUNetDWDRSSPaperTrainer):
    pass
