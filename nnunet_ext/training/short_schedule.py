"""Short schedules: any trainer, trained for a few epochs of a few iterations (benchmarks, demos, tests).

One mechanism, two ways in:
- by name, for any trainer nnU-Net or ``nnUNet_extTrainer`` knows: ``<Trainer>_ep<E>it<I>[val<V>]``
  (``trainers/short_schedule_trainers.py`` answers such names with :func:`make_short_schedule_trainer`);
- by class, for trainers that change more than the length (the test trainers in ``tests/trainers``):
  ``class MyTrainer_test(ShortSchedule, MyTrainer): short_epochs = 4``.

Trainers made from a name also record the seconds of every training step (:class:`StepTiming`), which the
benchmark and the demo read.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import time
from typing import Optional, Type

import numpy as np
import torch

from nnunet_ext.device_sync import sync_device
from nnunet_ext.training.cpu_threads import CpuThreadsFromEnvironment

# <BaseTrainer>_ep<E>it<I>[val<V>] e.g. nnUNetTrainer_ep5it10val2 -- answered by trainers/short_schedule_trainers.py
SHORT_NAME = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*?)_ep(?P<epochs>\d+)it(?P<iters>\d+)(?:val(?P<val>\d+))?$")

# a simulated interruption for any short-schedule trainer, without another class name (a resumed run with
# `nnUNetv2_train --c` must use the same trainer name, so the switch cannot be part of the name)
STOP_ENV = "NNUNET_EXT_STOP_AT_EPOCH"


def short_schedule_name(base: str, epochs: int, iterations: int, val_iterations: Optional[int] = None) -> str:
    """The trainer name that runs ``base`` for ``epochs`` x ``iterations`` (see trainers/short_schedule_trainers.py)."""
    name = f"{base}_ep{int(epochs)}it{int(iterations)}"
    return name + (f"val{int(val_iterations)}" if val_iterations is not None else "")


def _positive(value, what: str, owner: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"trainer {owner!r}: {what} must be an integer >= 1, got {value!r}")


class ShortSchedule:
    """Training length set by class attributes; put it first in the bases so it overrides the trainer's own.

    ``short_val_iterations = None`` runs ``max(1, short_iterations // 5)`` validation iterations per epoch;
    ``short_save_every = None`` keeps nnU-Net's checkpoint interval (50 epochs, so in practice only the final
    checkpoint). ``stop_at_epoch = k`` (or env ``NNUNET_EXT_STOP_AT_EPOCH=k``, which wins) simulates a run
    killed once epochs 0..k-1 are done and their checkpoint_latest is written, so that ``nnUNetv2_train --c``
    can be tested (with any trainer, by name too). ``skip_final_validation`` drops nnU-Net's sliding-window
    validation after training (minutes on a CPU; tests that run nnUNetv2_predict need not pay for it twice).

    ``short_plot_every``: nnU-Net redraws progress.png after every epoch, ~0.5 s on a CPU; in a short schedule's
    1-2 s epochs that is a quarter of the run's wall time. It is redrawn every ``short_plot_every`` epochs
    (``None``: about ten times per run) and always after the last epoch, so the final plot is nnU-Net's own.

    ``keep_window_checkpoint``: also save the model of the epoch where the convergence criterion's window starts
    (``checkpoint_ep<k>.pth``, :func:`nnunet_ext.benchmark.convergence.window_checkpoint_name`), so that the
    benchmark can score it on the held-out cases beside the final model.
    """

    short_epochs: int = 2
    short_iterations: int = 2
    short_val_iterations: Optional[int] = None
    short_save_every: Optional[int] = None
    stop_at_epoch: Optional[int] = None
    skip_final_validation: bool = False
    short_plot_every: Optional[int] = None
    keep_window_checkpoint: bool = True

    @classmethod
    def check_short_schedule(cls) -> None:
        """A clear error for lengths nnU-Net would silently accept (0 epochs trains nothing and saves nothing)."""
        for attribute in ("short_epochs", "short_iterations", "short_val_iterations", "short_save_every",
                          "stop_at_epoch", "short_plot_every"):
            value = getattr(cls, attribute)
            if value is not None or attribute in ("short_epochs", "short_iterations"):
                _positive(value, attribute, cls.__name__)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        self.check_short_schedule()
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.short_epochs
        self.num_iterations_per_epoch = self.short_iterations
        self.num_val_iterations_per_epoch = self.short_val_iterations or max(1, self.short_iterations // 5)
        if self.short_save_every is not None:
            self.save_every = self.short_save_every
        draw = self.logger.plot_progress_png
        self.logger.plot_progress_png = lambda folder: draw(folder) if self.plots_this_epoch() else None

    def plots_this_epoch(self) -> bool:
        """Whether progress.png is redrawn at the end of ``current_epoch`` (see ``short_plot_every``)."""
        every = self.short_plot_every or max(1, self.num_epochs // 10)
        last = self.current_epoch + 1 in (self.num_epochs, self.stop_epoch())
        return last or (self.current_epoch + 1) % every == 0

    def stop_epoch(self) -> Optional[int]:
        """The epoch before which this run stops on purpose (env ``NNUNET_EXT_STOP_AT_EPOCH`` over the class's)."""
        value = os.environ.get(STOP_ENV)
        if value is None or value == "":
            return self.stop_at_epoch
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{STOP_ENV}={value!r}: expected an epoch number >= 1")
        return int(value)

    def window_checkpoint(self) -> Optional[str]:
        """The file name of the checkpoint kept at the start of the convergence window (None: none kept)."""
        from nnunet_ext.benchmark.convergence import window_checkpoint_name

        return window_checkpoint_name(self.num_epochs) if self.keep_window_checkpoint else None

    def on_epoch_end(self):
        stop = self.stop_epoch()
        stopping = stop is not None and self.current_epoch + 1 == stop
        if stopping:
            self.save_every = 1  # nnU-Net writes checkpoint_latest of this epoch, so `--c` resumes after it
        window = self.window_checkpoint()
        if window is not None and window == f"checkpoint_ep{self.current_epoch + 1}.pth":
            self.save_checkpoint(os.path.join(self.output_folder, window))  # before the count, as nnU-Net saves
        super().on_epoch_end()  # (maybe) writes checkpoint_latest, then counts the epoch
        if stopping:
            raise SystemExit(f"simulated interruption before epoch {stop} (epochs 0..{stop - 1} done; "
                             f"{STOP_ENV} / stop_at_epoch of {type(self).__name__})")

    def perform_actual_validation(self, save_probabilities: bool = False):
        if not self.skip_final_validation:
            return super().perform_actual_validation(save_probabilities)
        self.print_to_log_file(f"final validation skipped ({type(self).__name__}.skip_final_validation)")


class StepTiming:
    """Records the seconds of every training step in ``train_step_timing.json`` next to the checkpoints."""

    def train_step(self, batch: dict) -> dict:
        start = time.perf_counter()
        result = super().train_step(batch)  # returns the loss on the CPU, so the step is finished
        sync_device(self.device)
        self.__dict__.setdefault('_step_seconds', []).append(time.perf_counter() - start)
        self.__dict__.setdefault('_step_epochs', []).append(int(self.current_epoch))
        return result

    def on_epoch_end(self):
        super().on_epoch_end()
        write_step_timing(self)  # every epoch, so an interrupted run keeps its timings for --c

    def on_train_end(self):
        write_step_timing(self)
        super().on_train_end()


def make_short_schedule_trainer(base_cls: Type, epochs: int, iterations: int, val_iterations: Optional[int],
                                name: str, module: str) -> Type:
    """A subclass of ``base_cls`` that only changes the training length and times its steps."""
    if epochs < 1 or iterations < 1 or (val_iterations is not None and val_iterations < 1):
        raise ValueError(f"trainer {name!r}: epochs, iterations and val iterations must be >= 1")
    doc = f"{base_cls.__name__} for {epochs} epochs x {iterations} iterations (short schedule)."
    # a base that is a short schedule already (a test trainer, say) keeps its own ShortSchedule in its bases
    bases = (StepTiming, CpuThreadsFromEnvironment, base_cls) if issubclass(base_cls, ShortSchedule) else \
        (ShortSchedule, StepTiming, CpuThreadsFromEnvironment, base_cls)
    return type(name, bases,
                {"short_epochs": int(epochs), "short_iterations": int(iterations),
                 "short_val_iterations": None if val_iterations is None else int(val_iterations),
                 "__doc__": doc, "__module__": module})


def find_base_trainer(name: str) -> Optional[Type]:
    """The trainer class ``name`` as nnU-Net would find it: its own trainers first, then every folder of
    ``nnUNet_extTrainer`` in order (ours always included, imported as ``nnunet_ext_trainers``)."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    from nnunet_ext.workspace import trainers_dir

    cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                      "nnunetv2.training.nnUNetTrainer")
    if cls is not None:
        return cls
    ours = os.path.realpath(trainers_dir())
    folders = [os.path.realpath(p) for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    for folder in dict.fromkeys(folders if ours in folders else [ours, *folders]):
        if folder == ours:
            cls = _find_in_our_trainers(name)
        elif os.path.isdir(folder):
            cls = recursive_find_python_class(folder, name, None, base_folder=folder,
                                              cleanup_imports_from_base_folder=True)
        if inspect.isclass(cls):
            return cls
    return None


def _find_in_our_trainers(name: str) -> Optional[Type]:
    import importlib
    import pkgutil

    import nnunet_ext_trainers

    for info in pkgutil.iter_modules(nnunet_ext_trainers.__path__):  # alphabetical, as nnU-Net imports them
        if info.name == "short_schedule_trainers":
            continue
        candidate = getattr(importlib.import_module(f"nnunet_ext_trainers.{info.name}"), name, None)
        if inspect.isclass(candidate):
            return candidate
    return None


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
