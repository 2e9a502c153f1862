"""What a benchmark is made of: its configuration, the compared arms, the folders and one run's spec.

Shared by the runner (which plans and executes runs) and the report (which reads finished runs), so
neither imports the other for its types.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nnunet_ext.training.short_schedule import TIMING_FILE
from nnunet_ext.workspace import NnUNetWorkspace

VANILLA = "nnUNetTrainer"
DEFAULT_PLANS = "nnUNetPlans"
# preset -> (planner class for nnUNetv2_plan_experiment -pl, plans identifier it writes)
RESENC_PRESETS = {
    "M": ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
    "L": ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans"),
    "XL": ("nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans"),
}
RESENC_NEAREST = "nearest"                   # pick the preset by estimated memory (nnunet_ext.benchmark.resenc)
RESENC_CAP_SUFFIX = "_cap5pct"               # --resenc-dataset-cap: the preset with nnU-Net's 5% batch cap
RESENC_CHOICE_FILE = "resenc_choice.json"
EVAL_SETS = ("auto", "validation", "test")
EXECUTORS = ("local", "slurm", "debug")
CASES_FILE = "benchmark_cases.json"
TEST_PREDICTIONS = "test_predictions"
WINDOW_CASES_FILE = "benchmark_cases_window_start.json"  # the held-out check's model (convergence.py)
WINDOW_PREDICTIONS = "test_predictions_window_start"


def resenc_plans(preset: str, dataset_cap: bool = False) -> str:
    """The plans identifier of a ResEnc preset; ``dataset_cap``: its 5%-capped plans (``..._cap5pct``)."""
    if preset not in RESENC_PRESETS:
        raise ValueError(f"unknown ResEnc preset {preset!r}; choose one of {sorted(RESENC_PRESETS)}")
    return RESENC_PRESETS[preset][1] + (RESENC_CAP_SUFFIX if dataset_cap else "")


@dataclass(frozen=True)
class Arm:
    """One compared entry: a trainer trained under a plans identifier."""
    trainer: str
    plans: str = DEFAULT_PLANS

    @property
    def label(self) -> str:
        return self.trainer if self.plans == DEFAULT_PLANS else f"{self.trainer} [{self.plans}]"

    @property
    def is_vanilla(self) -> bool:
        return self.trainer == VANILLA and self.plans == DEFAULT_PLANS


@dataclass
class BenchmarkConfig:
    workdir: Path
    dataset_id: int
    configuration: str = "3d_fullres"
    trainers: Sequence[str] = ()
    folds: Sequence[int] = (0,)
    epochs: int = 10
    iterations: int = 20
    val_iterations: int = 2
    resenc: Optional[str] = None              # "M" | "L" | "XL" | "nearest": add nnUNetTrainer on a ResEnc preset
    resenc_dataset_cap: bool = False          # that preset planned with nnU-Net's default 5% dataset cap (resenc_cap)
    eval_set: str = "auto"                    # auto: the held-out test set when the raw dataset has labelsTs
    device: str = "cpu"
    # phantom generation (--generate); ignored for an existing dataset
    generate: bool = False
    dataset_name: str = "PhantomBench"
    num_train_cases: int = 10
    num_test_cases: int = 0
    shape: Sequence[int] = (24, 48, 48)
    spacing: Sequence[float] = (3.0, 1.0, 1.0)
    seed: int = 0
    task: str = "phantom"                     # nnunet_ext.data.tasks: a study task instead of the phantom
    # nnU-Net folders: None = a private workspace under workdir/nnunet (generated data); True = the
    # nnUNet_raw / nnUNet_preprocessed / nnUNet_results of the environment (an existing dataset)
    use_environment_folders: bool = False
    da_processes: Optional[int] = None        # nnUNet_n_proc_DA for training (default: 0 on CPU, 12 on GPU)
    # fan-out
    executor: str = "local"
    max_parallel: Optional[int] = None        # concurrent runs (default: GPUs, or CPU cores // cpus_per_run)
    cpus_per_run: int = 4
    timeout_min: int = 24 * 60
    slurm_partition: Optional[str] = None
    slurm_account: Optional[str] = None
    slurm_qos: Optional[str] = None
    mem_gb: Optional[int] = None
    slurm_additional: Dict[str, str] = field(default_factory=dict)
    # cost and evaluation
    cost_repeats: int = 5
    cost_cases: int = 3
    cost_threads: int = 1
    nsd_tolerance_mm: float = 1.0
    ablation: Optional[str] = None
    plots_overlay_cases: int = 3
    report_dir: Optional[Path] = None         # default: workdir/report
    pipelines: Sequence[str] = ()             # two-stage ROI comparison (nnunet_ext.cascade.compare.PIPELINES)
    pipeline_ids: Optional[Sequence[int]] = None  # its two stage-2 dataset ids (default: dataset id + 1, + 2)
    command_line: str = ""
    report_only: bool = False                 # rewrite the report from finished runs and cost.json; no training

    def arms(self) -> List[Arm]:
        """Vanilla nnU-Net first (always), then the requested trainers, then the ResEnc arm."""
        arms = [Arm(VANILLA)]
        for name in self.trainers:
            arm = Arm(name)
            if arm not in arms:
                arms.append(arm)
        if self.resenc:
            if self.resenc == RESENC_NEAREST:
                raise ValueError("--resenc nearest is resolved to a preset by run_benchmark before arms are listed")
            if self.resenc not in RESENC_PRESETS:
                raise ValueError(f"unknown ResEnc preset {self.resenc!r}; choose one of {sorted(RESENC_PRESETS)} "
                                 f"or {RESENC_NEAREST!r}")
            arms.append(Arm(VANILLA, resenc_plans(self.resenc, self.resenc_dataset_cap)))
        return arms

    def validate(self) -> None:
        if self.eval_set not in EVAL_SETS:
            raise ValueError(f"eval set must be one of {EVAL_SETS}, got {self.eval_set!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.device not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be cpu, cuda or mps (nnUNetv2_train -device), got {self.device!r}")
        if min(self.epochs, self.iterations, self.val_iterations) < 1:
            raise ValueError("epochs, iterations and val iterations must all be >= 1")
        if not self.folds:
            raise ValueError("give at least one fold")
        if self.resenc is not None and self.resenc not in (*RESENC_PRESETS, RESENC_NEAREST):
            raise ValueError(f"unknown ResEnc preset {self.resenc!r}; choose one of {sorted(RESENC_PRESETS)} "
                             f"or {RESENC_NEAREST!r}")
        if self.resenc_dataset_cap and self.resenc is None:
            raise ValueError("--resenc-dataset-cap caps the ResEnc arm's batch; it needs --resenc M|L|XL|nearest")
        if self.pipelines:
            from nnunet_ext.cascade.compare import check_pipelines
            check_pipelines(self.pipelines)
        for fold in self.folds:
            if not (fold == "all" or (isinstance(fold, int) and fold >= 0)):
                raise ValueError(f"fold must be a non-negative integer or 'all', got {fold!r}")


@dataclass(frozen=True)
class WorkspaceFolders:
    raw: str
    preprocessed: str
    results: str
    da_processes: int

    def open(self) -> NnUNetWorkspace:
        """The workspace in the current process (built here so a job takes its own node's environment)."""
        return NnUNetWorkspace(folders=(self.raw, self.preprocessed, self.results),
                               num_da_processes=self.da_processes)


@dataclass(frozen=True)
class RunSpec:
    """Everything a job needs to train, predict and score one (arm, fold); picklable for submitit."""
    arm: Arm
    fold: object
    schedule_name: str
    dataset_id: int
    configuration: str
    eval_set: str           # "validation" | "test" (resolved)
    device: str
    folders: WorkspaceFolders
    nsd_tolerance_mm: float
    timeout_s: int
    log_file: str = ""      # nnU-Net's output of this run is appended here ("" = kept only in the error message)
    cpu_threads: int = 0    # on a CPU: OMP/MKL threads of each nnU-Net command (0 = torch's default, every core)

    @property
    def name(self) -> str:
        return f"{self.arm.label} fold {self.fold}"

    def fold_folder(self, ws: NnUNetWorkspace) -> Path:
        return ws.model_folder(self.dataset_id, self.configuration, self.schedule_name, self.arm.plans) / \
            f"fold_{self.fold}"

    def predictions_folder(self, ws: NnUNetWorkspace) -> Path:
        return self.fold_folder(ws) / ("validation" if self.eval_set == "validation" else TEST_PREDICTIONS)

    def window_checkpoint(self, ws: NnUNetWorkspace) -> Optional[Path]:
        """The model kept at the start of the convergence window (test cases only: the held-out check)."""
        from nnunet_ext.benchmark.convergence import window_checkpoint_epoch

        if self.eval_set != "test":
            return None
        found = {window_checkpoint_epoch(p.name): p for p in self.fold_folder(ws).glob("checkpoint_ep*.pth")}
        found.pop(None, None)
        return found[max(found)] if found else None

    def window_predictions_folder(self, ws: NnUNetWorkspace) -> Path:
        return self.fold_folder(ws) / WINDOW_PREDICTIONS


def training_timing(spec: RunSpec, ws: NnUNetWorkspace) -> Optional[dict]:
    path = spec.fold_folder(ws) / TIMING_FILE
    return json.loads(path.read_text()) if path.is_file() else None
