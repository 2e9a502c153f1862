"""Test-only STS-Net amplification trainers: two epochs of two iterations (found via nnUNet_extTrainer)."""
import torch

from nnunet_ext_trainers.amplification_trainers import nnUNetTrainerAmplify, nnUNetTrainerAmplifyM3


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
