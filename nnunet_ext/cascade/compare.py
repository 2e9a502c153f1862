"""Single-stage vs ROI cascade vs detector + stage-skipping segmentor on the same held-out cases.

The multi-stage paper's Table 3 compares its segmentor "w/o crop" (whole image) and "with crop" (detector
ROI) by Dice and cost; the ELANRes paper's cascade adds an organ -> lesion variant. Every pipeline here is
trained with nnUNetv2_train and predicted with nnUNetv2_predict, evaluated with nnUNetv2_evaluate_folder
(Dice per label of the source dataset), and timed end to end (wall seconds for all held-out cases, peak
resident memory of the largest process involved, from wait4/getrusage; CPU, since that is what CI has).
Every held-out case is also scored on its own (Dice/IoU from nnU-Net's summary.json, HD95/NSD/... from
nnunet_ext.evaluation, as the benchmark's arms), so the benchmark report can test each pipeline against
``single_stage`` case by case (paired Wilcoxon, Holm) instead of comparing two means.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from nnunet_ext.cascade.detector import DetectorConfig, train_detector_from_preprocessed
from nnunet_ext.cascade.predict import NnUNetModel, StepCost, predict_cascade, run_nnunet_predict
from nnunet_ext.cascade.prepare import CascadeSettings, prepare_stage2_dataset

PIPELINES = ("single_stage", "cascade", "segmentor_without_crop", "detector_segmentor")
REFERENCE = "single_stage"      # vanilla nnU-Net on whole images: what every other pipeline is tested against
BENCHMARK_FOLDER = "pipelines"  # under the benchmark's workdir: comparison.json, cases.json and the predictions
CASES_FILE = "cases.json"       # one row per (pipeline, held-out case, class), next to comparison.json


def check_pipelines(names) -> tuple:
    """The pipeline names, validated; ``all`` stands for every pipeline."""
    names = tuple(dict.fromkeys(PIPELINES if "all" in names else names))
    unknown = sorted(set(names) - set(PIPELINES))
    if unknown:
        raise ValueError(f"unknown pipelines {unknown}; choose from {', '.join(PIPELINES)} or all")
    return names


@dataclass
class ComparisonSettings:
    """What to train for each pipeline (short schedules by name keep a comparison run small)."""
    configuration: str = "3d_fullres"
    trainer: str = "nnUNetTrainer_ep2it2"  # single stage = stage 1, and the cascade's stage 2
    segmentor_trainer: str = "StageSkippingSegmentorTrainer_ep2it2"
    margin: float = 10.0
    margin_unit: str = "mm"
    jitter_voxels: int = 2
    organ_channel: bool = True
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    pipelines: tuple = PIPELINES
    device: str = "cpu"  # nnUNetv2_train / nnUNetv2_predict -device (the detector is CPU-sized and runs on CPU)
    nsd_tolerance_mm: float = 1.0  # of the per-case NSD (the benchmark passes its --nsd-tolerance)


def _dice(summary: dict, label: str) -> float:
    value = summary["mean"].get(label, {}).get("Dice")
    return float(value) if value is not None else float("nan")


def _active_stages(workspace, dataset_id: int, configuration: str) -> str:
    """Active segmentor stages for the patch nnU-Net planned (the 'input size' of the stage-skipping rule)."""
    from nnunet_ext_architectures.stage_skipping_segmentor import (StageSkippingConfig,
                                                                   stage_skipping_kwargs_from_configuration)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(str(workspace.preprocessed / workspace.dataset_name(dataset_id) / "nnUNetPlans.json"))
    cm = plans.get_configuration(configuration)
    config = StageSkippingConfig.build(**stage_skipping_kwargs_from_configuration(cm)["arch_kwargs"])
    r = config.first_active_stage(cm.patch_size)
    return f"{r}-{config.n_stages} of {config.n_stages} (patch {list(cm.patch_size)})"


def _ensure_trained(workspace, dataset_id: int, configuration: str, trainer: str, log,
                    device: str = "cpu") -> Optional[float]:
    """Train fold 0 unless it is finished; its seconds, or None when an earlier run (e.g. a benchmark arm) did."""
    folder = workspace.model_folder(dataset_id, configuration, trainer) / "fold_0"
    if (folder / "checkpoint_final.pth").is_file():
        return None
    start = time.perf_counter()
    workspace.train(dataset_id, configuration, 0, trainer, device=device)
    log(f"trained {trainer} on dataset {dataset_id} ({configuration})")
    return time.perf_counter() - start


def _ensure_preprocessed(workspace, dataset_id: int, configuration: str) -> None:
    name = workspace.dataset_name(dataset_id)
    if not (workspace.preprocessed / name / "nnUNetPlans.json").is_file():
        workspace.plan_and_preprocess(dataset_id, configurations=(configuration,))


def compare_pipelines(workspace, dataset_id: int, cascade_id: int, detector_stage2_id: int,
                      settings: Optional[ComparisonSettings] = None, input_dir=None, reference_dir=None,
                      output_root=None, log=print) -> List[Dict]:
    """Train (if needed), predict and evaluate each pipeline on the held-out cases; one row per pipeline.

    ``workspace``: an NnUNetWorkspace holding the source raw dataset ``dataset_id`` (imagesTs/labelsTs by
    default). ``cascade_id`` / ``detector_stage2_id``: ids for the two stage-2 datasets this writes.
    Row keys: pipeline, dice_<label name>..., seconds, peak_rss_mib, train_seconds, notes. The per-case
    scores (``pipeline_case_rows``) go to ``<output_root>/cases.json``.
    """
    settings = settings or ComparisonSettings()
    check_pipelines(settings.pipelines)
    name = workspace.dataset_name(dataset_id)
    input_dir = Path(input_dir or workspace.raw / name / "imagesTs")
    reference_dir = Path(reference_dir or workspace.raw / name / "labelsTs")
    output_root = Path(output_root or workspace.root / "comparison")
    output_root.mkdir(parents=True, exist_ok=True)
    config = settings.configuration
    _ensure_preprocessed(workspace, dataset_id, config)
    dataset_json = json.loads((workspace.raw / name / "dataset.json").read_text())
    labels = {k: v for k, v in dataset_json["labels"].items() if k not in ("background", "ignore")}
    cases: List[Dict] = []

    def row(pipeline: str, pred_dir: Path, seconds: float, rss: float, train_seconds: Optional[float],
            notes: str) -> Dict:
        summary = workspace.evaluate(dataset_id, reference_dir, pred_dir)
        cases.extend(pipeline_case_rows(pipeline, pred_dir / "summary.json", dataset_json, settings.nsd_tolerance_mm))
        out = {"pipeline": pipeline}
        for label_name, value in labels.items():
            key = str(value) if not isinstance(value, list) else "(" + ", ".join(map(str, value)) + ")"
            out[f"dice_{label_name}"] = _dice(summary, key)
        out.update(seconds=round(seconds, 2), peak_rss_mib=round(rss, 1),
                   train_seconds=round(train_seconds, 1) if train_seconds is not None else "trained earlier",
                   notes=notes)
        log(json.dumps(out))
        return out

    rows = []
    device = settings.device
    stage1 = NnUNetModel(dataset_id, config, settings.trainer, device=device)
    if "single_stage" in settings.pipelines or "cascade" in settings.pipelines:
        train_s = _ensure_trained(workspace, dataset_id, config, settings.trainer, log, device)
        if "single_stage" in settings.pipelines:
            cost = StepCost()
            run_nnunet_predict(workspace, stage1, input_dir, output_root / "single_stage", cost)
            rows.append(row("single_stage", output_root / "single_stage", cost.seconds, cost.peak_rss_mib, train_s,
                            f"{settings.trainer} on whole images"))
    if "cascade" in settings.pipelines:
        cascade_settings = CascadeSettings(target="lesion", margin=settings.margin, margin_unit=settings.margin_unit,
                                           jitter_voxels=settings.jitter_voxels, organ_channel=settings.organ_channel)
        prepare_stage2_dataset(workspace.raw, dataset_id, cascade_id, settings=cascade_settings)
        _ensure_preprocessed(workspace, cascade_id, config)
        train2 = _ensure_trained(workspace, cascade_id, config, settings.trainer, log, device)
        result = predict_cascade(workspace, input_dir, output_root / "cascade",
                                 NnUNetModel(cascade_id, config, settings.trainer, device=device), stage1=stage1)
        rows.append(row("cascade", output_root / "cascade", result.seconds, result.peak_rss_mib, train2,
                        f"stage 1 {settings.trainer} + LCC, stage 2 {settings.trainer} on lesion-vs-rest crops"))
    if "segmentor_without_crop" in settings.pipelines:
        train_s = _ensure_trained(workspace, dataset_id, config, settings.segmentor_trainer, log, device)
        cost = StepCost()
        run_nnunet_predict(workspace, NnUNetModel(dataset_id, config, settings.segmentor_trainer, device=device),
                           input_dir, output_root / "segmentor_without_crop", cost)
        rows.append(row("segmentor_without_crop", output_root / "segmentor_without_crop", cost.seconds,
                        cost.peak_rss_mib, train_s, "active stages " + _active_stages(workspace, dataset_id, config)))
    if "detector_segmentor" in settings.pipelines:
        start = time.perf_counter()
        checkpoint, detector_summary = train_detector_from_preprocessed(
            workspace.preprocessed, workspace.results, dataset_id, config, config=settings.detector, log=log)
        detector_seconds = time.perf_counter() - start
        crop_settings = CascadeSettings(target="all", margin=settings.margin, margin_unit=settings.margin_unit,
                                        jitter_voxels=settings.jitter_voxels, organ_channel=False)
        prepare_stage2_dataset(workspace.raw, dataset_id, detector_stage2_id, settings=crop_settings)
        _ensure_preprocessed(workspace, detector_stage2_id, config)
        train2 = _ensure_trained(workspace, detector_stage2_id, config, settings.segmentor_trainer, log, device)
        result = predict_cascade(workspace, input_dir, output_root / "detector_segmentor",
                                 NnUNetModel(detector_stage2_id, config, settings.segmentor_trainer, device=device),
                                 detector_checkpoint=checkpoint)
        rows.append(row("detector_segmentor", output_root / "detector_segmentor", result.seconds,
                        result.peak_rss_mib, (train2 or 0.0) + detector_seconds,
                        f"detector held-out box IoU {detector_summary['mean_held_out_iou']:.3f}; active stages "
                        + _active_stages(workspace, detector_stage2_id, config)))
    (output_root / "comparison.json").write_text(json.dumps(rows, indent=2))
    (output_root / CASES_FILE).write_text(json.dumps(cases, indent=1))
    return rows


def pipeline_case_rows(pipeline: str, summary_file, dataset_json: dict, nsd_tolerance_mm: float = 1.0) -> List[Dict]:
    """One pipeline's per-case scores: the benchmark arms' rows (nnunet_ext.benchmark.case_scores.case_rows:
    one per case and class plus the per-case ``mean``), keyed by ``pipeline`` instead of trainer and fold."""
    from nnunet_ext.benchmark.case_scores import case_rows

    return [{"pipeline": pipeline, **r} for r in case_rows(summary_file, dataset_json, nsd_tolerance_mm)]


def format_rows(rows: List[Dict]) -> str:
    """A markdown table of compare_pipelines' rows."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.4f}" if isinstance(r[k], float) and k.startswith("dice")
                                       else str(r[k]) for k in keys) + " |")
    return "\n".join(lines)


