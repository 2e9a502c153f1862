"""The main job: vanilla nnU-Net against our trainers on a generated dataset, through nnU-Net's own commands.

generate -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train (same fold, same short schedule for every
trainer) -> nnUNetv2_predict on held-out cases -> nnUNetv2_evaluate_folder + surface metrics -> table.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from nnunet_ext.evaluation.metrics import case_metrics, foreground_classes, read_segmentation
from nnunet_ext.progress import RunProgress, line_writer, log_name
from nnunet_ext.training.short_schedule import TIMING_FILE, short_schedule_name
from nnunet_ext.workspace import NnUNetWorkspace


@dataclass
class DemoConfig:
    workdir: Path = Path("demo_output")
    dataset_id: int = 990
    dataset_name: str = "PhantomDemo"
    trainers: Sequence[str] = ("nnUNetTrainer", "ESUNetDWDRSSTrainer")
    configuration: str = "3d_fullres"
    fold: int = 0
    epochs: int = 5
    iterations: int = 10
    val_iterations: int = 2
    num_train_cases: int = 10
    num_test_cases: int = 4
    shape: Sequence[int] = (16, 48, 48)
    spacing: Sequence[float] = (3.0, 1.0, 1.0)
    seed: int = 0


@dataclass
class TrainerResult:
    trainer: str
    schedule_name: str
    parameters: int
    train_seconds_per_iteration: float
    predict_seconds_per_case: float
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)  # class -> metric -> mean over cases


class Progress:
    """Prints what stage the demo is in and how long it has been running; while a trainer trains, a bar
    over its epochs (only on a terminal) while nnU-Net's full output goes to ``logs/<trainer>.log``."""

    def __init__(self):
        self.start = time.monotonic()

    def __call__(self, message: str):
        print(f"[{time.monotonic() - self.start:7.1f} s] {message}", flush=True)

    @contextlib.contextmanager
    def training(self, trainer: str, log_file: Path, epochs: int):
        """Yields the ``on_line`` for NnUNetWorkspace.train."""
        write = line_writer(log_file)
        bar = RunProgress({trainer: epochs}, {trainer: log_file}, log=self)

        def on_line(line: str):
            write(line)
            bar.poll()
        self(f"  nnU-Net's output: {log_file}")
        try:
            yield on_line
        finally:
            write.close()
            bar.close()


def count_parameters(workspace: NnUNetWorkspace, dataset_id: int, configuration: str, trainer: str,
                     plans: str = "nnUNetPlans") -> int:
    """Parameters of the network the trainer builds for these plans (the inference form).

    nnU-Net's trainer lookup prints every folder it searches (its ``verbose`` is hard-coded on); that
    output is swallowed here so the demo's progress stays readable, and shown only if the lookup fails.
    """
    import contextlib
    import io
    import os
    import sys

    from nnunet_ext import trainer_lookup
    from nnunet_ext.network_cost import count_parameters as network_parameters

    old = os.environ.get("nnUNet_extTrainer")
    os.environ["nnUNet_extTrainer"] = workspace.env["nnUNet_extTrainer"]
    lookup_output = io.StringIO()
    try:
        with contextlib.redirect_stdout(lookup_output):
            trainer_class, plans_manager, configuration_manager, n_in, n_out = trainer_lookup.load_trainer_context(
                workspace.preprocessed / workspace.dataset_name(dataset_id), plans, configuration, trainer)
    except Exception:
        sys.stderr.write(lookup_output.getvalue())
        raise
    finally:
        if old is None:
            os.environ.pop("nnUNet_extTrainer")
        else:
            os.environ["nnUNet_extTrainer"] = old
    network = trainer_class.build_network_architecture(plans_manager, configuration_manager, n_in, n_out, False)
    return network_parameters(network)


