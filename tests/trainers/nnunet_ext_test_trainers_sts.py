"""Test-only STS-Net trainers: two epochs of two iterations (found via nnUNet_extTrainer)."""
import torch

from nnunet_ext_trainers.sts_net_trainers import STSNet25DTrainer, STSNetDWDTrainer, STSNetTrainer


class _Short:
    """Two epochs of two iterations, one validation iteration, batch 2: every code path, little CPU."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


class _SmallBatch:
    """ResNeXt50 on two CPU cores: two images (2d) / two windows (2.5D) per step."""

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        self.batch_size = 2


class STSNetTrainer_test(_Short, _SmallBatch, STSNetTrainer):
    pass


class STSNetDWDTrainer_test(_Short, _SmallBatch, STSNetDWDTrainer):
    pass


class STSNet25DTrainer_test(_Short, _SmallBatch, STSNet25DTrainer):
    pass
