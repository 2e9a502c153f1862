"""Test-only DLKUNet / ELANRes-MSCA-UNet trainers: 2 epochs x 2 iterations, deep supervision on or off."""
import torch

from nnunet_ext_trainers.dlkunet_trainers import DLKUNetLTrainer, DLKUNetMTrainer, DLKUNetSTrainer
from nnunet_ext_trainers.elanres_trainers import ELANResMSCAUNetTrainer


class _Short:
    """Two epochs of two iterations, one validation iteration: enough to exercise every code path."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


class _NoDeepSupervision:
    """As nnU-Net's nnUNetTrainerNoDeepSupervision: one full-resolution output."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False


class DLKUNetSTrainer_test(_Short, DLKUNetSTrainer):
    pass


class DLKUNetMTrainer_test(_Short, DLKUNetMTrainer):
    pass


class DLKUNetLTrainerNoDS_test(_NoDeepSupervision, _Short, DLKUNetLTrainer):
    pass


class ELANResMSCAUNetTrainer_test(_Short, ELANResMSCAUNetTrainer):
    pass


class ELANResMSCAUNetTrainerNoDS_test(_NoDeepSupervision, _Short, ELANResMSCAUNetTrainer):
    pass
