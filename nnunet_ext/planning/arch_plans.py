"""Derive ``nnUNetPlans_<Arch>.json`` from nnU-Net's own plans: same preprocessing, our network, matched memory.

nnU-Net picks patch and batch size for its PlainConvUNet under a GPU-memory target. To compare another
network fairly (and without re-preprocessing), we keep everything nnU-Net planned - spacing, normalisation,
``data_identifier`` - swap the ``architecture`` entry, and shrink batch then patch until our network's
estimated training memory (nnunet_ext.planning.memory) fits the budget. The default budget is what the
planned PlainConvUNet needs by the same estimate, so both plans ask the same of the GPU.

A network becomes plannable by saying how in its registration: ``@register("architecture", plans={...})``.
"""
from __future__ import annotations

import copy
import importlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_ext.planning.memory import GB, SGD_MOMENTUM_STATES, ActivationModel, MemoryEstimate, \
    estimate_training_memory, fit_activation_model, parameter_bytes

# nnU-Net's planner: smallest batch (UNet_min_batch_size) and smallest bottleneck edge
# (UNet_featuremap_min_edge_length); we shrink no further than nnU-Net itself would plan.
MIN_BATCH_SIZE = 2
MIN_BOTTLENECK_EDGE = 4
IMPORTABLE_KWARGS = ("conv_op", "norm_op", "dropout_op", "nonlin")


class PlanningError(ValueError):
    """Bad input to ``nnunet-ext plans``; the message says what to change."""


class BudgetTooSmall(PlanningError):
    """The network does not fit the budget even at the smallest patch; ``required_gb`` is what would fit."""

    def __init__(self, message: str, required_gb: float):
        super().__init__(message)
        self.required_gb = required_gb


@dataclass(frozen=True)
class ArchitecturePlan:
    """How to write one of our networks into an nnU-Net configuration.

    ``kwargs_builder`` ("module:function", or the function itself) is called as
    ``f(configuration_manager, **builder_kwargs)`` and returns either the constructor kwargs or a whole plans
    ``architecture`` entry (then its ``network_class_name`` / ``_kw_requires_import`` are used). ``total_stride``
    is for networks whose downsampling is fixed rather than taken from the plans' ``strides`` (e.g. a ResNeXt
    encoder: 32).
    """
    network_class_name: str
    kwargs_builder: Union[str, Callable[..., dict]]
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    total_stride: Optional[int] = None
    # our trainers train this network with activation checkpointing by default (nnunet_ext.training.checkpointing)
    checkpointed: bool = False

    def _builder(self):
        if callable(self.kwargs_builder):
            return self.kwargs_builder
        module_name, _, function_name = self.kwargs_builder.partition(":")
        try:
            return getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            raise PlanningError(f"cannot load the kwargs builder {self.kwargs_builder!r}: {error}") from error

    def architecture_entry(self, configuration_manager) -> dict:
        """The plans ``architecture`` entry for this configuration (JSON-serialisable)."""
        built = self._builder()(configuration_manager, **dict(self.builder_kwargs))
        if "arch_kwargs" in built:
            entry = {"network_class_name": built.get("network_class_name", self.network_class_name),
                     "arch_kwargs": dict(built["arch_kwargs"]),
                     "_kw_requires_import": list(built.get("_kw_requires_import", ()))}
        else:
            kwargs = dict(built)
            entry = {"network_class_name": self.network_class_name, "arch_kwargs": kwargs,
                     "_kw_requires_import": [k for k in IMPORTABLE_KWARGS if isinstance(kwargs.get(k), str)]}
        return json.loads(json.dumps(entry))  # tuples -> lists, fails loudly on anything not JSON-able

    def divisor(self, entry: dict, configuration_manager) -> Tuple[int, ...]:
        """Per-axis total stride: the patch size must be a multiple of it."""
        dim = len(configuration_manager.patch_size)
        if self.total_stride is not None:
            return (int(self.total_stride),) * dim
        strides = entry["arch_kwargs"].get("strides") or configuration_manager.pool_op_kernel_sizes
        return total_stride(strides, dim)