def mean_metrics(gt_dir: Path, pred_dir: Path, dataset_json: dict) -> Dict[str, Dict[str, float]]:
    classes = foreground_classes(dataset_json)
    per_case = []
    for gt_file in sorted(gt_dir.glob("*.nii.gz")):
        gt, spacing = read_segmentation(gt_file)
        pred, _ = read_segmentation(pred_dir / gt_file.name)
        per_case.append(case_metrics(gt, pred, classes, spacing))
    if not per_case:
        raise FileNotFoundError(f"no ground-truth segmentations in {gt_dir}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (e.g. HD95 with no lesion found): reported as n/a
        return {c: {m: float(np.nanmean([case[c][m] for case in per_case])) for m in per_case[0][c]} for c in classes}


def run_demo(cfg: DemoConfig) -> Path:
    progress = Progress()
    ws = NnUNetWorkspace(cfg.workdir / "nnunet")
    progress(f"workspace: {ws.root}")

    progress(f"generating Dataset{cfg.dataset_id:03d}_{cfg.dataset_name}: {cfg.num_train_cases} training + "
             f"{cfg.num_test_cases} held-out cases of {tuple(cfg.shape)} voxels")
    raw = ws.generate(cfg.dataset_id, name=cfg.dataset_name, num_cases=cfg.num_train_cases, shape=tuple(cfg.shape),
                      spacing=tuple(cfg.spacing), num_test_cases=cfg.num_test_cases, seed=cfg.seed)
    progress("nnUNetv2_plan_and_preprocess ...")
    ws.plan_and_preprocess(cfg.dataset_id, configurations=(cfg.configuration,))
    dataset_json = json.loads((raw / "dataset.json").read_text())

    results: List[TrainerResult] = []
    for trainer in cfg.trainers:
        name = short_schedule_name(trainer, cfg.epochs, cfg.iterations, cfg.val_iterations)
        progress(f"nnUNetv2_train {cfg.dataset_id} {cfg.configuration} {cfg.fold} -tr {name}")
        with progress.training(trainer, cfg.workdir / "logs" / f"{log_name(trainer)}.log", cfg.epochs) as on_line:
            ws.train(cfg.dataset_id, cfg.configuration, cfg.fold, name, on_line=on_line)
        timing = json.loads((ws.model_folder(cfg.dataset_id, cfg.configuration, name) / f"fold_{cfg.fold}" /
                             TIMING_FILE).read_text())
        pred_dir = cfg.workdir / "predictions" / trainer
        progress(f"nnUNetv2_predict -tr {name} on {cfg.num_test_cases} held-out cases")
        start = time.perf_counter()
        ws.predict(cfg.dataset_id, cfg.configuration, name, raw / "imagesTs", pred_dir, folds=(cfg.fold,))
        predict_seconds = (time.perf_counter() - start) / cfg.num_test_cases
        progress(f"evaluating {trainer}")
        ws.evaluate(cfg.dataset_id, raw / "labelsTs", pred_dir)
        results.append(TrainerResult(
            trainer=trainer, schedule_name=name,
            parameters=count_parameters(ws, cfg.dataset_id, cfg.configuration, name),
            train_seconds_per_iteration=timing["seconds_per_iteration_median"],
            predict_seconds_per_case=predict_seconds,
            metrics=mean_metrics(raw / "labelsTs", pred_dir, dataset_json)))

    report = write_report(cfg, results)
    print()
    print(report.read_text())
    progress(f"done; report in {report}")
    return report


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_report(cfg: DemoConfig, results: List[TrainerResult]) -> Path:
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    classes = list(results[0].metrics)
    header = ["trainer"] + [f"Dice {c}" for c in classes] + [f"HD95 {c} (mm)" for c in classes] + \
             ["params (M)", "train s/iter", "predict s/case"]
    rows = []
    for r in results:
        rows.append([r.trainer] + [_fmt(r.metrics[c]["dice"]) for c in classes] +
                    [_fmt(r.metrics[c]["hd95"], 2) for c in classes] +
                    [f"{r.parameters / 1e6:.2f}", _fmt(r.train_seconds_per_iteration, 2),
                     _fmt(r.predict_seconds_per_case, 2)])
    with open(cfg.workdir / "comparison.csv", "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    (cfg.workdir / "comparison.json").write_text(json.dumps(
        {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
         "results": [asdict(r) for r in results]}, indent=1, default=list))
    lines = [
        f"# nnunet-ext demo: {', '.join(cfg.trainers)}",
        "",
        f"Dataset{cfg.dataset_id:03d}_{cfg.dataset_name} ({cfg.num_train_cases} training cases of {tuple(cfg.shape)}, "
        f"{cfg.num_test_cases} held-out), {cfg.configuration}, fold {cfg.fold}, {cfg.epochs} epochs x "
        f"{cfg.iterations} iterations each. Dice and HD95 are means over the held-out cases; train s/iter is the "
        "median measured training step; predict s/case is nnUNetv2_predict's wall time divided by the cases "
        "(model loading included). A schedule this short says nothing about which method is better: it shows "
        "the pipeline and the cost ratios.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ] + ["| " + " | ".join(r) + " |" for r in rows]
    report = cfg.workdir / "comparison.md"
    report.write_text("\n".join(lines) + "\n")
    return report
