"""Test-only STS-Net amplification trainers: short schedules (found via nnUNet_extTrainer)."""
import torch

from nnunet_ext_trainers.amplification_trainers import (STSNet25DAmplifyTrainer, STSNetAmplifyTrainer,
                                                        nnUNetTrainerAmplify, nnUNetTrainerAmplifyM3)


class _ShortAmplify:
    """Two epochs of two iterations, one validation iteration."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


class nnUNetTrainerAmplify_test(_ShortAmplify, nnUNetTrainerAmplify):
    pass


class nnUNetTrainerAmplifyM3_test(_ShortAmplify, nnUNetTrainerAmplifyM3):
    pass


class _ShortSTSNet(_ShortAmplify):
    """ResNeXt50 on two CPU cores: one epoch of two steps of two images (2d) / two windows (2.5D)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        self.batch_size = 2

    def perform_actual_validation(self, save_probabilities: bool = False):
        # STS-Net's sliding-window validation (2d and 2.5D) is tested in test_e2e_sts_net.py; here
        # nnUNetv2_predict checks inference, and the final validation would only add minutes of CPU
        self.print_to_log_file("final validation skipped (test trainer)")


class STSNetAmplifyTrainer_test(_ShortSTSNet, STSNetAmplifyTrainer):
    pass


class STSNet25DAmplifyTrainer_test(_ShortSTSNet, STSNet25DAmplifyTrainer):
    pass
