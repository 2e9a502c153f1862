"""Honour ``OMP_NUM_THREADS`` on a CPU, which ``nnUNetv2_train`` overrides.

nnU-Net's training entry point calls ``torch.set_num_threads(multiprocessing.cpu_count())`` for ``-device cpu``,
so every run takes every core. Runs side by side (the benchmark's ``--cpus-per-run``, a CPU cluster node shared
by several jobs) then oversubscribe the machine: each thread waits at every barrier for a descheduled sibling
and a step gets many times slower. The trainer is built after that call, so setting the count here wins.
"""
from __future__ import annotations

import os

import torch


def requested_cpu_threads() -> int:
    """``OMP_NUM_THREADS`` as a positive int, or 0 when unset or not a positive int."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 0


class CpuThreadsFromEnvironment:
    """Trainer mixin: on a CPU, use ``OMP_NUM_THREADS`` threads when it is set (nnU-Net's own choice otherwise)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        threads = requested_cpu_threads()
        if threads and self.device.type == 'cpu':
            torch.set_num_threads(threads)
