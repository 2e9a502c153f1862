"""Modules that moved, importable under their old names (CHANGELOG.md, "Unreleased: moved").

Users' scripts import our modules by path. Instead of a thin re-export file per old path, this table
answers the old name with the new module itself (the same module object, so one class identity and
one home per concept). Trainer modules are not here: nnU-Net finds trainers by class name, and every
class name of an earlier version is still found (tests/test_moved.py).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "nnunet_ext.cost": "nnunet_ext.network_cost",
    "nnunet_ext.benchmark.cost": "nnunet_ext.benchmark.cost_job",
    "nnunet_ext.demo": "nnunet_ext.benchmark.demo",
    "nnunet_ext.paths": "nnunet_ext.workspace",
    "nnunet_ext.losses.schedules": "nnunet_ext.losses.weight_schedules",
    "nnunet_ext.benchmark.evaluation": "nnunet_ext.benchmark.case_scores",
    "nnunet_ext.benchmarks": "nnunet_ext.benchmark",
    "nnunet_ext.benchmarks.amplification_speed": "nnunet_ext.benchmark.augmentation_speed",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder + loader: an old name imports the new module and is bound to it in ``sys.modules``."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def __init__(self):
        self._own_specs = {}

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # the import system stamped the old name's spec on the module; give it back its own
        module.__spec__ = self._own_specs[module.__name__]


def install() -> None:
    """Once per process, ahead of the path finder (an old name has no file, so nothing else answers it)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())
