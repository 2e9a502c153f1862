"""Device-independent estimate of the memory one training step needs: a network at (batch size, patch size).

nnU-Net sizes its plans with ``compute_conv_feature_map_size``, which only PlainConvUNet-like networks
implement. Ours have other layouts (full-scale skips, attention, large kernels), so we measure instead:

    total = parameters + gradients + optimizer state + activations

Activations are what autograd keeps between forward and backward. They are counted with
``torch.autograd.graph.saved_tensors_hooks`` during one forward (plus a Dice/CE-like loss on every output,
as nnU-Net's loss saves softmax / log-softmax): at the patch itself on the meta device (shapes only, no
memory; ``estimate_training_memory``), or, for callers that evaluate many patches (``nnunet-ext plans``)
and networks the meta device cannot run, at two small CPU inputs fitted as
``bytes_per_sample = intercept + per_voxel * voxels``; convolutional activations scale exactly with the
voxel count, the intercept takes what does not (e.g. squeeze-excitation vectors). Everything is fp32:
under nnU-Net's mixed precision a GPU stores most activations in half precision, so compare estimates
with each other (as ``nnunet-ext plans`` does). Absolute numbers are fp32 and leave out transients
(activation gradients outside a recomputed region, convolution workspaces): 0.77-0.96 of a measured CPU
peak (docs/benchmarks/real_scale/estimates.md).

Under activation checkpointing (``torch.utils.checkpoint``, nnunet_ext.training.checkpointing) autograd
keeps only each checkpointed region's inputs; the peak comes in the backward pass, when a region is
recomputed. So the probe runs checkpointed regions plainly and records what each saves, and the activations
are what the network keeps plus, for the largest region (nested regions along their deepest path), what
its recomputation saves and the gradients of its inputs (``CheckpointRegion.peak_bytes``). Without
checkpointing that is the saved tensors alone. Counting only the saved tensors read ES-UNet at stock plans
as 9.3 GB against a measured 16.7 GB (docs/benchmarks/real_scale).

``python -m nnunet_ext.planning.memory`` compares the estimate with a measured peak (process RSS of a
real CPU forward + backward + optimizer step, in a fresh subprocess); see docs/plans.md.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Dict, Iterator, List, Mapping, Sequence, Tuple
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.process_memory import RssGrowth

GB = 1024 ** 3
# nnU-Net trains with SGD + Nesterov momentum: one state tensor per parameter (Adam keeps two)
SGD_MOMENTUM_STATES = 1


@dataclass(frozen=True)
class ActivationModel:
    """Bytes autograd saves for one sample: ``intercept + per_voxel * voxels`` (fitted at two sizes)."""
    intercept: float
    per_voxel: float
    probes: Tuple[Tuple[Tuple[int, ...], int], ...]  # (probe shape, measured bytes) the fit came from

    def bytes_per_sample(self, patch_size: Sequence[int]) -> float:
        return self.intercept + self.per_voxel * float(np.prod(patch_size, dtype=np.float64))


@dataclass(frozen=True)
class MemoryEstimate:
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: float
    batch_size: int
    patch_size: Tuple[int, ...]

    @property
    def total_bytes(self) -> float:
        return self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    def as_dict(self) -> dict:
        return {"total_gb": round(self.total_gb, 4), "parameters_gb": round(self.parameter_bytes / GB, 4),
                "gradients_gb": round(self.gradient_bytes / GB, 4), "optimizer_gb": round(self.optimizer_bytes / GB, 4),
                "activations_gb": round(self.activation_bytes / GB, 4), "batch_size": self.batch_size,
                "patch_size": list(self.patch_size)}


def _outputs(result) -> list:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def surrogate_loss(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """What nnU-Net's Dice + CE keeps per output: a softmax (Dice) and a log-softmax + target (CE)."""
    loss = 0.0
    for out in outputs:
        target = torch.zeros((out.shape[0], *out.shape[2:]), dtype=torch.long, device=out.device)
        loss = loss + F.cross_entropy(out, target) + torch.softmax(out, 1).mean()
    return loss


def _storage_key(t: torch.Tensor) -> int:
    """One key per storage: its C++ object (meta tensors, which have no addresses, have one too)."""
    return t.untyped_storage()._cdata


