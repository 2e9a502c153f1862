"""End-to-end test helpers: a workspace that also sees the test-only trainers."""
from __future__ import annotations

from pathlib import Path

from nnunet_ext.workspace import NnUNetWorkspace as _Workspace

TEST_TRAINERS = Path(__file__).resolve().parent / "trainers"


class NnUNetWorkspace(_Workspace):
    """nnunet_ext.workspace.NnUNetWorkspace with tests/trainers on nnUNet_extTrainer."""

    def __init__(self, root):
        super().__init__(root, extra_trainer_dirs=[TEST_TRAINERS])
