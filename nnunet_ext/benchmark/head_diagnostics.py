"""Which deep-supervision head of a full-scale network (ES-UNet, UNet 3+) segments a class, and why one does not.

Study A (docs/benchmarks/study_a_es_unet) found UNet 3+ predicting no node at all in two of three folds. UNet 3+
predicts with its finest head only; this reads a trained fold and reports, per head (finest first): the class's
Dice (voxels pooled over the cases), the median logit margin of the class over the best other class at its
voxels, the total probability of the class on cases without it, and the gradients of nnU-Net's loss terms (CE; soft
Dice on cases with / without the class, one case per batch) on the head's bias for the class.

A "dead" class channel shows a margin of many logits below zero and a total probability under the Dice
smoothing (1e-5) on cases without the class: there nnU-Net's per-case soft Dice is (0 + s) / (P + s), close to
its best value 1 only when P << s, so it rewards an exactly empty channel, while on cases with the class the
saturated softmax gives the Dice no gradient; only CE (class voxels / all voxels) pulls back.

    python -m nnunet_ext.benchmark.head_diagnostics RESULTS_FOLDER -f 0 --label 2 --preprocessed DATASET_FOLDER
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

DICE_SMOOTH = 1e-5  # nnU-Net's (ExtTrainer.build_segmentation_loss)


@dataclass(frozen=True)
class HeadStats:
    head: int
    dice: float             # voxels pooled over all cases; NaN when the class is nowhere (label nor prediction)
    margin: float           # median over cases with the class of the median (class logit - best other) at its voxels
    mass_without: float     # median over cases without the class of the summed class probability
    grad_ce: float          # d(CE)/d(head bias of the class), summed over cases
    grad_dice_with: float   # d(-soft Dice)/d(same bias), cases with the class
    grad_dice_without: float  # the same, cases without the class

    def line(self, label: int) -> str:
        return (f"head {self.head}: Dice {self.dice:.3f} | margin of label {label} at its voxels {self.margin:+.1f} "
                f"logits | summed p on cases without it {self.mass_without:.2g} | bias gradient: CE "
                f"{self.grad_ce:+.4f}, Dice (cases with) {self.grad_dice_with:+.4f}, Dice (cases without) "
                f"{self.grad_dice_without:+.4f}")


def heads_of(network: nn.Module) -> nn.ModuleList:
    heads = getattr(getattr(network, "decoder", None), "heads", None)
    if heads is None:
        raise ValueError(f"{type(network).__name__} has no decoder.heads; head diagnostics are for the full-scale "
                         f"networks (ESUNet, UNet3Plus)")
    return heads


def head_logits(network: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Every head's logits at input resolution, finest first (ES-UNet's mean of the heads is left out)."""
    n_heads = len(heads_of(network))
    network.decoder.deep_supervision = True
    outputs = network(x)
    return list(outputs)[-n_heads:]


def _soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """nnU-Net's MemoryEfficientSoftDiceLoss as ExtTrainer builds it: softmax, per case, no background."""
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = MemoryEfficientSoftDiceLoss(apply_nonlin=lambda z: torch.softmax(z, 1), batch_dice=False, do_bg=False,
                                       smooth=DICE_SMOOTH, ddp=False)
    return loss(logits, target)