def saved_tensor_bytes(network: nn.Module, x: torch.Tensor,
                       loss_fn: Callable[[Sequence[torch.Tensor]], torch.Tensor] = surrogate_loss) -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward (parameters excluded:
    they are counted once as parameters). Storages are told apart by address, so views and in-place
    results of one tensor count once. Under activation checkpointing this is what is kept between forward
    and backward, not the peak: see :func:`activation_bytes`."""
    parameter_storages = {_storage_key(p) for p in network.parameters()}
    saved = {}

    def pack(t: torch.Tensor):
        if _storage_key(t) not in parameter_storages:
            saved[_storage_key(t)] = t.untyped_storage().nbytes()
        return t

    network.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(_outputs(network(x)))
    return int(sum(saved.values()))


@dataclass
class CheckpointRegion:
    """A checkpointed region of the forward: what it saves for backward when it is recomputed (``saved``:
    storage -> bytes, the inputs of the regions nested in it included), the gradients of its inputs
    (``input_gradients``: tensor -> bytes; they are accumulated while its backward runs), and the regions
    nested in it. The root is the region outside every checkpoint: what it saves is kept from the forward to
    the end of the backward; it has no input gradients."""
    saved: Dict[object, int] = field(default_factory=dict)
    input_gradients: Dict[object, int] = field(default_factory=dict)
    children: List["CheckpointRegion"] = field(default_factory=list)

    def peak_bytes(self, held: Mapping[object, int] = MappingProxyType({})) -> int:
        """Upper-ish peak of the backward pass of this region, given what is ``held`` around it: what it saves
        and its input gradients (each not already held) plus the largest peak of one nested region. Regions
        are recomputed one at a time, each freed after its backward; what is held around a region is
        counted whole, although the backward frees it gradually."""
        own = {k: v for k, v in {**self.saved, **self.input_gradients}.items() if k not in held}
        if not self.children:
            return sum(own.values())
        inner = {**held, **own}
        return sum(own.values()) + max(child.peak_bytes(inner) for child in self.children)


# the names networks reach torch's checkpoint through (nnunet_ext's checkpoint_call imports it by name)
CHECKPOINT_FUNCTIONS = (("torch.utils.checkpoint", "checkpoint"), ("nnunet_ext.training.checkpointing", "checkpoint"))


@contextlib.contextmanager
def _regions_recorded(root: CheckpointRegion, parameter_storages: set, keep: list) -> Iterator[None]:
    """Within: what autograd saves is recorded into ``root``; ``torch.utils.checkpoint.checkpoint`` runs its
    function plainly, recording what it saves (= what its recomputation saves) into a nested region.

    The checkpoint's own saved-tensor hooks would hide the recomputation from any outer hook, so the probe
    stands in for it. Every recorded tensor stays referenced in ``keep`` until the probe ends, so no freed
    address is reused by another tensor during it."""
    stack = [root]

    def pack(t: torch.Tensor):
        key = _storage_key(t)
        if key not in parameter_storages:
            stack[-1].saved[key] = t.untyped_storage().nbytes()
            keep.append(t)
        return t

    def probe_checkpoint(function, *args, **kwargs):
        kwargs.pop("use_reentrant", None), kwargs.pop("context_fn", None), kwargs.pop("preserve_rng_state", None)
        for a in args:  # torch's checkpoint saves its tensor inputs in the enclosing region for the recomputation
            if isinstance(a, torch.Tensor) and _storage_key(a) not in parameter_storages:
                stack[-1].saved[_storage_key(a)] = a.untyped_storage().nbytes()
                keep.append(a)
        region = CheckpointRegion()
        for a in args:  # one gradient per input tensor, accumulated over the region's backward
            if isinstance(a, torch.Tensor) and a.requires_grad:
                key = ("gradient", _storage_key(a), a.storage_offset(), tuple(a.shape), a.stride())
                region.input_gradients[key] = a.numel() * a.element_size()
        stack[-1].children.append(region)
        stack.append(region)
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                return function(*args, **kwargs)
        finally:
            stack.pop()

    patches = contextlib.ExitStack()
    with patches:
        for module_name, attribute in CHECKPOINT_FUNCTIONS:
            module = sys.modules.get(module_name)
            if module is None and module_name == "torch.utils.checkpoint":
                module = importlib.import_module(module_name)
            if module is not None and hasattr(module, attribute):
                patches.enter_context(mock.patch.object(module, attribute, probe_checkpoint))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield


def checkpoint_regions(network: nn.Module, x: torch.Tensor,
                       loss_fn: Callable[[Sequence[torch.Tensor]], torch.Tensor] = surrogate_loss) -> CheckpointRegion:
    """The root region of one training forward + loss: what autograd keeps, and per checkpointed region
    what its recomputation saves (parameters excluded, each storage once per region)."""
    root, keep = CheckpointRegion(), []
    network.train()
    with _regions_recorded(root, {_storage_key(p) for p in network.parameters()}, keep):
        loss_fn(_outputs(network(x)))
    return root


def activation_bytes(network: nn.Module, x: torch.Tensor,
                     loss_fn: Callable[[Sequence[torch.Tensor]], torch.Tensor] = surrogate_loss) -> int:
    """Activation memory of one training step: what autograd saves for backward, plus, under activation
    checkpointing, the recomputation of the largest checkpointed region (:meth:`CheckpointRegion.peak_bytes`).
    Equals :func:`saved_tensor_bytes` for a network without checkpointing."""
    return checkpoint_regions(network, x, loss_fn).peak_bytes()


def probe_shapes(divisor: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Two smallest inputs the network accepts: a bottleneck of 1 x .. x 2 and 1 x .. x 2 x 2 voxels
    (never a single bottleneck voxel, which instance norm refuses)."""
    divisor = [int(d) for d in divisor]
    a = [*divisor[:-1], 2 * divisor[-1]]
    b = [*divisor[:-2], 2 * divisor[-2], 2 * divisor[-1]]
    return tuple(a), tuple(b)


