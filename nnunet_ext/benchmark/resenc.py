"""``--resenc nearest``: the ResEnc preset whose training memory is nearest to the benchmarked networks'.

"nnU-Net Revisited" (Isensee et al., MICCAI 2024) matches baselines in GPU memory: a new network that needs
as much memory as ResEnc L is compared with ResEnc L, not only with the default U-Net. nnU-Net's ResEnc
planners (M / L / XL: 8 / 24 / 40 GB targets) each write a plans file with their own patch and batch size.
We estimate every network's training-step memory with one estimator (nnunet_ext.planning.memory: parameters,
gradients, SGD momentum, activations incl. what checkpointing recomputes; the same call as the real-scale
tables) - each trainer's network at nnUNetPlans' patch and
batch, each preset's ResidualEncoderUNet at the patch and batch its planner chose - and pick the preset
nearest to the largest trainer. Estimates are fp32 upper bounds; only their comparison matters here.

The estimate runs as ``python -m nnunet_ext.benchmark.resenc REQUEST.json RESULT.json`` in the workspace's
environment (nnU-Net finds the plugin's trainers through it).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

PRESET_ORDER = ("M", "L", "XL")   # ties go to the smaller (cheaper) preset
NEAREST = "nearest"


@dataclass(frozen=True)
class NetworkMemory:
    """One network's estimated training-step memory at a plans' (patch, batch)."""
    name: str
    plans: str
    patch_size: List[int]
    batch_size: int
    total_gb: float
    parameters: int


@dataclass(frozen=True)
class ResEncChoice:
    preset: str                          # "M" | "L" | "XL"
    target: str                          # the trainer with the largest estimate
    target_gb: float
    preset_gb: float
    trainers: List[NetworkMemory] = field(default_factory=list)
    presets: Dict[str, NetworkMemory] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "ResEncChoice":
        return cls(preset=d["preset"], target=d["target"], target_gb=float(d["target_gb"]),
                   preset_gb=float(d["preset_gb"]), trainers=[NetworkMemory(**t) for t in d["trainers"]],
                   presets={k: NetworkMemory(**v) for k, v in d["presets"].items()})


def choose_nearest(trainer_gb: Mapping[str, float], preset_gb: Mapping[str, float]) -> tuple:
    """(preset, target trainer): the preset whose estimate is nearest (absolute GB) to the largest trainer's.

    Ties go to the smaller preset in M < L < XL order."""
    if not trainer_gb:
        raise ValueError("no trainer memory estimates to match a ResEnc preset against")
    unknown = [p for p in preset_gb if p not in PRESET_ORDER]
    if unknown or not preset_gb:
        raise ValueError(f"ResEnc presets must be among {PRESET_ORDER}, got {sorted(preset_gb)}")
    bad = {k: v for k, v in {**trainer_gb, **{f"ResEnc {p}": g for p, g in preset_gb.items()}}.items()
           if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"memory estimates must be positive finite numbers of GB, got {bad}")
    target = max(trainer_gb, key=lambda t: trainer_gb[t])
    goal = trainer_gb[target]
    preset = min(preset_gb, key=lambda p: (abs(preset_gb[p] - goal), PRESET_ORDER.index(p)))
    return preset, target


def make_choice(trainers: Sequence[NetworkMemory], presets: Mapping[str, NetworkMemory]) -> ResEncChoice:
    preset, target = choose_nearest({t.name: t.total_gb for t in trainers},
                                    {p: m.total_gb for p, m in presets.items()})
    target_gb = next(t.total_gb for t in trainers if t.name == target)
    return ResEncChoice(preset, target, target_gb, presets[preset].total_gb, list(trainers), dict(presets))


# -- the estimate (in the workspace's environment) ---------------------------------------------------------
def estimate_network(preprocessed_dataset: str, plans: str, configuration: str, trainer: str,
                     name: Optional[str] = None) -> NetworkMemory:
    """Training memory of ``trainer``'s network under ``plans`` at that configuration's patch and batch."""
    import torch

    from nnunet_ext.trainer_lookup import load_trainer_context

    trainer_class, plans_manager, cm, n_in, n_out = load_trainer_context(preprocessed_dataset, plans, configuration,
                                                                         trainer)
    with torch.random.fork_rng():
        network = trainer_class.build_network_architecture(plans_manager, cm, n_in, n_out, True)
    return network_memory(network, cm, n_in, name or trainer, plans)


def network_memory(network, configuration_manager, input_channels: int, name: str, plans: str) -> NetworkMemory:
    """``network``'s training memory at the configuration's patch and batch, by the estimator the real-scale
    tables use (``real_scale.plans_memory_estimate``), so a checkpointed network (ES-UNet, UNet 3+, DLKUNet,
    ELANRes by default) is counted with its recomputation, not as the inputs its checkpoints keep."""
    from nnunet_ext.benchmark.real_scale import plans_memory_estimate
    from nnunet_ext.network_cost import count_parameters

    patch = [int(p) for p in configuration_manager.patch_size]
    batch = int(configuration_manager.batch_size)
    estimate = plans_memory_estimate(network, configuration_manager, input_channels, patch, batch)
    return NetworkMemory(name, plans, patch, batch, float(estimate.total_gb), count_parameters(network))


def estimate_all(request: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    folder, configuration = request["preprocessed_dataset"], request["configuration"]
    trainers = [asdict(estimate_network(folder, request["plans"], configuration, t)) for t in request["trainers"]]
    presets = {p: asdict(estimate_network(folder, plans, configuration, request["preset_trainer"],
                                          name=f"ResEnc {p}"))
               for p, plans in request["presets"].items()}
    return {"trainers": trainers, "presets": presets}


def estimate_in_subprocess(request: dict, env: Optional[dict] = None, timeout: int = 3600) -> dict:
    """:func:`estimate_all` in a fresh process with the workspace environment (nnU-Net paths, plugin trainers)."""
    with tempfile.TemporaryDirectory(prefix="nnunet_ext_resenc_") as tmp:
        req, out = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        env = dict(os.environ if env is None else env)
        env.setdefault("OMP_NUM_THREADS", "1")
        proc = subprocess.run([sys.executable, "-m", "nnunet_ext.benchmark.resenc", str(req), str(out)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"memory estimate for choosing the ResEnc preset failed (exit {proc.returncode}):\n"
                               f"{(proc.stdout + proc.stderr)[-4000:]}")
        return json.loads(out.read_text())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m nnunet_ext.benchmark.resenc REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    Path(argv[1]).write_text(json.dumps(estimate_all(json.loads(Path(argv[0]).read_text())), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
