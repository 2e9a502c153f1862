"""End-to-end test helpers: a workspace that also sees the test-only trainers, a planned phantom dataset in it,
and one check of nnUNetv2_predict's output against the test labels."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from nnunet_ext.workspace import NnUNetWorkspace as _Workspace

ROOT = Path(__file__).resolve().parents[1]
TEST_TRAINERS = Path(__file__).resolve().parent / "trainers"
PHANTOM_LABELS = (0, 1, 2)  # nnunet_ext.data.phantoms: background, organ, lesion (never the ignore label)


class NnUNetWorkspace(_Workspace):
    """nnunet_ext.workspace.NnUNetWorkspace with tests/trainers on nnUNet_extTrainer."""

    def __init__(self, root):
        super().__init__(root, extra_trainer_dirs=[TEST_TRAINERS])


def planned_phantom(tmp_path_factory, dataset_id: int, name: str, configurations: Iterable[str] = ("2d",),
                    **generate) -> NnUNetWorkspace:
    """A fresh workspace holding phantom dataset ``dataset_id`` (``generate`` goes to the phantom generator),
    planned and preprocessed by nnUNetv2_plan_and_preprocess for ``configurations``."""
    ws = NnUNetWorkspace(tmp_path_factory.mktemp(name))
    ws.generate(dataset_id, name=name, **generate)
    ws.plan_and_preprocess(dataset_id, configurations=tuple(configurations))
    return ws


@dataclass(frozen=True)
class Phantom:
    """A test module's phantom dataset: ``PHANTOM = Phantom(...)`` at module level gives its tests the
    module-scoped ``ws`` fixture (tests/conftest.py), this dataset generated and planned once."""

    dataset_id: int
    name: str
    configurations: Tuple[str, ...] = ("2d",)
    generate: Dict[str, Any] = field(default_factory=dict)  # nnunet_ext.data.phantoms.generate_dataset's options

    def plan(self, tmp_path_factory) -> NnUNetWorkspace:
        return planned_phantom(tmp_path_factory, self.dataset_id, self.name, self.configurations, **self.generate)


def held_out_folders(ws: _Workspace, dataset_id: int):
    """(imagesTs, labelsTs) of a dataset in ``ws``'s raw folder."""
    raw = ws.raw / ws.dataset_name(dataset_id)
    return raw / "imagesTs", raw / "labelsTs"


def check_predictions(ws: _Workspace, dataset_id: int, out, labels: Iterable[int] = PHANTOM_LABELS,
                      evaluate: bool = True) -> Optional[dict]:
    """Every test case predicted once, on its label's grid (size and spacing), with no label outside
    ``labels``; with ``evaluate``, nnU-Net's evaluation runs and its mean foreground Dice is in [0, 1]
    (its summary is returned)."""
    _, label_dir = held_out_folders(ws, dataset_id)
    out = Path(out)
    cases = sorted(p.name for p in label_dir.glob("*.nii.gz"))
    assert cases and sorted(p.name for p in out.glob("*.nii.gz")) == cases
    for name in cases:
        pred, gt = sitk.ReadImage(str(out / name)), sitk.ReadImage(str(label_dir / name))
        assert pred.GetSize() == gt.GetSize() and np.allclose(pred.GetSpacing(), gt.GetSpacing())
        assert set(np.unique(sitk.GetArrayFromImage(pred)).tolist()) <= set(labels)
    if not evaluate:
        return None
    summary = ws.evaluate(dataset_id, label_dir, out)
    assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0
    return summary


def predict_test_cases(ws: _Workspace, dataset_id: int, configuration: str, trainer: str, out, *extra: str,
                       evaluate: bool = True, **kw) -> Optional[dict]:
    """nnUNetv2_predict on the dataset's imagesTs into ``out`` (``extra``/``kw`` as ``ws.predict``), then
    :func:`check_predictions`."""
    images, _ = held_out_folders(ws, dataset_id)
    ws.predict(dataset_id, configuration, trainer, images, out, *extra, **kw)
    return check_predictions(ws, dataset_id, out, evaluate=evaluate)


def final_checkpoint(fold_folder) -> dict:
    """checkpoint_final.pth of a fold folder our tests trained (a trusted file: nnU-Net's own pickle)."""
    return torch.load(Path(fold_folder) / "checkpoint_final.pth", map_location="cpu", weights_only=False)


def check_study_at_toy_size(tmp_path, script: str, arms: int) -> None:
    """``STUDY_SIZE=tiny bash scripts/studies/<script>``: every arm trained, a report with its verdict, convergence
    and accuracy sections; then ``STUDY_REPORT_ONLY=1`` rewrites the report without training anything."""
    env = dict(os.environ, STUDY_SIZE="tiny", BIN=str(Path(sys.executable).parent), STUDY_PARALLEL="1")
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "studies" / script), str(work)], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (work / "report" / "report.md").read_text()
    for section in ("## Verdicts", "## Convergence", "## Accuracy"):
        assert section in report
    with open(work / "report" / "cases.csv") as f:
        trainers = {row["trainer"] for row in csv.DictReader(f)}
    assert len(trainers) == arms
    # two iterations cannot meet the convergence criterion: the report must say so, not hide it
    assert "too short" in report or "**Not converged by this criterion:**" in report
    assert "--report-only" not in report
    before = {p: p.stat().st_mtime_ns for p in work.rglob("checkpoint_final.pth")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "studies" / script), str(work)],
                          env=dict(env, STUDY_REPORT_ONLY="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--report-only" in (work / "report" / "report.md").read_text()
    assert before and before == {p: p.stat().st_mtime_ns for p in work.rglob("checkpoint_final.pth")}
