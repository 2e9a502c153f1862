"""The papers' own optimisers, learning-rate schedules, epoch counts and batch sizes as trainer mixins.

Each mixin sets nnU-Net's hyper-parameters in ``__init__`` (nnU-Net's signature, as docs/developing.md
requires) and returns its optimiser and scheduler from ``configure_optimizers``. Every learning rate is a
pure function of the epoch (``StepDecayLR.lr``): nnU-Net calls ``lr_scheduler.step(current_epoch)`` at
every epoch start, so ``nnUNetv2_train --c`` resumes on the same curve. What each paper states and what we
decided where it is silent: docs/dlkunet.md, docs/elanres_msca_unet.md, docs/sts_net.md, docs/cascade.md,
docs/trainers.md (ES-UNet).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from torch.optim.lr_scheduler import _LRScheduler

from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_ext.training.schedule import PaperSchedule

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class StepDecayLR:
    """lr(e) = initial_lr * factor^(e // every); from ``restart_epoch`` r on: restart_lr * factor^((e - r) // every)."""

    initial_lr: float
    factor: float = 1.0
    every: int = 1
    restart_epoch: Optional[int] = None
    restart_lr: Optional[float] = None

    def __post_init__(self):
        if self.initial_lr <= 0 or not 0 < self.factor <= 1 or int(self.every) < 1:
            raise ValueError(f"StepDecayLR needs initial_lr > 0, factor in (0, 1] and every >= 1; got "
                             f"{self.initial_lr}, {self.factor}, {self.every}")
        if (self.restart_epoch is None) != (self.restart_lr is None):
            raise ValueError("StepDecayLR: restart_epoch and restart_lr go together")
        if self.restart_epoch is not None and (self.restart_epoch < 1 or self.restart_lr <= 0):
            raise ValueError(f"StepDecayLR restart needs epoch >= 1 and lr > 0; got {self.restart_epoch}, "
                             f"{self.restart_lr}")

    def lr(self, epoch: int) -> float:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self.restart_epoch is not None and epoch >= self.restart_epoch:
            return float(self.restart_lr * self.factor ** ((epoch - self.restart_epoch) // int(self.every)))
        return float(self.initial_lr * self.factor ** (epoch // int(self.every)))


class EpochLRScheduler(_LRScheduler):
    """Sets every parameter group's lr to ``lr_at(epoch)``; stepped like nnU-Net's PolyLRScheduler."""

    def __init__(self, optimizer, lr_at: Callable[[int], float]):
        self.lr_at = lr_at
        self.ctr = 0
        super().__init__(optimizer, -1)

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        for group in self.optimizer.param_groups:
            group['lr'] = self.lr_at(current_step)
        self._last_lr = [group['lr'] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        return self._last_lr


class PaperOptimizer:
    """Base mixin: optimiser, learning-rate schedule, weight decay, epochs and batch size from class attributes.

    ``paper_lr_schedule = None`` keeps nnU-Net's poly decay from ``paper_initial_lr``; ``None`` for epochs
    or batch size keeps nnU-Net's value (the paper does not say)."""

    paper_optimizer: str = "adam"                  # "adam" | "adamw" | "sgd" (nnU-Net's SGD, Nesterov 0.99)
    paper_initial_lr: float = 1e-3
    paper_lr_schedule: Optional[StepDecayLR] = None
    paper_weight_decay: float = 0.0
    paper_betas: Tuple[float, float] = (0.9, 0.999)  # torch's defaults, Kingma & Ba's
    paper_num_epochs: Optional[int] = None
    paper_batch_size: Optional[int] = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.paper_optimizer not in OPTIMIZERS:
            raise ValueError(f"{type(self).__name__}: optimizer {self.paper_optimizer!r} is unknown; "
                             f"expected one of {OPTIMIZERS}")
        self.initial_lr = self.paper_initial_lr
        self.weight_decay = self.paper_weight_decay
        if self.paper_num_epochs is not None:
            self.num_epochs = self.paper_num_epochs
        if self.paper_batch_size is not None:
            # nnU-Net reads the batch size from the configuration (and splits it over DDP ranks from there)
            self.configuration_manager.configuration['batch_size'] = int(self.paper_batch_size)

    def build_optimizer(self, parameters) -> torch.optim.Optimizer:
        if self.paper_optimizer == "sgd":
            return torch.optim.SGD(parameters, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                                   nesterov=True)
        cls = torch.optim.AdamW if self.paper_optimizer == "adamw" else torch.optim.Adam
        return cls(parameters, lr=self.initial_lr, betas=self.paper_betas, weight_decay=self.weight_decay)

    def configure_optimizers(self):
        optimizer = self.build_optimizer(self.network.parameters())
        if self.paper_lr_schedule is None:
            return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, EpochLRScheduler(optimizer, self.paper_lr_schedule.lr)


class DLKUNetPaperOptimizer(PaperOptimizer):
    """DLKUNet: Adam, lr 1e-3, weight decay 1e-5, x0.9 every 20 epochs, lr 1e-5 from epoch 200, 400 epochs.

    "reducing the learning rate by 90% every 20 epochs" is read as the authors' code does it (x0.9): x0.1 would
    reach 1e-13 by epoch 200, where the text then "adjusts" it to 1e-5 (docs/dlkunet.md)."""

    paper_optimizer = "adam"
    paper_initial_lr = 1e-3
    paper_weight_decay = 1e-5
    paper_lr_schedule = StepDecayLR(initial_lr=1e-3, factor=0.9, every=20, restart_epoch=200, restart_lr=1e-5)
    paper_num_epochs = 400


class ELANResPaperOptimizer(PaperOptimizer):
    """ELANRes-MSCA-UNet: Adam, lr 1e-4, -20% (x0.8) every 30 epochs; no weight decay or epoch count given."""

    paper_optimizer = "adam"
    paper_initial_lr = 1e-4
    paper_lr_schedule = StepDecayLR(initial_lr=1e-4, factor=0.8, every=30)


class STSNetPaperOptimizer(PaperOptimizer):
    """STS-Net: AdamW, lr 1e-4 (constant: no schedule given), batch 4, 100 epochs; torch's AdamW weight decay 1e-2."""

    paper_optimizer = "adamw"
    paper_initial_lr = 1e-4
    paper_weight_decay = 1e-2
    paper_lr_schedule = StepDecayLR(initial_lr=1e-4)
    paper_num_epochs = 100
    paper_batch_size = 4


class StageSkippingPaperOptimizer(PaperOptimizer):
    """Multi-stage segmentor: lr 1.5e-3, batch 32 (Tables 6-7, small/large ROIs); no optimiser named: nnU-Net's SGD."""

    paper_optimizer = "sgd"
    paper_initial_lr = 1.5e-3
    paper_weight_decay = 3e-5  # nnU-Net's; the paper gives none
    paper_batch_size = 32


class ESUNetPaperSchedule(PaperSchedule):
    """ES-UNet paper's optimiser and schedule (``PaperSchedule``) with weight decay 0: the paper names none."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.weight_decay = 0.0
