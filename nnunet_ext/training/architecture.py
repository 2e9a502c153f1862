"""The base of the "architecture from plans" trainer mixins: which network, and from which kwargs.

A plans file written by ``nnunet-ext plans`` names one of our networks by dotted path and holds its
constructor kwargs; nnU-Net's own plans name PlainConvUNet. Every architecture mixin asks the same
question, :meth:`PlansArchitecture.plans_name_this_network`: kwargs from the plans when they name the
mixin's network, derived from the configuration's stage layout otherwise, and an error when they name
another of our networks (training ES-UNet on UNet 3+ plans is a mistake, not a fallback).
"""
from __future__ import annotations

import pydoc
from typing import List, Optional, Sequence

import numpy as np
from torch import nn

from nnunet_ext.training.checkpointing import CheckpointedArchitecture


def output_scales(strides) -> List[List[float]]:
    """nnU-Net's deep-supervision scales for a network with these per-stage strides (one per output)."""
    return [list(s) for s in 1 / np.cumprod(np.array(strides, dtype=float), axis=0)][:-1]


def check_patch_divisible(patch_size, strides, network: str) -> None:
    """Deep-supervision targets are made by resizing with round(); they match the outputs only if the
    patch is divisible by the network's total stride."""
    total = np.prod(np.array(strides), axis=0)
    if any(int(p) % int(t) for p, t in zip(patch_size, total)):
        raise ValueError(f"{network}: patch size {list(patch_size)} is not divisible by the network's total stride "
                         f"{total.tolist()}, so deep-supervision targets would not match its outputs; use a "
                         f"configuration with a larger patch or switch deep supervision off")


def _our_networks() -> Sequence[type]:
    from nnunet_ext.registry import entries

    return [pydoc.locate(e.dotted_path) for e in entries("architecture")]


def named_class(configuration_manager) -> Optional[type]:
    """The class the plans' ``network_class_name`` names (None if it names nothing importable)."""
    try:
        return pydoc.locate(str(configuration_manager.network_arch_class_name))
    except pydoc.ErrorDuringImport:
        return None


class PlansArchitecture:
    """Trainer-mixin base: the network class a mixin builds and the one "do the plans name it" check."""

    network_class: type = None  # set by every architecture mixin

    @classmethod
    def plans_name_this_network(cls, configuration_manager) -> bool:
        """True when the plans' architecture is ``network_class``; False for a network not ours (nnU-Net's)."""
        named = named_class(configuration_manager)
        if named is cls.network_class:
            return True
        if named is not None and named in _our_networks():
            raise ValueError(f"{cls.__name__} builds {cls.network_class.__name__}, but the plans configuration names "
                             f"{configuration_manager.network_arch_class_name}; use the matching trainer or plans")
        return False

    @classmethod
    def plans_architecture(cls, configuration_manager) -> Optional[dict]:
        """The plans' ``arch_kwargs`` / ``_kw_requires_import`` (copies) when they name this network, else None."""
        if not cls.plans_name_this_network(configuration_manager):
            return None
        return {"arch_kwargs": dict(configuration_manager.network_arch_init_kwargs),
                "_kw_requires_import": list(configuration_manager.network_arch_init_kwargs_req_import)}


class StridedUNetArchitecture(PlansArchitecture, CheckpointedArchitecture):
    """U-Nets built straight from constructor kwargs whose outputs follow their per-stage strides (DLKUNet,
    ELANRes-MSCA-UNet): deep-supervision scales come from the network actually built, since its depth
    need not match the plans."""

    @classmethod
    def network_kwargs(cls, configuration_manager) -> dict:
        """The constructor kwargs for this configuration (a mixin's own rule)."""
        raise NotImplementedError

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        kwargs = cls.network_kwargs(configuration_manager)
        if enable_deep_supervision:
            check_patch_divisible(configuration_manager.patch_size, kwargs["strides"], cls.__name__)
        return cls.checkpointed(cls.network_class(num_input_channels, num_output_channels, enable_deep_supervision,
                                                  **kwargs))

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        return output_scales(self.network_kwargs(self.configuration_manager)["strides"])
