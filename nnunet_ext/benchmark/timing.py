"""Timing a trainer's own training step and a network's forward pass, shared by the cost job (studies' cost
tables), real_scale and the GPU check.

On a GPU the clock only means something after a device synchronise. On a CPU at real plans one step can take
ten minutes, so the timed steps also stop at a time budget (never before the first timed one)."""
from __future__ import annotations

import time
from typing import List, Optional

from nnunet_ext.device_sync import sync_device


def timed_train_steps(trainer, batch: dict, timed: int, device, warmup: int = 1,
                      budget_s: Optional[float] = None) -> tuple:
    """The trainer's own ``train_step`` on ``batch``: ``warmup`` untimed steps (allocation, kernel choice), then
    up to ``timed`` ones, fewer once the timed ones have taken ``budget_s`` seconds; their wall and process-CPU
    seconds and the last step's loss."""
    times, cpu_times, loss = [], [], float("nan")
    trainer.network.train()
    for step in range(warmup + timed):
        sync_device(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = float(trainer.train_step(batch)["loss"])  # the loss on the CPU: the step is finished
        sync_device(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            if budget_s is not None and sum(times) >= budget_s:
                break
    return times, cpu_times, loss


def timed_forwards(net, x, device, repeats: int, warmup: int = 1) -> List[float]:
    """Milliseconds of ``repeats`` calls ``net(x)`` after ``warmup`` untimed ones (the first call pays for
    allocation and kernel choice). The caller sets the mode: ``eval()``, ``no_grad``, autocast."""
    times = []
    for call in range(warmup + repeats):
        sync_device(device)
        start = time.perf_counter()
        net(x)
        sync_device(device)
        if call >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return times
