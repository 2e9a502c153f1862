"""Waiting for a device's queued work. CUDA runs kernels asynchronously, so a wall clock read before this measures
the launch, not the work; a CPU has nothing queued. Shared by the training step timing (training/short_schedule.py)
and the benchmark's timings (benchmark/timing.py)."""
from __future__ import annotations


def sync_device(device) -> None:
    """Return once ``device`` (a ``torch.device``) has finished its queued work."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