def head_statistics(network: nn.Module, cases: Iterable[Tuple[torch.Tensor, torch.Tensor]],
                    label: int) -> List[HeadStats]:
    """Per-head statistics for ``label`` over ``cases`` of (image (1, C, ...), segmentation (1, 1, ...))."""
    heads = heads_of(network)
    if not 0 < label < heads[0].out_channels:
        raise ValueError(f"label must be a foreground class in 1..{heads[0].out_channels - 1}, got {label}")
    network.eval()  # instance norm does not depend on it; batch norm uses its running statistics
    n = len(heads)
    tp, fp, fn = np.zeros(n), np.zeros(n), np.zeros(n)
    margins, masses = [[] for _ in range(n)], [[] for _ in range(n)]
    grads = np.zeros((n, 3))
    for x, y in cases:
        y = y.long()
        present = bool((y == label).any())
        for h, z in enumerate(head_logits(network, x)):
            bias = heads[h].bias
            ce = nn.functional.cross_entropy(z, y[:, 0])
            grads[h, 0] += torch.autograd.grad(ce, bias, retain_graph=True)[0][label].item()
            dice = _soft_dice_loss(z, y)
            grads[h, 1 if present else 2] += torch.autograd.grad(dice, bias, retain_graph=True)[0][label].item()
            z = z.detach()[0]
            predicted, truth = z.argmax(0) == label, y[0, 0] == label
            tp[h] += int((predicted & truth).sum())
            fp[h] += int((predicted & ~truth).sum())
            fn[h] += int((~predicted & truth).sum())
            if present:
                others = torch.cat([z[:label], z[label + 1:]]).amax(0)
                margins[h].append(float((z[label] - others)[truth].median()))
            else:
                masses[h].append(float(torch.softmax(z, 0)[label].sum()))
    stats = []
    for h in range(n):
        denominator = 2 * tp[h] + fp[h] + fn[h]
        stats.append(HeadStats(h, float(2 * tp[h] / denominator) if denominator else float("nan"),
                               float(np.median(margins[h])) if margins[h] else float("nan"),
                               float(np.median(masses[h])) if masses[h] else float("nan"), *map(float, grads[h])))
    return stats


def _load(results_folder: Path, fold: int, checkpoint: str) -> nn.Module:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunet_ext.trainer_lookup import find_trainer

    trainer_name, plans_name, configuration = results_folder.name.split("__")
    plans = PlansManager(str(results_folder / "plans.json"))
    dataset = json.loads((results_folder / "dataset.json").read_text())
    n_inputs = len(dataset.get("channel_names", dataset.get("modality", {})))
    n_outputs = len(dataset["labels"])
    trainer = find_trainer(trainer_name)
    network = trainer.build_network_architecture(plans, plans.get_configuration(configuration), n_inputs, n_outputs,
                                                 True)
    saved = torch.load(results_folder / f"fold_{fold}" / checkpoint, map_location="cpu", weights_only=False)
    network.load_state_dict(saved["network_weights"])
    return network


def _cases(preprocessed: Path, data_identifier: str, keys: Sequence[str]):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = preprocessed / data_identifier
    dataset = infer_dataset_class(str(folder))(str(folder), list(keys))
    for key in keys:
        data, seg, _, _ = dataset.load_case(key)
        yield torch.from_numpy(np.asarray(data)[None]).float(), torch.from_numpy(np.asarray(seg)[None]).clamp_min(0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_folder", type=Path, help="<nnUNet_results>/<Dataset>/<Trainer>__<Plans>__<config>")
    parser.add_argument("-f", "--fold", type=int, required=True)
    parser.add_argument("--label", type=int, required=True, help="the class to diagnose")
    parser.add_argument("--preprocessed", type=Path, required=True, help="<nnUNet_preprocessed>/<Dataset>")
    parser.add_argument("--cases", choices=("val", "train"), default="val", help="the fold's split to read")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    network = _load(args.results_folder, args.fold, args.checkpoint)
    keys = json.loads((args.preprocessed / "splits_final.json").read_text())[args.fold][args.cases]
    configuration = args.results_folder.name.split("__")[2]
    plans = json.loads((args.results_folder / "plans.json").read_text())
    identifier = plans["configurations"][configuration]["data_identifier"]
    stats = head_statistics(network, _cases(args.preprocessed, identifier, keys), args.label)
    print(f"{args.results_folder.name} fold {args.fold}, {len(keys)} {args.cases} cases, label {args.label}; "
          f"heads finest first; bias gradients summed over cases (positive pushes the logit down)")
    for s in stats:
        print(" " + s.line(args.label))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
