"""Where nnU-Net must look for our trainers."""
from __future__ import annotations

import os


def trainers_dir() -> str:
    """The folder to put in ``nnUNet_extTrainer``: the installed ``nnunet_ext_trainers`` package."""
    import nnunet_ext_trainers

    return os.path.abspath(list(nnunet_ext_trainers.__path__)[0])


def env_with_trainers(env: dict | None = None) -> dict:
    """A copy of ``env`` (default: os.environ) whose nnUNet_extTrainer includes our trainers folder."""
    env = dict(os.environ if env is None else env)
    ours = trainers_dir()
    existing = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if ours not in existing:
        existing.insert(0, ours)
    env["nnUNet_extTrainer"] = os.pathsep.join(existing)
    return env
