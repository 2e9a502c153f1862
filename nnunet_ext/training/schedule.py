"""The ES-UNet paper's optimiser schedule, which any nnunet-ext or nnU-Net trainer can take.

The short training-length schedules (``<Trainer>_ep<E>it<I>[val<V>]``, the ``ShortSchedule`` mixin and the
step timings) live in ``nnunet_ext.training.short_schedule``; their names stay importable from here.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

from nnunet_ext.training.short_schedule import (  # noqa: F401  (earlier import path)
    SHORT_NAME, TIMING_FILE, make_short_schedule_trainer, short_schedule_name, write_step_timing)


class PaperSchedule:
    """ES-UNet paper's optimiser: Adam (0.9, 0.99), lr 1e-3, cosine warm restarts every 25 epochs to 1e-5,
    100 epochs."""

    paper_initial_lr = 1e-3
    paper_min_lr = 1e-5
    paper_restart_epochs = 25
    paper_num_epochs = 100

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = self.paper_initial_lr
        self.num_epochs = self.paper_num_epochs

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, betas=(0.9, 0.99),
                                     weight_decay=self.weight_decay)
        # nnU-Net calls scheduler.step(current_epoch) at each epoch start, so --c resumes on the same curve.
        restart = max(1, min(self.paper_restart_epochs, self.num_epochs))
        scheduler = CosineAnnealingWarmRestarts(optimizer, T_0=restart, eta_min=self.paper_min_lr)
        return optimizer, scheduler
