"""Training-length and optimiser schedules that any nnunet-ext or nnU-Net trainer can take."""
from __future__ import annotations

import json
import os
import re
import time
from typing import Optional, Type

import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

# <BaseTrainer>_ep<E>it<I>[val<V>] e.g. nnUNetTrainer_ep5it10val2 -- read by trainers/short_schedules.py
SHORT_NAME = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*?)_ep(?P<epochs>\d+)it(?P<iters>\d+)(?:val(?P<val>\d+))?$")


def short_schedule_name(base: str, epochs: int, iterations: int, val_iterations: Optional[int] = None) -> str:
    """The trainer name that runs ``base`` for ``epochs`` x ``iterations`` (see trainers/short_schedules.py)."""
    name = f"{base}_ep{int(epochs)}it{int(iterations)}"
    return name + (f"val{int(val_iterations)}" if val_iterations is not None else "")


def make_short_schedule_trainer(base_cls: Type, epochs: int, iterations: int, val_iterations: Optional[int],
                                name: str, module: str) -> Type:
    """A subclass of ``base_cls`` that only changes the training length (for benchmarks, demos, tests)."""
    if epochs < 1 or iterations < 1 or (val_iterations is not None and val_iterations < 1):
        raise ValueError(f"trainer {name!r}: epochs, iterations and val iterations must be >= 1")
    val_iters = val_iterations if val_iterations is not None else max(1, iterations // 5)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        base_cls.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        self.num_iterations_per_epoch = iterations
        self.num_val_iterations_per_epoch = val_iters

    def train_step(self, batch: dict) -> dict:
        start = time.perf_counter()
        result = base_cls.train_step(self, batch)  # returns the loss on the CPU, so the step is finished
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.__dict__.setdefault('_step_seconds', []).append(time.perf_counter() - start)
        self.__dict__.setdefault('_step_epochs', []).append(int(self.current_epoch))
        return result

    def on_epoch_end(self):
        base_cls.on_epoch_end(self)
        write_step_timing(self)  # every epoch, so an interrupted run keeps its timings for --c

    def on_train_end(self):
        write_step_timing(self)
        base_cls.on_train_end(self)

    doc = f"{base_cls.__name__} for {epochs} epochs x {iterations} iterations (short schedule)."
    return type(name, (base_cls,), {"__init__": __init__, "train_step": train_step, "on_epoch_end": on_epoch_end,
                                     "on_train_end": on_train_end, "__doc__": doc, "__module__": module})


TIMING_FILE = "train_step_timing.json"


def _earlier_timings(path: str, first_epoch: int) -> tuple[list, list]:
    """Step seconds and epochs of a previous process's epochs before ``first_epoch`` (a --c resume), else empty."""
    if first_epoch == 0 or not os.path.isfile(path):
        return [], []
    try:
        with open(path) as f:
            old = json.load(f)
        pairs = [(float(s), int(e)) for s, e in zip(old["step_seconds"], old["step_epochs"]) if int(e) < first_epoch]
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or from before step_epochs: start afresh
        return [], []
    return [s for s, _ in pairs], [e for _, e in pairs]


def write_step_timing(trainer) -> None:
    """Save the measured seconds per training iteration next to the checkpoints (read by demo/benchmark).

    On a resumed run (``nnUNetv2_train --c``) the earlier process's timings of the epochs before the resume
    point are kept; epochs it timed after the checkpoint it resumed from are redone, so theirs are dropped."""
    new_steps = trainer.__dict__.get('_step_seconds', [])
    if trainer.local_rank != 0 or not new_steps:
        return
    new_epochs = trainer.__dict__.get('_step_epochs', [0] * len(new_steps))
    path = os.path.join(trainer.output_folder, TIMING_FILE)
    old_steps, old_epochs = _earlier_timings(path, min(new_epochs))
    steps, epochs = old_steps + list(new_steps), old_epochs + list(new_epochs)
    # the first iterations pay for allocator warm-up and worker start: report the median of the rest too
    steady = steps[min(2, len(steps) - 1):]
    record = {"iterations_timed": len(steps), "seconds_per_iteration_median": float(np.median(steady)),
              "seconds_per_iteration_mean": float(np.mean(steps)), "batch_size": int(trainer.batch_size),
              "patch_size": [int(x) for x in trainer.configuration_manager.patch_size],
              "device": str(trainer.device), "step_seconds": [round(float(x), 5) for x in steps],
              "step_epochs": [int(e) for e in epochs]}
    tmp = f"{path}.{os.getpid()}.tmp"  # written each epoch: a kill mid-write must not lose the earlier epochs
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


class PaperSchedule:
    """ES-UNet paper's optimiser: Adam (0.9, 0.99), lr 1e-3, cosine warm restarts every 25 epochs to 1e-5, 100 epochs."""

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