# -- as part of `nnunet-ext benchmark --pipelines ...` ----------------------------------------------------
@dataclass(frozen=True)
class PipelineJob:
    """compare_pipelines as one benchmark job (picklable for submitit, like the benchmark's cost job)."""
    folders: object  # nnunet_ext.benchmark.spec.WorkspaceFolders
    dataset_id: int
    cascade_id: int
    detector_stage2_id: int
    settings: ComparisonSettings
    output_root: str


def benchmark_pipeline_job(cfg, folders, eval_set: str, workdir) -> PipelineJob:
    """The comparison a benchmark config asks for: its configuration, device and short schedule, fold 0.

    Both nnU-Net trainers get the benchmark's schedule name, so ``single_stage`` (and the cascade's stage 1)
    is the benchmark's own nnUNetTrainer fold-0 model when fold 0 is benchmarked (not trained twice).
    """
    from nnunet_ext.training.short_schedule import short_schedule_name

    if eval_set != "test":
        raise ValueError("--pipelines compares on the held-out cases: the dataset needs imagesTs and labelsTs "
                         "(with --generate: --test-cases N)")
    ids = tuple(cfg.pipeline_ids) if cfg.pipeline_ids else (cfg.dataset_id + 1, cfg.dataset_id + 2)
    if len(ids) != 2 or len({cfg.dataset_id, *ids}) != 3:
        raise ValueError(f"--pipeline-ids takes two new dataset ids (cascade stage 2, detector stage 2), different "
                         f"from each other and from the dataset {cfg.dataset_id}; got {list(ids)}")
    schedule = lambda trainer: short_schedule_name(trainer, cfg.epochs, cfg.iterations, cfg.val_iterations)  # noqa
    settings = ComparisonSettings(configuration=cfg.configuration, trainer=schedule("nnUNetTrainer"),
                                  segmentor_trainer=schedule("StageSkippingSegmentorTrainer"),
                                  pipelines=check_pipelines(cfg.pipelines), device=cfg.device,
                                  nsd_tolerance_mm=float(cfg.nsd_tolerance_mm))
    return PipelineJob(folders, int(cfg.dataset_id), int(ids[0]), int(ids[1]), settings,
                       str(Path(workdir) / BENCHMARK_FOLDER))