PROBE_BATCH = 2


def fit_activation_model(network: nn.Module, input_channels: int, divisor: Sequence[int],
                         loss_fn: Callable[[Sequence[torch.Tensor]], torch.Tensor] = surrogate_loss) -> ActivationModel:
    """Measure saved-tensor bytes per sample at two probe sizes and fit ``intercept + per_voxel * voxels``.

    The probe runs a batch of 2 (and halves the bytes): networks with batch norm after global pooling
    (STS-Net's ASPP) refuse a single sample in training mode."""
    if len(divisor) < 2:
        raise ValueError(f"need a 2D or 3D network, got a divisor with {len(divisor)} axis")
    probes = []
    for shape in probe_shapes(divisor):
        x = torch.zeros((PROBE_BATCH, input_channels, *shape))
        try:
            probes.append((shape, activation_bytes(network, x, loss_fn) // PROBE_BATCH))
        except Exception as error:  # a network that cannot run the probe must say so here, not deep in torch
            raise RuntimeError(f"memory probe: {type(network).__name__} failed on an input of shape "
                               f"{tuple(x.shape)} (divisor {tuple(divisor)}): {error}") from error
    (shape_a, bytes_a), (shape_b, bytes_b) = probes
    voxels_a, voxels_b = np.prod(shape_a), np.prod(shape_b)
    per_voxel = (bytes_b - bytes_a) / float(voxels_b - voxels_a)
    intercept = max(0.0, bytes_a - per_voxel * voxels_a)
    return ActivationModel(float(intercept), float(per_voxel), tuple(probes))


def parameter_bytes(network: nn.Module) -> int:
    return int(sum(p.numel() * p.element_size() for p in network.parameters() if p.requires_grad))


def meta_activation_bytes(network: nn.Module, input_channels: int, patch_size: Sequence[int],
                          loss_fn: Callable[[Sequence[torch.Tensor]], torch.Tensor] = surrogate_loss) -> float:
    """:func:`activation_bytes` per sample at the patch itself, counted on a copy of the network on the meta
    device: shapes only, so no memory and seconds of time, and exact where the fit is not (a network whose
    layout depends on the input size, e.g. the stage-skipping segmentor, which switches its first stages off
    for the small probes). Batch of 2, halved, as the probes."""
    meta = copy.deepcopy(getattr(network, "_orig_mod", network)).to("meta")  # torch.compile's wrapper: its module
    x = torch.zeros((PROBE_BATCH, input_channels, *[int(p) for p in patch_size]), device="meta")
    return activation_bytes(meta, x, loss_fn) / PROBE_BATCH


def estimate_training_memory(network: nn.Module, input_channels: int, patch_size: Sequence[int], batch_size: int,
                             divisor: Sequence[int], optimizer_states: int = SGD_MOMENTUM_STATES,
                             activations: ActivationModel | None = None) -> MemoryEstimate:
    """Training-step memory of ``network`` at (``batch_size``, ``patch_size``); ``divisor`` = total stride per axis.

    Activations from ``activations`` (a fit, for callers that evaluate many patches), else counted at the
    patch on the meta device (:func:`meta_activation_bytes`), else, for a network with an op the meta device
    cannot run, fitted from small CPU probes."""
    if len(patch_size) != len(divisor):
        raise ValueError(f"patch size {tuple(patch_size)} and divisor {tuple(divisor)} differ in dimensionality")
    if activations is not None:
        per_sample = activations.bytes_per_sample(patch_size)
    else:
        try:
            per_sample = meta_activation_bytes(network, input_channels, patch_size)
        except (NotImplementedError, RuntimeError, TypeError):  # no meta kernel, an op reads values, no deepcopy
            per_sample = fit_activation_model(network, input_channels, divisor).bytes_per_sample(patch_size)
    params = parameter_bytes(network)
    return MemoryEstimate(params, params, optimizer_states * params, batch_size * per_sample, int(batch_size),
                          tuple(int(p) for p in patch_size))


# ---------------------------------------------------------------------------------------------------------
# validation against a real measurement

def _plain_unet(input_channels: int, num_classes: int, dim: int, n_stages: int,
                base_features: int = 32) -> Tuple[nn.Module, Tuple[int, ...]]:
    """nnU-Net's default network (PlainConvUNet with the planner's settings), isotropic strides of 2."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d
    strides = [[1] * dim] + [[2] * dim] * (n_stages - 1)
    features = [min(10 * base_features, base_features * 2 ** i) for i in range(n_stages)]
    network = PlainConvUNet(input_channels, n_stages, features, conv, 3,
                            strides, 2, num_classes, 1, True, norm, {"eps": 1e-5, "affine": True}, None, None,
                            nn.LeakyReLU, {"inplace": True}, deep_supervision=True)
    return network, (2 ** (n_stages - 1),) * dim


def _training_step(network: nn.Module, x: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    network.train()
    surrogate_loss(_outputs(network(x))).backward()
    optimizer.step()


def _measure_child(spec: dict) -> dict:
    """Run in a fresh process: peak-RSS growth of one forward + backward + SGD step.

    A warm-up step of a narrow copy (4 base features) on a tiny input first, so that the first use of the
    convolution kernels (library code pages, thread pools) is not counted as training memory."""
    torch.set_num_threads(1)
    dim = len(spec["patch_size"])
    warm, divisor = _plain_unet(spec["input_channels"], spec["num_classes"], dim, spec["n_stages"], base_features=4)
    _training_step(warm, torch.randn((2, spec["input_channels"], *probe_shapes(divisor)[0])))
    del warm
    x = torch.randn((spec["batch_size"], spec["input_channels"], *spec["patch_size"]))
    growth = RssGrowth()  # this process's own peak (not ru_maxrss, which can carry the parent's)
    network, _ = _plain_unet(spec["input_channels"], spec["num_classes"], dim, spec["n_stages"])
    _training_step(network, x)
    return {"measured_bytes": growth.peak_bytes()}


def validate(patch_size: Sequence[int], batch_size: int, n_stages: int, input_channels: int = 1,
             num_classes: int = 3) -> dict:
    """Estimate vs measured peak for PlainConvUNet (the measurement runs in a subprocess)."""
    spec = {"patch_size": [int(p) for p in patch_size], "batch_size": int(batch_size), "n_stages": int(n_stages),
            "input_channels": int(input_channels), "num_classes": int(num_classes)}
    network, divisor = _plain_unet(input_channels, num_classes, len(patch_size), n_stages)
    estimate = estimate_training_memory(network, input_channels, patch_size, batch_size, divisor)
    child = subprocess.run([sys.executable, "-m", "nnunet_ext.planning.memory", "--child", json.dumps(spec)],
                           capture_output=True, text=True, check=True)
    measured = json.loads(child.stdout.strip().splitlines()[-1])["measured_bytes"]
    return {**spec, "estimate_gb": estimate.total_gb, "activations_gb": estimate.activation_bytes / GB,
            "measured_gb": measured / GB, "ratio": estimate.total_bytes / measured}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Compare the memory estimate with a measured CPU peak (PlainConvUNet)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--patch", type=int, nargs="+", action="append",
                        help="patch size (repeatable; default: 32 64 64 and 48 96 96)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--stages", type=int, default=5)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure_child(json.loads(args.child))))
        return 0
    torch.set_num_threads(1)
    print(f"{'patch':>16} {'batch':>5} {'estimate GB':>11} {'measured GB':>11} {'ratio':>6}")
    for patch in args.patch or [[32, 64, 64], [48, 96, 96]]:
        r = validate(patch, args.batch, args.stages)
        print(f"{'x'.join(map(str, patch)):>16} {args.batch:>5} {r['estimate_gb']:>11.3f} "
              f"{r['measured_gb']:>11.3f} {r['ratio']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
