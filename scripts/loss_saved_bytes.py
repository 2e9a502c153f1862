"""Bytes autograd keeps for a trainer's network forward and for its deep-supervision loss (issue 10).

Counted with the memory estimator's probe (nnunet_ext.planning.memory.checkpoint_regions) on the meta device:
shapes only, no memory, at the plans' own patch and batch. For each trainer it builds the network as
``nnUNetv2_train`` would (activation checkpointing as the trainer has it) and the trainer's loss (``_build_loss``),
plain and with each loss term checkpointed (nnunet_ext.training.loss_checkpointing), and prints

- kept: what autograd keeps from the forward to the backward (the root region);
- peak: the estimator's activation peak (kept + the largest recomputed region, docs of memory.py).

``--rss`` also runs one real CPU forward + loss + backward per loss (plain, checkpointed), each in a fresh process
with glibc's mmap threshold fixed (so freed tensors leave the RSS), and prints its peak-RSS growth over a warmed-up
baseline: what the counts mean for the step's peak. Use a small ``--patch`` (memory grows with it).

    python scripts/loss_saved_bytes.py /tmp/rs/pre/Dataset990_RealScale [--patch 96 160 160] [--batch 2] [--rss]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from nnunet_ext.planning.memory import checkpoint_regions
from nnunet_ext.process_memory import RssGrowth

GB = 1024 ** 3
TRAINERS = ("ESUNetDWDRSSTrainer", "UNet3PlusTrainer")


def _trainer(folder: Path, plans_name: str, configuration: str, name: str, patch, batch):
    """The trainer class and an object with what its network and loss hooks read (no nnU-Net __init__: that
    wants nnUNet_results and creates folders)."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.trainer_lookup import find_trainer

    plans = json.loads((folder / f"{plans_name}.json").read_text())
    if patch:
        plans["configurations"][configuration]["patch_size"] = [int(p) for p in patch]
    if batch:
        plans["configurations"][configuration]["batch_size"] = int(batch)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    cls = find_trainer(name)
    trainer = object.__new__(cls)
    trainer.plans_manager = PlansManager(plans)
    trainer.configuration_manager = trainer.plans_manager.get_configuration(configuration)
    trainer.label_manager = trainer.plans_manager.get_label_manager(dataset_json)
    trainer.num_input_channels = determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager,
                                                              dataset_json)
    trainer.batch_size = trainer.configuration_manager.batch_size
    trainer.is_ddp, trainer.device, trainer.enable_deep_supervision = False, torch.device("cpu"), True
    return cls, trainer


def count(trainer_class, trainer) -> dict:
    """Kept and peak bytes of (network alone), (network + plain loss), (network + checkpointed loss)."""
    cm = trainer.configuration_manager
    n_in, n_out = trainer.num_input_channels, trainer.label_manager.num_segmentation_heads
    with torch.device("meta"):
        network = trainer_class.build_network_architecture(trainer.plans_manager, cm, n_in, n_out, True)
    patch, batch = [int(p) for p in cm.patch_size], int(trainer.batch_size)
    x = torch.zeros((batch, n_in, *patch), device="meta")
    target = torch.zeros((batch, 1, *patch), device="meta")  # nnU-Net's float label map, one tensor for every head
    rows = {}
    regions = checkpoint_regions(network, x, lambda outputs: None)
    rows["network"] = regions
    for checkpointed in (False, True):
        trainer.loss_checkpointing = checkpointed
        loss = trainer._build_loss()
        rows["network + " + ("checkpointed loss" if checkpointed else "loss")] = checkpoint_regions(
            network, x, lambda outputs: loss(outputs, [target] * len(outputs)))
    n_outputs = len(trainer._get_deep_supervision_scales())
    return {"patch": patch, "batch": batch, "outputs": n_outputs, "classes": n_out,
            "rows": {k: {"kept": sum(r.saved.values()), "peak": r.peak_bytes()} for k, r in rows.items()}}


def measure_rss(trainer_class, trainer, checkpointed: bool) -> float:
    """Peak-RSS growth (bytes) of one forward + loss + backward, after a warm-up step at the smallest patch."""
    cm = trainer.configuration_manager
    n_in, n_out = trainer.num_input_channels, trainer.label_manager.num_segmentation_heads
    network = trainer_class.build_network_architecture(trainer.plans_manager, cm, n_in, n_out, True)
    trainer.loss_checkpointing = checkpointed
    loss = trainer._build_loss()

    def step(patch):
        x = torch.randn(int(trainer.batch_size), n_in, *patch)
        target = torch.randint(0, n_out, (int(trainer.batch_size), 1, *patch)).float()
        outputs = network(x)
        loss(outputs, [target] * len(outputs)).backward()
        network.zero_grad(set_to_none=False)

    from nnunet_ext.planning.arch_plans import total_stride
    divisor = list(total_stride(cm.pool_op_kernel_sizes, len(cm.patch_size)))
    step([*divisor[:-1], 2 * divisor[-1]])  # bottleneck 1 x .. x 2: the smallest input instance norm accepts
    growth = RssGrowth()
    step([int(p) for p in cm.patch_size])
    return growth.peak_bytes()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preprocessed", help="the dataset's preprocessed folder (plans + dataset.json)")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("-tr", "--trainers", nargs="+", default=list(TRAINERS))
    parser.add_argument("--patch", type=int, nargs="+", help="instead of the plans' patch")
    parser.add_argument("--batch", type=int, help="instead of the plans' batch size")
    parser.add_argument("--rss", action="store_true", help="also measure one real CPU step's peak RSS per loss")
    parser.add_argument("--child", choices=("plain", "checkpointed"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.trainers:
        cls, trainer = _trainer(Path(args.preprocessed), args.plans, args.configuration, name, args.patch, args.batch)
        if args.child:
            print(measure_rss(cls, trainer, args.child == "checkpointed"))
            continue
        r = count(cls, trainer)
        print(f"{name}: patch {'x'.join(map(str, r['patch']))}, batch {r['batch']}, {r['outputs']} full-resolution "
              f"outputs of {r['classes']} channels (GiB, fp32)")
        base = r["rows"]["network"]
        for label, row in r["rows"].items():
            print(f"  {label:<28} kept {row['kept'] / GB:7.3f}  peak {row['peak'] / GB:7.3f}"
                  + ("" if row is base else f"  (loss: kept +{(row['kept'] - base['kept']) / GB:.3f}, "
                                            f"peak +{(row['peak'] - base['peak']) / GB:.3f})"))
        if args.rss:
            forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--rss"]
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
            for mode in ("plain", "checkpointed"):
                child = subprocess.run([sys.executable, __file__, *forwarded, "-tr", name, "--child", mode],
                                       capture_output=True, text=True, check=True, env=env)
                grown = float(child.stdout.strip().splitlines()[-1])
                print(f"  measured step, {mode + ' loss':<19} peak RSS +{grown / GB:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
