"""Bytes autograd keeps for a trainer's network forward and for its deep-supervision loss (issue 10).

Counted with the memory estimator's probe (nnunet_ext.planning.memory.checkpoint_regions) on the meta device:
shapes only, no memory, at the plans' own patch and batch. For each trainer it builds the network as
``nnUNetv2_train`` would (activation checkpointing as the trainer has it) and the trainer's loss (``_build_loss``),
plain and with each loss term checkpointed (nnunet_ext.training.loss_checkpointing), and prints

- kept: what autograd keeps from the forward to the backward (the root region);
- peak: the estimator's activation peak (kept + the largest recomputed region, docs of memory.py).

    python scripts/loss_saved_bytes.py /tmp/rs/pre/Dataset990_RealScale [--patch 96 160 160] [--batch 2]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from nnunet_ext.planning.memory import checkpoint_regions

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preprocessed", help="the dataset's preprocessed folder (plans + dataset.json)")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("-tr", "--trainers", nargs="+", default=list(TRAINERS))
    parser.add_argument("--patch", type=int, nargs="+", help="instead of the plans' patch")
    parser.add_argument("--batch", type=int, help="instead of the plans' batch size")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.trainers:
        cls, trainer = _trainer(Path(args.preprocessed), args.plans, args.configuration, name, args.patch, args.batch)
        r = count(cls, trainer)
        print(f"{name}: patch {'x'.join(map(str, r['patch']))}, batch {r['batch']}, {r['outputs']} full-resolution "
              f"outputs of {r['classes']} channels (GiB, fp32)")
        base = r["rows"]["network"]
        for label, row in r["rows"].items():
            print(f"  {label:<28} kept {row['kept'] / GB:7.3f}  peak {row['peak'] / GB:7.3f}"
                  + ("" if row is base else f"  (loss: kept +{(row['kept'] - base['kept']) / GB:.3f}, "
                                            f"peak +{(row['peak'] - base['peak']) / GB:.3f})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
