"""Test-only: any short-schedule trainer with torch.compile forced on, by name ``<ShortName>_compiled``.

nnU-Net never compiles on a CPU (``_do_i_compile`` is False there), so without this a CPU run never
saves or loads the checkpoint of a compiled network. ``nnUNetv2_train 1 3d_fullres 0 -tr
ESUNetDWDRSSTrainer_ep1it2val1_compiled`` trains ``ESUNetDWDRSSTrainer_ep1it2val1`` with the network
and the Dice term compiled exactly where nnU-Net compiles them. Inductor needs minutes per network on
two cores, so the backend defaults to ``aot_eager`` (graph capture + AOT autograd, no code generation);
env ``NNUNET_EXT_TEST_COMPILE_BACKEND`` picks another. nnU-Net's final validation (a sliding-window pass
that recompiles the network for batch 1 under no_grad: ~50 s for ES-UNet on two cores) is skipped;
nnUNetv2_predict runs instead. Used by ``scripts/gpu_check.sh --dry-run``.
"""
import functools
import os
from unittest import mock

import torch

SUFFIX = "_compiled"
BACKEND_ENV = "NNUNET_EXT_TEST_COMPILE_BACKEND"
_made = {}


class ForceCompile:
    """Compile on any device, with the backend from ``NNUNET_EXT_TEST_COMPILE_BACKEND`` (default aot_eager);
    no final validation (ShortSchedule's switch; nnUNetv2_predict runs instead)."""

    skip_final_validation = True

    def _do_i_compile(self):
        return True

    def initialize(self):
        backend = os.environ.get(BACKEND_ENV, "aot_eager")
        self.print_to_log_file(f"test trainer: torch.compile forced on, backend {backend}")
        # nnU-Net calls torch.compile(self.network) and torch.compile(loss.dc) inside initialize()
        with mock.patch.object(torch, "compile", functools.partial(torch.compile, backend=backend)):
            super().initialize()


def __getattr__(name):
    if not name.endswith(SUFFIX) or name.startswith("_"):
        raise AttributeError(name)
    if name not in _made:
        from nnunet_ext_trainers import short_schedule_trainers

        try:
            base = getattr(short_schedule_trainers, name[:-len(SUFFIX)])
        except AttributeError as e:
            raise AttributeError(f"{name}: {e}") from e
        _made[name] = type(name, (ForceCompile, base), {"__module__": __name__, "__doc__": base.__doc__})
    return _made[name]
