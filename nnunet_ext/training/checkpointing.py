"""Activation checkpointing: the same network and numbers, a fraction of the training memory.

A network opts in by naming, in ``checkpoint_units``, the module types whose intermediates are cheap to
recompute but expensive to keep (ES-UNet: every path into a decoder stage, which upsamples the decoder's
N*C channels to full resolution before its conv); a module with a finer scheme of its own offers
``set_activation_checkpointing(enabled)`` (ES-UNet's fusion conv, computed in checkpointed groups of
output channels). In training, each such module keeps only its
inputs and output; its intermediates are recomputed during the backward pass. Outputs and gradients are
those of the plain network; the cost is one more forward of the wrapped modules.

The wrapping is torch's own (``checkpoint_wrapper``, non-reentrant ``torch.utils.checkpoint``), which
removes its wrapper prefix from ``state_dict()`` and adds it back on ``load_state_dict()``: checkpoints
of checkpointed and plain networks are interchangeable. Under ``torch.no_grad()`` (validation,
nnUNetv2_predict) the wrapped modules run as they are.
"""
from __future__ import annotations

import contextlib
from functools import partial
from typing import Iterator, Tuple, Type

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointWrapper, apply_activation_checkpointing, checkpoint_wrapper)
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint


def checkpoint_units(network: nn.Module) -> Tuple[Type[nn.Module], ...]:
    """The module types a network declares for checkpointing (looks through torch.compile's wrapper)."""
    network = getattr(network, "_orig_mod", network)
    units = tuple(getattr(network, "checkpoint_units", ()))
    if not units and not any(hasattr(m, "set_activation_checkpointing") for m in network.modules()):
        raise ValueError(f"{type(network).__name__} declares no checkpoint_units, so activation checkpointing "
                         f"does not know which modules to recompute; use a network that supports it "
                         f"(ES-UNet, UNet 3+, DLKUNet, ELANRes-MSCA-UNet)")
    return units


@contextlib.contextmanager
def _running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """During the recomputation, batch norms normalise as in the forward but do not count the batch twice.

    Momentum 0 leaves the running statistics exactly as they are while the op (and what it saves for
    backward) stays the same; the batch counter is put back afterwards.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, int(m.num_batches_tracked)) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (momentum, count) in zip(norms, saved):
                m.momentum = momentum
                m.num_batches_tracked.fill_(count)


def _contexts(module: nn.Module):
    return contextlib.nullcontext(), _running_stats_frozen(module)


def checkpoint_call(function, *args, norms_of: nn.Module):
    """``function(*args)`` under non-reentrant checkpointing; the batch norms of ``norms_of`` count the batch once."""
    if not torch.is_grad_enabled():  # nothing to save (validation, prediction): run it as it is
        return function(*args)
    if torch.compiler.is_compiling():
        # compiled: AOT autograd traces the buffer updates once, in the forward graph
        return checkpoint(function, *args, use_reentrant=False)
    return checkpoint(function, *args, use_reentrant=False, context_fn=partial(_contexts, norms_of))


def _checkpoint_module(module: nn.Module, *args, **kwargs):
    if kwargs:
        raise TypeError(f"checkpointed {type(module).__name__} takes positional arguments only")
    return checkpoint_call(module, *args, norms_of=module)


def enable_activation_checkpointing(network: nn.Module) -> nn.Module:
    """Wraps every module of the network's ``checkpoint_units`` types (once; idempotent) and returns it."""
    units = checkpoint_units(network)
    if not is_checkpointed(network):
        if units:
            apply_activation_checkpointing(
                network, checkpoint_wrapper_fn=partial(checkpoint_wrapper, checkpoint_fn=_checkpoint_module),
                check_fn=lambda module: isinstance(module, units))
        # modules with a finer scheme of their own (e.g. ES-UNet's fusion conv, in channel groups)
        for module in network.modules():
            if hasattr(module, "set_activation_checkpointing"):
                module.set_activation_checkpointing(True)
    return network


def is_checkpointed(network: nn.Module) -> bool:
    return any(isinstance(m, CheckpointWrapper) or getattr(m, "activation_checkpointing", False)
               for m in network.modules())


class NoActivationCheckpointing:
    """Trainer mixin (put it first): the plain network, faster, for GPUs with memory to spare."""

    activation_checkpointing: bool = False


class CheckpointedArchitecture:
    """Architecture-mixin part: ``activation_checkpointing`` switches the wrapping for a trainer class."""

    activation_checkpointing: bool = False

    @classmethod
    def checkpointed(cls, network: nn.Module) -> nn.Module:
        """Call at the end of ``build_network_architecture``."""
        return enable_activation_checkpointing(network) if cls.activation_checkpointing else network