def run_pipeline_job(job: PipelineJob) -> List[Dict]:
    """Train what is missing, predict and evaluate every pipeline; rows also go to <output_root>/comparison.json."""
    return compare_pipelines(job.folders.open(), job.dataset_id, job.cascade_id, job.detector_stage2_id, job.settings,
                             output_root=job.output_root)


def pipelines_section(workdir, pipelines, out_dir=None) -> List[str]:
    """The benchmark report's section: the rows compare_pipelines wrote under ``workdir``, then every pipeline
    tested against ``single_stage`` case by case (its per-case rows also go to ``out_dir/pipeline_cases.csv``)."""
    folder = Path(workdir) / BENCHMARK_FOLDER
    path = folder / "comparison.json"
    out = ["## Pipelines: single stage vs two-stage ROI (multi-stage paper Table 3 layout)", "",
           "Every pipeline trained with nnUNetv2_train (fold 0, the benchmark's schedule), predicted on the held-out "
           "cases and scored by nnUNetv2_evaluate_folder (Dice per label). `seconds` = wall time of the whole "
           "pipeline for all held-out cases (every nnUNetv2_predict call included); `peak_rss_mib` = peak resident "
           "memory of the largest process involved; `segmentor_without_crop` = Table 3 \"w/o crop\", "
           "`detector_segmentor` = \"with crop\". See docs/cascade.md.", ""]
    if not path.is_file():
        return out + [f"No results for {', '.join(pipelines)} ({path} missing; see Failed runs)."]
    return out + [format_rows(json.loads(path.read_text())), ""] + pipeline_verdicts(folder / CASES_FILE, out_dir)


