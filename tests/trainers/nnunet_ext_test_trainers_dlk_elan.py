"""Test-only DLKUNet / ELANRes-MSCA-UNet trainers: 2 epochs x 2 iterations, deep supervision on or off,
and narrow networks (widths / 4, at least 4 channels) so CPU CI stays fast. The full-width presets are
covered by the unit tests; here the point is the nnU-Net pipeline around them."""
import torch

from nnunet_ext_trainers.dlkunet_trainers import DLKUNetLTrainer, DLKUNetMTrainer, DLKUNetSTrainer
from nnunet_ext_trainers.elanres_trainers import ELANResMSCAUNetTrainer

WIDTH_DIVISOR = 4


def _narrow(kwargs: dict) -> dict:
    return {**kwargs, "features_per_stage": [max(4, f // WIDTH_DIVISOR) for f in kwargs["features_per_stage"]]}


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


class _NarrowDLKUNet:
    @classmethod
    def dlkunet_kwargs(cls, configuration_manager) -> dict:
        return _narrow(super().dlkunet_kwargs(configuration_manager))


class _NarrowELANRes:
    @classmethod
    def elanres_kwargs(cls, configuration_manager) -> dict:
        return _narrow(super().elanres_kwargs(configuration_manager))


class DLKUNetSTrainer_test(_Short, _NarrowDLKUNet, DLKUNetSTrainer):
    pass


class DLKUNetMTrainer_test(_Short, _NarrowDLKUNet, DLKUNetMTrainer):
    pass


class DLKUNetLTrainerNoDS_test(_NoDeepSupervision, _Short, _NarrowDLKUNet, DLKUNetLTrainer):
    pass


class ELANResMSCAUNetTrainer_test(_Short, _NarrowELANRes, ELANResMSCAUNetTrainer):
    pass


class ELANResMSCAUNetTrainerNoDS_test(_NoDeepSupervision, _Short, _NarrowELANRes, ELANResMSCAUNetTrainer):
    pass
