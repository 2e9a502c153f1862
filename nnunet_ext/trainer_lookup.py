"""Find trainer classes exactly as ``nnUNetv2_train`` / ``nnUNetv2_predict`` will, before anything runs.

nnU-Net's lookup (``recursive_find_trainer_class_by_name``) prints every folder it searches; that output is
kept and shown only inside the error when a name is not found.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Dict, Iterable, Optional

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
        raise FileNotFoundError(f"no plans file {plans_file}; run nnUNetv2_plan_and_preprocess (or plan_experiment) first")
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