def pipeline_verdicts(cases_file, out_dir=None) -> List[str]:
    """Each pipeline against ``single_stage`` on the same held-out cases, per class: the benchmark's paired
    statistics and plain verdicts (nnunet_ext.benchmark.report.reference_tables), Holm over the pipelines."""
    from nnunet_ext.benchmark.case_scores import MEAN_CLASS
    from nnunet_ext.benchmark.report import reference_tables, write_cases_csv

    out = [f"### Each pipeline against {REFERENCE}, case by case", ""]
    cases_file = Path(cases_file)
    if not cases_file.is_file():
        return out + [f"No per-case scores ({cases_file} is missing: a comparison written before they were kept); "
                      "rerun the benchmark to get them (trained models are reused)."]
    rows = json.loads(cases_file.read_text())
    present = list(dict.fromkeys(r["pipeline"] for r in rows))
    if REFERENCE not in present:
        return out + [f"No verdicts: {REFERENCE}, the reference, is not among the compared pipelines "
                      f"({', '.join(present)}); add it to --pipelines."]
    rows = [{"trainer": r["pipeline"], "fold": 0, **r} for r in rows]  # the benchmark's row keys
    if out_dir is not None:
        write_cases_csv(rows, Path(out_dir) / "pipeline_cases.csv", keys=("pipeline",))
    classes = [MEAN_CLASS] + [c for c in dict.fromkeys(r["class"] for r in rows) if c != MEAN_CLASS]
    others = len(present) - 1
    out += [f"Paired on the same held-out case (fold 0's models: the cases vary, the training set does not). Dice "
            f"from nnU-Net's evaluator; `{MEAN_CLASS}` = the per-case mean over the foreground classes. ΔDice = "
            f"pipeline - {REFERENCE}, mean with a seeded 95% bootstrap CI; p = two-sided Wilcoxon signed-rank; Holm "
            f"corrects for the {others} pipeline(s) tested against {REFERENCE}, within each class. The verdict says "
            "better/worse only when the Holm p < 0.05. Every case and metric: `pipeline_cases.csv`.", ""]
    return out + reference_tables(rows, present, REFERENCE, classes, kind="pipeline")
