"""The benchmark's plan of runs: every (trainer, fold) through ``nnUNetv2_train``, fanned out with submitit.

Fairness is held by construction: one dataset, one plans file per arm (the same ``nnUNetPlans`` for every
trainer, ``nnUNetResEncUNet*Plans[_cap5pct]`` only for the ResEnc arm), the same folds (nnU-Net's splits_final.json),
the same short schedule (``<Trainer>_ep<E>it<I>val<V>``), training from scratch, the same evaluation code,
and cost measured one trainer after another in the same job.

A finished run (``checkpoint_final.pth`` and its predictions' ``summary.json``) is never rerun; a run with
only ``checkpoint_latest.pth`` continues with ``--c``; a trained run without predictions runs ``--val``.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from nnunet_ext.benchmark import report as benchmark_report
from nnunet_ext.benchmark.spec import (  # noqa: F401  (the spec types are importable from here too)
    CASES_FILE, DEFAULT_PLANS, EVAL_SETS, EXECUTORS, RESENC_CHOICE_FILE, RESENC_NEAREST, RESENC_PRESETS,
    TEST_PREDICTIONS, VANILLA, WINDOW_CASES_FILE, Arm, BenchmarkConfig, RunSpec, WorkspaceFolders, resenc_plans,
    training_timing)
from nnunet_ext.progress import RunProgress, line_writer, log_name
from nnunet_ext.training.short_schedule import short_schedule_name
from nnunet_ext.workspace import CommandFailed, NnUNetWorkspace


def is_finished(spec: RunSpec, ws: NnUNetWorkspace) -> bool:
    """Trained to the end and predicted: the markers nnU-Net itself leaves (checkpoint_final + summary.json), for
    the window-start model of the held-out check too when the run kept one."""
    window = spec.window_checkpoint(ws)
    return (spec.fold_folder(ws) / "checkpoint_final.pth").is_file() and \
        (spec.predictions_folder(ws) / "summary.json").is_file() and \
        (window is None or (spec.window_predictions_folder(ws) / "summary.json").is_file())


def execute_run(spec: RunSpec) -> dict:
    """Train (or resume), predict and score one (arm, fold). The function each submitit job runs."""
    from nnunet_ext.benchmark.case_scores import case_rows

    ws = spec.folders.open()
    folder = spec.fold_folder(ws)
    skipped = is_finished(spec, ws)
    started = time.time()
    if not skipped:
        write = line_writer(Path(spec.log_file)) if spec.log_file else None
        try:
            _train_and_predict(spec, ws, write)
        finally:
            if write is not None:
                write.close()

    def scored(cases_file: Path, predicted: Path) -> list:
        if skipped and cases_file.is_file():
            return json.loads(cases_file.read_text())
        dataset_json = json.loads((ws.preprocessed / ws.dataset_name(spec.dataset_id) / "dataset.json").read_text())
        rows = case_rows(predicted / "summary.json", dataset_json, spec.nsd_tolerance_mm)
        cases_file.write_text(json.dumps(rows, indent=1))
        return rows

    rows = scored(folder / CASES_FILE, spec.predictions_folder(ws))
    if spec.window_checkpoint(ws) is not None:
        scored(folder / WINDOW_CASES_FILE, spec.window_predictions_folder(ws))
    return {"label": spec.arm.label, "fold": spec.fold, "skipped": skipped, "seconds": time.time() - started,
            "cases": len({r["case"] for r in rows})}


def thread_env(spec: RunSpec) -> Dict[str, str]:
    """Pin a CPU run to its share of the cores. torch otherwise starts one thread per core in every run, and
    runs side by side then oversubscribe the machine: each thread waits at every barrier for a descheduled
    sibling, and a step becomes many times slower (measured: a 64x64 2D validation forward took seconds)."""
    if spec.device != "cpu" or spec.cpu_threads < 1:
        return {}
    n = str(spec.cpu_threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def _train_and_predict(spec: RunSpec, ws: NnUNetWorkspace, on_line: Optional[Callable[[str], None]]) -> None:
    """nnUNetv2_train (or --c, or --val for a trained run), then predict + evaluate the test set if asked."""
    folder = spec.fold_folder(ws)
    common = dict(plans=spec.arm.plans, device=spec.device, timeout=spec.timeout_s, on_line=on_line,
                  env=thread_env(spec))
    if not (folder / "checkpoint_final.pth").is_file():
        resume = ["--c"] if (folder / "checkpoint_latest.pth").is_file() else []
        ws.train(spec.dataset_id, spec.configuration, spec.fold, spec.schedule_name, *resume, **common)
    elif spec.eval_set == "validation":
        ws.train(spec.dataset_id, spec.configuration, spec.fold, spec.schedule_name, "--val", **common)
    if spec.eval_set == "test":
        raw = ws.raw / ws.dataset_name(spec.dataset_id)
        pred = spec.predictions_folder(ws)
        ws.predict(spec.dataset_id, spec.configuration, spec.schedule_name, raw / "imagesTs", pred,
                   folds=(spec.fold,), **common)
        ws.evaluate(spec.dataset_id, raw / "labelsTs", pred, plans=spec.arm.plans)
        window = spec.window_checkpoint(ws)
        if window is not None:  # the held-out convergence check (convergence.py): the same cases, earlier model
            pred = spec.window_predictions_folder(ws)
            ws.predict(spec.dataset_id, spec.configuration, spec.schedule_name, raw / "imagesTs", pred,
                       "-chk", window.name, folds=(spec.fold,), **common)
            ws.evaluate(spec.dataset_id, raw / "labelsTs", pred, plans=spec.arm.plans)


# -- fan-out ---------------------------------------------------------------------------------------------
def make_executor(cfg: BenchmarkConfig, folder: Path):
    """A submitit executor: LocalExecutor (real subprocesses), Slurm, or DebugExecutor (in-process)."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cfg.executor)
    gpus = 1 if cfg.device == "cuda" else 0
    params = dict(timeout_min=int(cfg.timeout_min), name="nnunet-ext-benchmark", gpus_per_node=gpus)
    if cfg.executor == "slurm":
        params.update(cpus_per_task=int(cfg.cpus_per_run), tasks_per_node=1, nodes=1)
        if cfg.mem_gb:
            params["mem_gb"] = int(cfg.mem_gb)
        for key in ("partition", "account", "qos"):
            value = getattr(cfg, f"slurm_{key}")
            if value:
                params[f"slurm_{key}"] = value
        if cfg.slurm_additional:
            params["slurm_additional_parameters"] = dict(cfg.slurm_additional)
    executor.update_parameters(**params)
    return executor


