"""Find trainer classes exactly as ``nnUNetv2_train`` / ``nnUNetv2_predict`` will, before anything runs.

nnU-Net's lookup (``recursive_find_trainer_class_by_name``) prints every folder it searches; that output is
kept and shown only inside the error when a name is not found.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from nnunet_ext.workspace import env_with_trainers


class TrainerNotFound(ValueError):
    """A trainer name that nnU-Net would not find (the message names it and where nnU-Net looked)."""


@contextlib.contextmanager
def _trainer_path(env: Optional[dict], add_ours: bool = True):
    value = env_with_trainers(env)["nnUNet_extTrainer"] if add_ours else \
        dict(os.environ if env is None else env).get("nnUNet_extTrainer", "")
    old = os.environ.get("nnUNet_extTrainer")
    os.environ["nnUNet_extTrainer"] = value
    try:
        yield value
    finally:
        if old is None:
            os.environ.pop("nnUNet_extTrainer", None)
        else:
            os.environ["nnUNet_extTrainer"] = old


def find_trainer(name: str, env: Optional[dict] = None, add_ours: bool = True):
    """The class nnU-Net finds for ``name`` with ``env``'s nnUNet_extTrainer (plus our trainers folder, unless
    ``add_ours`` is False: then exactly what nnUNetv2_predict would see with ``env``)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    searched = io.StringIO()
    with _trainer_path(env, add_ours) as path, contextlib.redirect_stdout(searched):
        try:
            return recursive_find_trainer_class_by_name(name)
        except (RuntimeError, AssertionError) as error:
            reason = str(error).split(". ")[0] if isinstance(error, RuntimeError) else str(error)
            raise TrainerNotFound(f"nnU-Net cannot use trainer {name!r}: {reason} (searched nnU-Net's trainers "
                                  f"and nnUNet_extTrainer={path}; `nnunet-ext list` shows ours)") from None


def check_trainers(names: Iterable[str], env: Optional[dict] = None) -> Dict[str, type]:
    """Every name looked up; one error listing all unknown names (so one typo costs one run of this, not hours)."""
    found, missing = {}, []
    for name in dict.fromkeys(names):
        try:
            found[name] = find_trainer(name, env)
        except TrainerNotFound:
            missing.append(name)
    if missing:
        raise TrainerNotFound(f"unknown trainer{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}: "
                              f"nnU-Net finds no class by that name in its own trainers nor in nnUNet_extTrainer "
                              f"(`nnunet-ext list` shows ours; a short schedule is <Trainer>_ep<E>it<I>[val<V>])")
    return found


def load_trainer_context(preprocessed_dataset, plans: str, configuration: str, trainer: str):
    """(trainer class, plans manager, configuration manager, input channels, output heads) with nnU-Net's lookup."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(preprocessed_dataset)
    plans_file = folder / f"{plans}.json"
    if not plans_file.is_file():
        raise FileNotFoundError(f"no plans file {plans_file}; run nnUNetv2_plan_and_preprocess "
                                "(or plan_experiment) first")
    plans_manager = PlansManager(load_json(str(plans_file)))
    dataset_json = load_json(str(folder / "dataset.json"))
    if configuration not in plans_manager.available_configurations:
        raise ValueError(f"configuration {configuration!r} is not in {plans_file.name} "
                         f"(available: {plans_manager.available_configurations})")
    configuration_manager = plans_manager.get_configuration(configuration)
    trainer_class = recursive_find_trainer_class_by_name(trainer)
    if trainer_class is None:
        raise ValueError(f"nnU-Net cannot find a trainer class named {trainer!r}")
    n_in = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    n_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    return trainer_class, plans_manager, configuration_manager, n_in, n_out


def initialized_trainer(preprocessed: str, plans_name: str, configuration: str, trainer_name: str, device,
                        patch_override: Optional[List[int]] = None):
    """The trainer class nnU-Net finds, constructed and ``initialize()``d as ``nnUNetv2_train`` does it (it writes
    its log under ``nnUNet_results``: point that at a scratch folder when only measuring)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    folder = Path(preprocessed)
    plans = load_json(str(folder / f"{plans_name}.json"))
    if patch_override:
        plans["configurations"][configuration]["patch_size"] = [int(p) for p in patch_override]
    plans["continue_training"] = False  # what nnUNetv2_train's get_trainer_from_args adds to the plans
    dataset_json = load_json(str(folder / "dataset.json"))
    trainer_class = find_trainer(trainer_name)
    trainer = trainer_class(plans, configuration, 0, dataset_json, device=device)
    trainer.initialize()
    return trainer_class, trainer


def random_training_batch(trainer, batch: int, patch: Sequence[int]) -> dict:
    """A random ``{"data", "target"}`` batch in the shapes nnU-Net's loader + transforms give ``train_step``
    (labels at every deep-supervision scale), for timing and memory measurements."""
    import torch

    data = torch.randn(batch, trainer.num_input_channels, *patch)
    n = max(trainer.label_manager.all_labels) + 1
    scales = trainer._get_deep_supervision_scales() if trainer.enable_deep_supervision else None
    full = torch.randint(0, n, (batch, 1, *patch)).float()
    if scales is None:
        return {"data": data, "target": full}
    target = []
    for scale in scales:
        shape = [int(round(p * s)) for p, s in zip(patch, scale)]
        target.append(full if list(shape) == list(patch) else
                      torch.nn.functional.interpolate(full, size=shape, mode="nearest"))
    return {"data": data, "target": target}
