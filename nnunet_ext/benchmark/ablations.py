"""Ablation matrices as data: a preset names the trainers of a paper's ablation table and how to lay it out.

``nnunet-ext benchmark --ablation es_unet_table5`` trains every trainer of the preset (plus vanilla
nnU-Net) and writes a table shaped like the paper's, with deltas against the first row of each group
(the row without the ablated components). A later paper's ablation is one more entry in ``ABLATIONS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

CHECK = "\u2713"


@dataclass(frozen=True)
class AblationRow:
    trainer: str
    group: str                              # rows of a group are compared with the group's first row
    settings: Tuple[Tuple[str, str], ...]   # (column, value) shown in the table, e.g. (("RSS", "✓"),)


@dataclass(frozen=True)
class Ablation:
    name: str
    title: str
    source: str                             # paper and table it reproduces
    columns: Tuple[str, ...]                # setting columns, in display order
    rows: Tuple[AblationRow, ...]
    configuration: Optional[str] = None     # the configuration the paper's networks are meant for, if not 3d

    def trainers(self) -> List[str]:
        return list(dict.fromkeys(r.trainer for r in self.rows))

    def group_baseline(self, row: AblationRow) -> AblationRow:
        return next(r for r in self.rows if r.group == row.group)


def _factorial(group: str, trainers_by_factors: Dict[Tuple[str, ...], str], columns: Tuple[str, ...]):
    rows = []
    for on, trainer in trainers_by_factors.items():
        rows.append(AblationRow(trainer, group, tuple((c, CHECK if c in on else "") for c in columns)))
    return rows


# The paper trains every row of Tables 1-5 with focal + Dice (Eq. 1-2) unless DWD replaces the Dice term, so
# each group's first row uses that loss and every row differs from its group's first row by RSS and/or DWD.
_T5 = ("RSS", "DWD loss")
ES_UNET_TABLE5 = Ablation(
    name="es_unet_table5", title="Multi-component ablation: network x RSS x DWD loss (focal + Dice baseline)",
    source="ES-UNet (Park et al., BMC Med Imaging 2025), Table 5", columns=_T5,
    rows=tuple(
        _factorial("3D UNet (nnU-Net)", {(): "nnUNetTrainerFocalDice", ("RSS",): "nnUNetTrainerFocalDiceRSS",
                                         ("DWD loss",): "nnUNetTrainerDWD",
                                         ("RSS", "DWD loss"): "nnUNetTrainerDWDRSS"}, _T5)
        + _factorial("3D UNet 3+", {(): "UNet3PlusFocalDiceTrainer", ("RSS",): "UNet3PlusFocalDiceRSSTrainer",
                                    ("DWD loss",): "UNet3PlusDWDTrainer",
                                    ("RSS", "DWD loss"): "UNet3PlusDWDRSSTrainer"}, _T5)
        + _factorial("ES-UNet", {(): "ESUNetFocalDiceTrainer", ("RSS",): "ESUNetFocalDiceRSSTrainer",
                                 ("DWD loss",): "ESUNetDWDOnlyTrainer", ("RSS", "DWD loss"): "ESUNetDWDRSSTrainer"},
                     _T5)))

_T4 = ("Enc-Dec", "Dec-Dec")
ES_UNET_TABLE4 = Ablation(
    name="es_unet_table4", title="Skip-connection ablation of ES-UNet (focal + Dice)",
    source="ES-UNet (Park et al., BMC Med Imaging 2025), Table 4", columns=_T4,
    rows=tuple(_factorial("ES-UNet skips", {(): "ESUNetSkipBaseFocalDiceTrainer",
                                            ("Enc-Dec",): "ESUNetSkipEncOnlyFocalDiceTrainer",
                                            ("Dec-Dec",): "ESUNetSkipDecOnlyFocalDiceTrainer",
                                            ("Enc-Dec", "Dec-Dec"): "ESUNetFocalDiceTrainer"}, _T4)))

STS_NET_TABLE7 = Ablation(
    name="sts_net_table7", title="Small-lesion amplification methods on nnU-Net",
    source="STS-Net (Scientific Reports 2025), Table 7 (amplification on nnU-Net's network here)",
    columns=("amplification",), configuration="2d",  # the paper amplifies 2D slices (N1/N2 are areas)
    rows=tuple(AblationRow(t, "nnU-Net", (("amplification", m),)) for t, m in (
        ("nnUNetTrainer", "none"), ("nnUNetTrainerAmplifyM1", "method 1"), ("nnUNetTrainerAmplifyM2", "method 2"),
        ("nnUNetTrainerAmplifyM3", "method 3"), ("nnUNetTrainerAmplifyM4", "method 4"))))

DLKUNET_LOSS_SCHEDULES = Ablation(
    name="dlkunet_loss_schedules", title="Dice/CE weight schedules on nnU-Net",
    source="DLKUNet paper, Eq. 10-13 (phase-based and sigmoid 'dynamic' loss weights)",
    columns=("loss weights", "LR drop"),
    rows=tuple(AblationRow(t, "nnU-Net", (("loss weights", w), ("LR drop", lr))) for t, w, lr in (
        ("nnUNetTrainer", "1 / 1", ""), ("nnUNetTrainerPhaseLoss", "phase", ""),
        ("nnUNetTrainerPhaseLossPhaseLR", "phase", CHECK), ("nnUNetTrainerDynamicLoss", "sigmoid", ""))))

_EL = ("loss family", "decaying DS")
ELANRES_LOSS = Ablation(
    name="elanres_loss", title="ELANRes training recipe on nnU-Net: loss family x decaying deep supervision",
    source="ELANRes-MSCA-UNet (Preprints 2025), Table 1 loss family and Eq. 1-2", columns=_EL,
    rows=tuple(_factorial("nnU-Net", {(): "nnUNetTrainer", ("loss family",): "nnUNetTrainerELANResLoss",
                                      ("decaying DS",): "nnUNetTrainerDecayingDS",
                                      ("loss family", "decaying DS"): "nnUNetTrainerELANResLossDecayingDS"}, _EL)))

DLKUNET_SIZES = Ablation(
    name="dlkunet_sizes", title="DLKUNet S / M / L against nnU-Net (2d)",
    source="DLKUNet paper, Table 1 model sizes", columns=("network",), configuration="2d",
    rows=tuple(AblationRow(t, "2d networks", (("network", n),)) for t, n in (
        ("nnUNetTrainer", "nnU-Net PlainConvUNet"), ("DLKUNetSTrainer", "DLKUNet-S"),
        ("DLKUNetMTrainer", "DLKUNet-M"), ("DLKUNetLTrainer", "DLKUNet-L"))))

ABLATIONS: Dict[str, Ablation] = {a.name: a for a in (ES_UNET_TABLE5, ES_UNET_TABLE4, STS_NET_TABLE7,
                                                      DLKUNET_LOSS_SCHEDULES, ELANRES_LOSS, DLKUNET_SIZES)}


def get_ablation(name: str) -> Ablation:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; presets: {', '.join(sorted(ABLATIONS))}")
    return ABLATIONS[name]