def default_parallel(cfg: BenchmarkConfig) -> int:
    if cfg.max_parallel is not None:
        if cfg.max_parallel < 1:
            raise ValueError(f"max parallel runs must be >= 1, got {cfg.max_parallel}")
        return int(cfg.max_parallel)
    if cfg.executor == "slurm":
        return 64
    if cfg.device == "cuda":
        import torch

        return max(1, torch.cuda.device_count())
    return max(1, (os.cpu_count() or 1) // max(1, cfg.cpus_per_run))


@dataclass
class JobOutcome:
    item: object
    result: object = None
    error: Optional[str] = None


def submit_all(executor, fn: Callable, items: Sequence, max_parallel: int = 1,
               gpu_slots: Optional[Sequence[int]] = None,
               on_done: Optional[Callable[[JobOutcome], None]] = None,
               on_poll: Optional[Callable[[], None]] = None, poll_seconds: float = 1.0) -> List[JobOutcome]:
    """Run ``fn(item)`` for every item through ``executor``, at most ``max_parallel`` at a time.

    On Slurm every job is submitted at once as an array (the scheduler throttles it with
    ``slurm_array_parallelism``); locally, a new job starts when one finishes, and with ``gpu_slots`` each
    running job gets its own GPU. A failing job is reported in its outcome and does not stop the others.
    ``on_poll`` is called about every ``poll_seconds`` while jobs run (the progress bar reads the logs then).
    """
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    items = list(items)
    outcomes = [JobOutcome(item) for item in items]

    def finish(index: int, job) -> None:
        try:
            outcomes[index].result = job.result()
        except Exception as error:  # a failed job: keep its message for the report
            outcomes[index].error = f"{type(error).__name__}: {error}"
        if on_done is not None:
            on_done(outcomes[index])

    if getattr(executor, "cluster", None) == "slurm":
        executor.update_parameters(slurm_array_parallelism=max_parallel)
        with executor.batch():
            jobs = [executor.submit(fn, item) for item in items]
        waiting = list(enumerate(jobs))
        while waiting:
            if on_poll is not None:
                on_poll()
            still = [(index, job) for index, job in waiting if not job.done()]
            for index, job in waiting:
                if (index, job) not in still:
                    finish(index, job)
            if len(still) == len(waiting):
                time.sleep(poll_seconds)
            waiting = still
        return outcomes

    free_slots = list(gpu_slots) if gpu_slots else [None] * max_parallel
    free_slots = free_slots[:max_parallel]
    running = []  # (index, job, slot)
    pending = list(range(len(items)))
    while pending or running:
        while pending and free_slots:
            slot = free_slots.pop(0)
            if slot is not None:
                executor.update_parameters(visible_gpus=[slot])
            index = pending.pop(0)
            running.append((index, executor.submit(fn, items[index]), slot))
        still = []
        for index, job, slot in running:
            if job.done():
                finish(index, job)
                free_slots.append(slot)
            else:
                still.append((index, job, slot))
        if on_poll is not None:
            on_poll()
        if len(still) == len(running) and running:
            time.sleep(poll_seconds)
        running = still
    return outcomes


# -- the whole benchmark -----------------------------------------------------------------------------
def prepare_workspace(cfg: BenchmarkConfig, log: Callable[[str], None] = print) -> WorkspaceFolders:
    """Generate (if asked), plan and preprocess once; later invocations find the folders and skip it."""
    folders = existing_folders(cfg)
    if not cfg.use_environment_folders:
        for f in (folders.raw, folders.preprocessed, folders.results):
            Path(f).mkdir(parents=True, exist_ok=True)
    ws = folders.open()
    if cfg.generate and not list(Path(folders.raw).glob(f"Dataset{cfg.dataset_id:03d}_*")):
        log(f"generating Dataset{cfg.dataset_id:03d}_{cfg.dataset_name}: {cfg.num_train_cases} training + "
            f"{cfg.num_test_cases} test cases of {tuple(cfg.shape)}")
        ws.generate(cfg.dataset_id, name=cfg.dataset_name, num_cases=cfg.num_train_cases, shape=tuple(cfg.shape),
                    spacing=tuple(cfg.spacing), num_test_cases=cfg.num_test_cases, seed=cfg.seed,
                    task=cfg.task)
    try:
        name = ws.dataset_name(cfg.dataset_id)
    except FileNotFoundError as error:
        raise ValueError(f"{error}; pass --generate to create a phantom dataset") from None
    pre = Path(folders.preprocessed) / name
    planner_env = {"nnUNet_n_proc_DA": str(max(1, folders.da_processes))}
    if not _preprocessed(pre, DEFAULT_PLANS, cfg.configuration):
        log(f"nnUNetv2_plan_and_preprocess -d {cfg.dataset_id} -c {cfg.configuration}")
        ws.plan_and_preprocess(cfg.dataset_id, configurations=(cfg.configuration,))
    if cfg.resenc:
        plans = plan_resenc(ws, cfg.dataset_id, cfg.resenc, cfg.resenc_dataset_cap, planner_env, log)
        if not _preprocessed(pre, plans, cfg.configuration):
            log(f"nnUNetv2_preprocess -d {cfg.dataset_id} -plans_name {plans} -c {cfg.configuration}")
            ws.run("nnUNetv2_preprocess", "-d", cfg.dataset_id, "-plans_name", plans, "-c", cfg.configuration,
                   "-np", 1, env=planner_env)
    return folders


def plan_resenc(ws: NnUNetWorkspace, dataset_id: int, preset: str, dataset_cap: bool, env: dict,
                log: Callable[[str], None] = print) -> str:
    """Plan a ResEnc preset unless its plans exist (a resumed workdir keeps them); returns the plans identifier.

    ``dataset_cap``: nnU-Net's preset planner with the default 5% dataset cap (benchmark/resenc_cap.py), in its
    own plans file; the stock preset plans are neither read nor written."""
    plans = resenc_plans(preset, dataset_cap)
    if (ws.preprocessed / ws.dataset_name(dataset_id) / f"{plans}.json").is_file():
        return plans
    if dataset_cap:
        log(f"python -m nnunet_ext.benchmark.resenc_cap {dataset_id} {preset} (ResEnc {preset}, 5% dataset cap)")
        ws.run(sys.executable, "-m", "nnunet_ext.benchmark.resenc_cap", dataset_id, preset, env=env)
    else:
        planner = RESENC_PRESETS[preset][0]
        log(f"nnUNetv2_plan_experiment -d {dataset_id} -pl {planner}")
        ws.run("nnUNetv2_plan_experiment", "-d", dataset_id, "-pl", planner, env=env)
    return plans


def existing_folders(cfg: BenchmarkConfig) -> WorkspaceFolders:
    """nnU-Net's three folders: the environment's, or the private workspace under the workdir."""
    if cfg.use_environment_folders:
        missing = [k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not os.environ.get(k)]
        if missing:
            raise ValueError(f"an existing dataset needs the nnU-Net environment variables; {', '.join(missing)} "
                             "not set (or pass --generate)")
        return WorkspaceFolders(os.environ["nnUNet_raw"], os.environ["nnUNet_preprocessed"],
                                os.environ["nnUNet_results"], _da_processes(cfg))
    root = (Path(cfg.workdir) / "nnunet").resolve()
    return WorkspaceFolders(str(root / "nnUNet_raw"), str(root / "nnUNet_preprocessed"), str(root / "nnUNet_results"),
                            _da_processes(cfg))


def resolve_resenc(cfg: BenchmarkConfig, folders: WorkspaceFolders, log: Callable[[str], None] = print):
    """``--resenc nearest``: plan all three ResEnc presets, estimate every network's training memory and pick
    the preset nearest to the largest trainer (nnunet_ext.benchmark.resenc). Kept in the workdir, so a resumed
    benchmark keeps its choice while the trainers and configuration stay the same. With ``--resenc-dataset-cap``
    the capped presets are planned and estimated (the plans the arm trains on)."""
    from nnunet_ext.benchmark.resenc import NetworkMemory, ResEncChoice, estimate_in_subprocess, make_choice

    trainers = [a.trainer for a in replace(cfg, resenc=None).arms()]
    key = {"dataset_id": int(cfg.dataset_id), "configuration": cfg.configuration, "trainers": trainers}
    if cfg.resenc_dataset_cap:  # only then, so a workdir's choice from before the flag existed stays valid
        key["dataset_cap"] = True
    cache = Path(cfg.workdir).resolve() / RESENC_CHOICE_FILE
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return ResEncChoice.from_dict(data["choice"])
    ws = folders.open()
    pre = Path(folders.preprocessed) / ws.dataset_name(cfg.dataset_id)
    presets = {p: plan_resenc(ws, cfg.dataset_id, p, cfg.resenc_dataset_cap,
                              {"nnUNet_n_proc_DA": str(max(1, folders.da_processes))}, log) for p in RESENC_PRESETS}
    log(f"estimating training memory of {len(trainers)} trainers and the ResEnc presets M, L, XL"
        + (" (5% dataset cap)" if cfg.resenc_dataset_cap else ""))
    raw = estimate_in_subprocess({"preprocessed_dataset": str(pre), "plans": DEFAULT_PLANS,
                                  "configuration": cfg.configuration, "trainers": trainers,
                                  "preset_trainer": VANILLA,
                                  "presets": presets}, env=ws.env)
    choice = make_choice([NetworkMemory(**t) for t in raw["trainers"]],
                         {p: NetworkMemory(**m) for p, m in raw["presets"].items()})
    cache.write_text(json.dumps({"key": key, "choice": choice.as_dict()}, indent=1))
    log(f"ResEnc preset nearest in memory: {choice.preset} ({choice.preset_gb:.3f} GB estimated) to "
        f"{choice.target} ({choice.target_gb:.3f} GB)")
    return choice


def _da_processes(cfg: BenchmarkConfig) -> int:
    if cfg.da_processes is not None:
        return int(cfg.da_processes)
    return 0 if cfg.device == "cpu" else 12


def _preprocessed(folder: Path, plans: str, configuration: str) -> bool:
    plans_file = folder / f"{plans}.json"
    if not plans_file.is_file():
        return False
    configurations = json.loads(plans_file.read_text())["configurations"]
    if configuration not in configurations:
        raise ValueError(f"configuration {configuration!r} is not planned in {plans_file} "
                         f"(available: {sorted(configurations)})")
    identifier = configurations[configuration].get("data_identifier", f"{plans}_{configuration}")
    data = folder / identifier
    return data.is_dir() and any(data.iterdir())


def resolve_eval_set(cfg: BenchmarkConfig, folders: WorkspaceFolders) -> str:
    ws = folders.open()
    raw = Path(folders.raw) / ws.dataset_name(cfg.dataset_id)
    has_test = (raw / "imagesTs").is_dir() and (raw / "labelsTs").is_dir() and any((raw / "labelsTs").iterdir())
    if cfg.eval_set == "test" and not has_test:
        raise ValueError(f"--eval-set test needs {raw}/imagesTs and labelsTs with ground truth")
    if cfg.eval_set == "auto":
        return "test" if has_test else "validation"
    return cfg.eval_set


def plan_runs(cfg: BenchmarkConfig, folders: WorkspaceFolders, eval_set: str) -> List[RunSpec]:
    name = lambda trainer: short_schedule_name(trainer, cfg.epochs, cfg.iterations, cfg.val_iterations)  # noqa: E731
    logs = Path(cfg.workdir).resolve() / "logs"
    return [RunSpec(arm, fold, name(arm.trainer), int(cfg.dataset_id), cfg.configuration, eval_set, cfg.device,
                    folders, float(cfg.nsd_tolerance_mm), int(cfg.timeout_min) * 60,
                    str(logs / f"{log_name(arm.label)}_fold_{fold}.log"),
                    min(int(cfg.cpus_per_run), os.cpu_count() or 1))
            for arm in cfg.arms() for fold in cfg.folds]


def check_trainer_names(cfg: BenchmarkConfig) -> None:
    """Every arm's short-schedule trainer looked up as nnUNetv2_train will (before any preprocessing or training)."""
    from nnunet_ext.trainer_lookup import check_trainers

    arms = replace(cfg, resenc=None).arms()
    check_trainers(short_schedule_name(a.trainer, cfg.epochs, cfg.iterations, cfg.val_iterations) for a in arms)


def check_runs(specs: Sequence[RunSpec], folders: WorkspaceFolders) -> None:
    """Plans, configuration and fold of every run exist, before anything is submitted.

    A fold beyond ``splits_final.json`` (or beyond nnU-Net's default 5 folds before that file exists) would
    make nnU-Net fall back to a random 80:20 split with only a warning: refused here."""
    if not specs:
        return
    ws = folders.open()
    pre = Path(folders.preprocessed) / ws.dataset_name(specs[0].dataset_id)
    splits_file = pre / "splits_final.json"
    n_folds = len(json.loads(splits_file.read_text())) if splits_file.is_file() else 5
    for spec in specs:
        plans_file = pre / f"{spec.arm.plans}.json"
        if not plans_file.is_file():
            raise ValueError(f"{spec.arm.label}: no plans file {plans_file}")
        configurations = json.loads(plans_file.read_text())["configurations"]
        if spec.configuration not in configurations:
            raise ValueError(f"{spec.arm.label}: configuration {spec.configuration!r} is not in {plans_file.name} "
                             f"(available: {sorted(configurations)})")
        if spec.fold != "all" and not 0 <= int(spec.fold) < n_folds:
            where = splits_file if splits_file.is_file() else "nnU-Net's default 5-fold split"
            raise ValueError(f"fold {spec.fold} does not exist: {where} has folds 0-{n_folds - 1} "
                             f"(nnU-Net would silently train on a random 80:20 split instead)")


@dataclass(frozen=True)
class CostJob:
    specs: tuple
    device: str
    repeats: int
    threads: int
    cases: int
    output: str


def measure_costs(job: CostJob) -> Dict[str, dict]:
    """Cost of every arm, one fresh subprocess after another in the same job: the numbers are comparable."""
    from nnunet_ext.benchmark.cost_job import CostRequest, measure_in_subprocess

    out = {}
    for spec in job.specs:
        ws = spec.folders.open()
        name = ws.dataset_name(spec.dataset_id)
        case_images = _case_images(spec, ws, job.cases)
        request = CostRequest(str(ws.preprocessed / name), spec.arm.plans, spec.configuration, spec.schedule_name,
                              device=job.device, repeats=job.repeats, threads=job.threads,
                              model_folder=str(spec.fold_folder(ws).parent), fold=spec.fold,
                              case_images=case_images)
        out[spec.arm.label] = asdict(measure_in_subprocess(request, env=ws.env))
    Path(job.output).write_text(json.dumps(out, indent=1))
    return out


def _case_images(spec: RunSpec, ws: NnUNetWorkspace, limit: int) -> List[List[str]]:
    """Image files of the first ``limit`` evaluated cases (the predictor times these)."""
    cases_file = spec.fold_folder(ws) / CASES_FILE
    if limit < 1 or not cases_file.is_file():
        return []
    raw = ws.raw / ws.dataset_name(spec.dataset_id)
    dataset_json = json.loads((raw / "dataset.json").read_text())
    ending, channels = dataset_json["file_ending"], len(dataset_json["channel_names"])
    images = raw / ("imagesTs" if spec.eval_set == "test" else "imagesTr")
    cases = sorted({r["case"] for r in json.loads(cases_file.read_text())})[:limit]
    return [[str(images / f"{case}_{c:04d}{ending}") for c in range(channels)] for case in cases]


def run_benchmark(cfg: BenchmarkConfig, log: Callable[[str], None] = print) -> Path:
    """Prepare, train every (arm, fold) not finished yet, measure cost, write the report; returns report.md."""

    cfg.validate()
    if cfg.report_only:
        return rewrite_report(cfg, log)
    check_trainer_names(cfg)
    workdir = Path(cfg.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    resenc_choice = None
    if cfg.resenc == RESENC_NEAREST:
        resenc_choice = resolve_resenc(cfg, prepare_workspace(replace(cfg, resenc=None), log), log)
        cfg = replace(cfg, resenc=resenc_choice.preset)
    arms = cfg.arms()
    folders = prepare_workspace(cfg, log)
    eval_set = resolve_eval_set(cfg, folders)
    specs = plan_runs(cfg, folders, eval_set)
    check_runs(specs, folders)
    ws = folders.open()
    todo = [s for s in specs if not is_finished(s, ws)]
    pipeline_job = None
    if cfg.pipelines:  # checked before any training: needs the held-out test cases
        from nnunet_ext.cascade.compare import benchmark_pipeline_job

        pipeline_job = benchmark_pipeline_job(cfg, folders, eval_set, workdir)
    log(f"{len(specs)} runs ({len(arms)} trainers x {len(cfg.folds)} folds), {len(specs) - len(todo)} already "
        f"finished; evaluating on the {eval_set} cases")
    executor = make_executor(cfg, workdir / "submitit")
    parallel = default_parallel(cfg)
    gpu_slots = None
    if cfg.executor == "local" and cfg.device == "cuda":
        gpu_slots = list(range(parallel))

    progress = RunProgress({s.name: cfg.epochs for s in todo}, {s.name: Path(s.log_file) for s in todo}, log)

    def report_done(outcome: JobOutcome) -> None:
        s = outcome.item
        status = "FAILED: " + outcome.error.splitlines()[0] if outcome.error else \
            f"{'already finished' if outcome.result['skipped'] else 'done'} ({outcome.result['cases']} cases)"
        progress.done(s.name, f"  {s.name}: {status}" + (f" (log: {s.log_file})" if outcome.error else ""))

    log(f"submitting {len(specs)} runs through submitit ({cfg.executor}, {parallel} at a time); nnU-Net's output "
        f"of each run goes to {workdir / 'logs'}")
    try:
        outcomes = submit_all(executor, execute_run, specs, parallel, gpu_slots, on_done=report_done,
                              on_poll=progress.poll)
    finally:
        progress.close()
    failures = {f"{o.item.arm.label} fold {o.item.fold}": o.error for o in outcomes if o.error}

    log("measuring cost, one fresh process per trainer, all in one job")
    first_fold = {}
    for s in specs:
        if s.arm.label not in first_fold and not any(
                o.error for o in outcomes if o.item.arm == s.arm and o.item.fold == s.fold):
            first_fold[s.arm.label] = s
    cost_job = CostJob(tuple(first_fold.values()), cfg.device, cfg.cost_repeats, cfg.cost_threads, cfg.cost_cases,
                       str(workdir / "cost.json"))
    [cost_outcome] = submit_all(executor, measure_costs, [cost_job], 1, gpu_slots[:1] if gpu_slots else None)
    costs = cost_outcome.result or {}
    if cost_outcome.error:
        failures["cost measurement"] = cost_outcome.error
    if pipeline_job is not None:
        from nnunet_ext.cascade.compare import run_pipeline_job

        log(f"pipelines {', '.join(pipeline_job.settings.pipelines)} (docs/cascade.md), one job")
        [outcome] = submit_all(executor, run_pipeline_job, [pipeline_job], 1, gpu_slots[:1] if gpu_slots else None)
        if outcome.error:
            failures["pipelines"] = outcome.error

    report_dir = Path(cfg.report_dir) if cfg.report_dir else workdir / "report"
    report = benchmark_report.write_report(cfg, specs, folders, costs, failures, report_dir,
                                           resenc_choice=resenc_choice)
    log(f"report: {report}")
    return report


def rewrite_report(cfg: BenchmarkConfig, log: Callable[[str], None] = print) -> Path:
    """The report again from a workdir's finished runs and its ``cost.json``: nothing is trained or measured.

    For a report layout change after a run: the numbers stay those the original command measured."""

    workdir = Path(cfg.workdir).resolve()
    cost_file = workdir / "cost.json"
    if not cost_file.is_file():
        raise ValueError(f"--report-only needs a finished benchmark in {workdir} (no cost.json there); run the "
                         "benchmark without --report-only first")
    folders = existing_folders(cfg)
    resenc_choice = None
    if cfg.resenc == RESENC_NEAREST:
        from nnunet_ext.benchmark.resenc import ResEncChoice

        cache = workdir / RESENC_CHOICE_FILE
        if not cache.is_file():
            raise ValueError(f"--report-only --resenc nearest needs the choice the run made ({cache} is missing)")
        resenc_choice = ResEncChoice.from_dict(json.loads(cache.read_text())["choice"])
        cfg = replace(cfg, resenc=resenc_choice.preset)
    try:
        eval_set = resolve_eval_set(cfg, folders)
    except FileNotFoundError as error:
        raise ValueError(f"--report-only: {error}") from None
    specs = plan_runs(cfg, folders, eval_set)
    ws = folders.open()
    failures = {f"{s.arm.label} fold {s.fold}": "not finished in this workdir (report only: nothing was run)"
                for s in specs if not is_finished(s, ws)}
    costs = json.loads(cost_file.read_text())
    report_dir = Path(cfg.report_dir) if cfg.report_dir else workdir / "report"
    report = benchmark_report.write_report(cfg, specs, folders, costs, failures, report_dir,
                                           resenc_choice=resenc_choice)
    log(f"report rewritten from {workdir} ({len(specs) - len(failures)} of {len(specs)} runs finished): {report}")
    return report


def command_line(argv: Sequence[str]) -> str:
    return "nnunet-ext benchmark " + shlex.join(list(argv))


__all__ = ["Arm", "BenchmarkConfig", "RunSpec", "WorkspaceFolders", "JobOutcome", "CostJob", "VANILLA",
           "DEFAULT_PLANS", "RESENC_PRESETS", "RESENC_NEAREST", "is_finished", "execute_run", "make_executor",
           "submit_all", "prepare_workspace", "plan_resenc", "resolve_resenc", "plan_runs", "measure_costs",
           "run_benchmark", "CommandFailed"]