def total_stride(strides: Sequence, dim: int) -> Tuple[int, ...]:
    per_axis = np.ones(dim, dtype=np.int64)
    for s in strides:
        per_axis *= np.broadcast_to(np.asarray(s, dtype=np.int64), (dim,))
    return tuple(int(v) for v in per_axis)


_PLANNABLE: Optional[Dict[str, ArchitecturePlan]] = None


def plannable() -> Dict[str, ArchitecturePlan]:
    """Every registered network that says how it is planned (``@register("architecture", plans={...})``), by
    its registry name; built on first use (it imports every architecture module)."""
    global _PLANNABLE
    if _PLANNABLE is None:
        from nnunet_ext.registry import entries

        _PLANNABLE = {}
        for entry in entries("architecture"):
            if entry.plans is None:
                continue
            spec = dict(entry.plans)
            builder = spec.pop("kwargs_builder")
            if isinstance(builder, str) and ":" not in builder:  # a function of the network's own module
                builder = f"{entry.dotted_path.rsplit('.', 1)[0]}:{builder}"
            _PLANNABLE[entry.name] = ArchitecturePlan(entry.dotted_path, builder, **spec)
    return _PLANNABLE


def __getattr__(name: str):
    if name == "PLANNABLE":  # the catalogue above, under the name it had when it was typed by hand
        return plannable()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_plannable(name: str) -> ArchitecturePlan:
    known = plannable()
    if name not in known:
        raise PlanningError(f"unknown architecture {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


# ---------------------------------------------------------------------------------------------------------

@dataclass
class ConfigurationFit:
    """Outcome for one configuration (printed by the command, stored in the plans under ``nnunet_ext``)."""
    configuration: str
    budget_gb: float
    reference_gb: float
    planned_batch_size: int
    planned_patch_size: Tuple[int, ...]
    estimate: MemoryEstimate
    entry: dict = field(repr=False)
    decision: str = ""
    # the network as our trainers build it (activation checkpointing on), when checkpointing kept the plans
    checkpointed_estimate: Optional[MemoryEstimate] = None

    @property
    def trained_estimate(self) -> MemoryEstimate:
        """What the trainers' network needs: the checkpointed estimate where there is one."""
        return self.checkpointed_estimate or self.estimate

    def summary(self) -> dict:
        checkpointed = {"checkpointed_estimate": self.checkpointed_estimate.as_dict()} \
            if self.checkpointed_estimate is not None else {}
        return {"budget_gb": round(self.budget_gb, 4), "nnunet_plainconvunet_gb": round(self.reference_gb, 4),
                "planned_batch_size": self.planned_batch_size, "planned_patch_size": list(self.planned_patch_size),
                "estimate": self.estimate.as_dict(), **checkpointed, "decision": self.decision}


class _NetworkMemory:
    """Parameter bytes and activation model per distinct architecture entry (probing costs a forward)."""

    def __init__(self, input_channels: int, output_channels: int):
        self.input_channels, self.output_channels = input_channels, output_channels
        self._cache: Dict[str, Tuple[int, ActivationModel]] = {}

    def estimate(self, entry: dict, divisor: Sequence[int], patch_size: Sequence[int], batch_size: int,
                 optimizer_states: int) -> MemoryEstimate:
        key = json.dumps(entry, sort_keys=True)
        if key not in self._cache:
            network = build_network(entry, self.input_channels, self.output_channels)
            self._cache[key] = (parameter_bytes(network), fit_activation_model(network, self.input_channels, divisor))
        params, activations = self._cache[key]
        return MemoryEstimate(params, params, optimizer_states * params,
                              batch_size * activations.bytes_per_sample(patch_size), int(batch_size),
                              tuple(int(p) for p in patch_size))

    def checkpointed_estimate(self, entry: dict, divisor: Sequence[int], patch_size: Sequence[int], batch_size: int,
                              optimizer_states: int) -> MemoryEstimate:
        """The network with activation checkpointing on, as our trainers build it, counted at this patch (the
        estimator's meta-device count, which sees what checkpointing recomputes)."""
        from nnunet_ext.training.checkpointing import enable_activation_checkpointing

        network = build_network(entry, self.input_channels, self.output_channels)
        try:
            enable_activation_checkpointing(network)
        except ValueError as error:
            raise PlanningError(f"{entry['network_class_name']} is planned as checkpointed but {error}") from None
        return estimate_training_memory(network, self.input_channels, patch_size, batch_size, divisor,
                                        optimizer_states)

    def per_sample_and_fixed(self, entry: dict, patch_size, optimizer_states: int) -> Tuple[float, float]:
        params, activations = self._cache[json.dumps(entry, sort_keys=True)]
        return activations.bytes_per_sample(patch_size), (2 + optimizer_states) * params


def build_network(entry: dict, input_channels: int, output_channels: int):
    """Instantiate an ``architecture`` entry exactly as nnU-Net's trainer does (deep supervision on)."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    with torch.random.fork_rng():
        return get_network_from_plans(entry["network_class_name"], entry["arch_kwargs"], entry["_kw_requires_import"],
                                      input_channels, output_channels, allow_init=False, deep_supervision=True)


def _with_patch(configuration_manager, patch_size: Sequence[int]):
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    config = copy.deepcopy(configuration_manager.configuration)
    config["patch_size"] = [int(p) for p in patch_size]
    return ConfigurationManager(config)


def fit_configuration(plan: ArchitecturePlan, name: str, configuration_manager, input_channels: int,
                      output_channels: int, memory_gb: Optional[float] = None,
                      optimizer_states: int = SGD_MOMENTUM_STATES,
                      activation_checkpointing: bool = True) -> ConfigurationFit:
    """Batch and patch size for ``plan`` in one configuration: nnU-Net's unless they exceed the budget; then
    batch size down to 2 first, then the patch axis that is largest relative to the median image (as nnU-Net's
    planner) in steps of the total stride, keeping a bottleneck of >= 4 voxels per axis.

    A network our trainers train with activation checkpointing keeps nnU-Net's batch and patch (the fair
    comparison is at the same patch): checkpointing, not a smaller patch, is what brings its memory down. The
    fit then also holds the checkpointed network's estimate at that patch, which the decision names beside the
    budget. ``activation_checkpointing=False`` plans for the ``...NoCheckpointing`` trainers instead (estimate,
    then shrink)."""
    cm = configuration_manager
    planned_batch, planned_patch = int(cm.batch_size), tuple(int(p) for p in cm.patch_size)
    reference_entry = {"network_class_name": cm.network_arch_class_name, "arch_kwargs": cm.network_arch_init_kwargs,
                       "_kw_requires_import": list(cm.network_arch_init_kwargs_req_import)}
    memory = _NetworkMemory(input_channels, output_channels)
    reference = memory.estimate(reference_entry, total_stride(cm.pool_op_kernel_sizes, len(planned_patch)),
                                planned_patch, planned_batch, optimizer_states)
    budget = memory_gb * GB if memory_gb is not None else reference.total_bytes

    patch = list(planned_patch)
    entry = plan.architecture_entry(_with_patch(cm, patch))
    divisor = plan.divisor(entry, cm)
    if any(p % d for p, d in zip(patch, divisor)):
        raise PlanningError(f"{name}: planned patch size {planned_patch} is not divisible by the network's total "
                            f"stride {divisor}")
    minimum = [min(p, MIN_BOTTLENECK_EDGE * d) for p, d in zip(patch, divisor)]
    median = [float(m) for m in cm.median_image_size_in_voxels]
    batch = planned_batch
    estimate = memory.estimate(entry, divisor, patch, batch, optimizer_states)
    if estimate.total_bytes <= budget:
        return ConfigurationFit(name, budget / GB, reference.total_gb, planned_batch, planned_patch, estimate, entry,
                                "kept nnU-Net's batch and patch: the estimate fits the budget")
    if plan.checkpointed and activation_checkpointing:
        checkpointed = memory.checkpointed_estimate(entry, divisor, patch, batch, optimizer_states)
        return ConfigurationFit(
            name, budget / GB, reference.total_gb, planned_batch, planned_patch, estimate, entry,
            f"kept nnU-Net's batch and patch by turning activation checkpointing on (our trainers' default): "
            f"estimated {checkpointed.total_gb:.3f} GB with it against the budget of {budget / GB:.3f} GB "
            f"({checkpointed.total_bytes / budget:.2f}x), {estimate.total_gb:.3f} GB without "
            f"({estimate.total_bytes / budget:.2f}x; measured: docs/benchmarks/real_scale); for the NoCheckpointing "
            f"trainers plan with --no-checkpointing", checkpointed)
    if estimate.total_bytes > budget:  # 1) batch size: the largest that fits, not below nnU-Net's minimum
        per_sample, fixed = memory.per_sample_and_fixed(entry, patch, optimizer_states)
        fitting = math.floor((budget - fixed) / per_sample) if budget > fixed else 0
        batch = max(min(MIN_BATCH_SIZE, planned_batch), min(planned_batch, fitting))
        estimate = memory.estimate(entry, divisor, patch, batch, optimizer_states)
    while estimate.total_bytes > budget:  # 2) patch size, one stride step at a time
        shrinkable = [a for a in range(len(patch)) if patch[a] - divisor[a] >= minimum[a]]
        if not shrinkable:
            over = estimate.total_bytes - budget
            required = math.ceil(estimate.total_bytes / GB * 1000) / 1000  # GB, rounded up to what --memory-gb takes
            raise BudgetTooSmall(
                f"{name}: even at batch size {batch} and the smallest patch size {tuple(patch)} (bottleneck >= "
                f"{MIN_BOTTLENECK_EDGE} voxels per axis for total stride {divisor}) the network needs an estimated "
                f"{estimate.total_gb:.3f} GB, {over / GB:.3f} GB ({estimate.total_bytes / budget:.2f}x) more than the "
                f"budget of {budget / GB:.3f} GB; pass --memory-gb {required:g} (or more), or use a smaller network",
                required)
        axis = max(shrinkable, key=lambda a: (patch[a] / median[a], patch[a]))
        patch[axis] -= divisor[axis]
        entry = plan.architecture_entry(_with_patch(cm, patch))  # some networks size kernels by the patch
        estimate = memory.estimate(entry, divisor, patch, batch, optimizer_states)
    shrunk = [f"batch {planned_batch} -> {batch}"] if batch != planned_batch else []
    shrunk += [f"patch {list(planned_patch)} -> {patch}"] if tuple(patch) != planned_patch else []
    return ConfigurationFit(name, budget / GB, reference.total_gb, planned_batch, planned_patch, estimate, entry,
                            f"shrunk to fit the budget: {', '.join(shrunk)}")


# ---------------------------------------------------------------------------------------------------------

def preprocessed_dataset_folder(dataset: int | str, preprocessed: str | Path | None = None) -> Path:
    root = preprocessed or os.environ.get("nnUNet_preprocessed")
    if not root:
        raise PlanningError("set nnUNet_preprocessed (or pass --preprocessed DIR)")
    root = Path(root)
    text = str(dataset)
    if text.startswith("Dataset"):
        matches = [root / text] if (root / text).is_dir() else []
    else:
        try:
            dataset_id = int(text)
        except ValueError:
            raise PlanningError(f"dataset must be an id or a DatasetXXX_Name folder name, got {dataset!r}") from None
        matches = sorted(p for p in root.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir())
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)} ({', '.join(p.name for p in matches)})"
        raise PlanningError(f"found {found} preprocessed folder for dataset {dataset!r} in {root}; "
                            f"run nnUNetv2_plan_and_preprocess first")
    return matches[0]


def _chosen_configurations(plans: dict, requested: Optional[Sequence[str]]) -> List[str]:
    available = list(plans["configurations"])
    own = [c for c in available if "architecture" in plans["configurations"][c]]
    if requested is None:
        return own
    for c in requested:
        if c not in available:
            raise PlanningError(f"configuration {c!r} is not in the plans; available: {', '.join(available)}")
        if c not in own:
            raise PlanningError(f"configuration {c!r} inherits its network from "
                                f"{plans['configurations'][c].get('inherits_from')!r}; plan that one instead")
    return list(dict.fromkeys(requested))


def plan_architecture(dataset: int | str, architecture: str, configurations: Optional[Sequence[str]] = None,
                      memory_gb: Optional[float] = None, preprocessed: str | Path | None = None,
                      source_plans: str = "nnUNetPlans", optimizer_states: int = SGD_MOMENTUM_STATES,
                      activation_checkpointing: bool = True) -> Tuple[Path, List[ConfigurationFit]]:
    """Write ``<source_plans>_<architecture>.json`` next to the source plans; return its path and the fits.

    Without ``configurations``, every configuration with its own network is converted (those the network
    cannot run, e.g. a 3D-only network on ``2d``, are left out with their reason); the written plans hold only
    converted configurations (and cascades whose stages are all converted), so no configuration silently
    trains nnU-Net's default network under our plans name.
    """
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if int(optimizer_states) != optimizer_states or optimizer_states < 1:
        raise PlanningError(f"optimizer_states is the number of state tensors per parameter (1 for SGD with "
                            f"momentum, 2 for Adam), at least 1; got {optimizer_states}")
    plan = get_plannable(architecture)
    if memory_gb is not None and memory_gb <= 0:
        raise PlanningError(f"--memory-gb must be positive, got {memory_gb}")
    folder = preprocessed_dataset_folder(dataset, preprocessed)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise PlanningError(f"{source} does not exist; run nnUNetv2_plan_and_preprocess first")
    dataset_json_path = folder / "dataset.json"
    if not dataset_json_path.is_file():
        raise PlanningError(f"{dataset_json_path} does not exist; run nnUNetv2_plan_and_preprocess first")
    plans = json.loads(source.read_text())
    dataset_json = json.loads(dataset_json_path.read_text())
    plans_manager = PlansManager(plans)
    output_channels = plans_manager.get_label_manager(dataset_json).num_segmentation_heads

    fits, skipped, too_small = [], {}, []
    for name in _chosen_configurations(plans, configurations):
        cm = plans_manager.get_configuration(name)
        try:
            fits.append(fit_configuration(plan, name, cm, determine_num_input_channels(plans_manager, cm, dataset_json),
                                          output_channels, memory_gb, optimizer_states, activation_checkpointing))
        except BudgetTooSmall as error:  # check every configuration, then name one budget that fits them all
            too_small.append(error)
        except PlanningError:
            raise
        except ValueError as error:  # the builder refuses this configuration (e.g. wrong dimensionality)
            if configurations is not None:
                raise PlanningError(f"{architecture} cannot be planned for {name!r}: {error}") from error
            skipped[name] = str(error)
    if too_small:
        if len(too_small) == 1:
            raise too_small[0]
        raise PlanningError("\n".join(map(str, too_small)) + "\nfor all of these configurations pass --memory-gb "
                            f"{max(e.required_gb for e in too_small):g} (or -c with the configurations you need)")
    if not fits:
        raise PlanningError(f"{architecture} fits none of the configurations: {skipped}")

    new_name = f"{source_plans}_{architecture}"
    new = copy.deepcopy(plans)
    new["plans_name"] = new_name
    converted = {f.configuration for f in fits}
    for f in fits:
        config = new["configurations"][f.configuration]
        config.update(architecture=f.entry, batch_size=f.estimate.batch_size, patch_size=list(f.estimate.patch_size))
    for name, config in list(new["configurations"].items()):
        needs = [config.get("inherits_from"), config.get("previous_stage")] if name not in converted else []
        if name not in converted and (not config.get("inherits_from") or any(n and n not in converted for n in needs)):
            del new["configurations"][name]
    new["nnunet_ext"] = {"architecture": architecture, "derived_from": source_plans,
                         "optimizer_states_per_parameter": optimizer_states,
                         "activation_checkpointing": bool(plan.checkpointed and activation_checkpointing),
                         "memory": {f.configuration: f.summary() for f in fits}, "skipped": skipped}
    out = folder / f"{new_name}.json"
    out.write_text(json.dumps(new, indent=4))
    return out, fits
