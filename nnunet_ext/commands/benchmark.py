"""`nnunet-ext benchmark`: every trainer against vanilla nnU-Net under one protocol; accuracy, statistics and cost."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _fold(text: str):
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fold must be an integer or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"fold must be >= 0, got {value}")
    return value


def _key_value(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--slurm-extra takes KEY=VALUE, got {text!r}")
    return tuple(text.split("=", 1))


def add_parser(subparsers):
    from nnunet_ext.benchmark.ablations import ABLATIONS
    from nnunet_ext.benchmark.spec import EVAL_SETS, EXECUTORS, RESENC_NEAREST, RESENC_PRESETS, BenchmarkConfig
    from nnunet_ext.commands.arguments import DEVICE_HELP, non_negative_int, positive_float, positive_int
    from nnunet_ext.data.tasks import TASKS
    from nnunet_ext.dataset_names import dataset_arg, dataset_id_arg

    d = BenchmarkConfig(workdir=Path("benchmark_output"), dataset_id=0)
    p = subparsers.add_parser("benchmark",
                              help="train trainers and vanilla nnU-Net on the same folds; compare accuracy "
                                   "and cost with paired statistics", description=__doc__)
    g = p.add_argument_group("what to compare")
    g.add_argument("-d", "--dataset", type=dataset_arg, required=True,
                   help="nnU-Net dataset id or DatasetXXX_Name (existing, or --generate it)")
    g.add_argument("-c", "--configuration", default=None, help="nnU-Net configuration (default 3d_fullres, or the "
                                                                   "ablation's own)")
    g.add_argument("-tr", "--trainers", nargs="*", default=[],
                   help="trainers to compare; nnUNetTrainer is always included")
    g.add_argument("--ablation", choices=sorted(ABLATIONS),
                   help="add a preset matrix of trainers and its table (default: none)")
    g.add_argument("--resenc", choices=[*sorted(RESENC_PRESETS), RESENC_NEAREST],
                   help="also train nnUNetTrainer on nnU-Net's ResEnc preset plans (memory-matched baseline); "
                        "'nearest': the preset whose estimated training memory is nearest to the largest trainer's "
                        "(default: none)")
    g.add_argument("--resenc-dataset-cap", action="store_true",
                   help="plan the --resenc preset with nnU-Net's default 5%% dataset cap on the batch size (as "
                        "nnUNetPlans; the presets cap at 100%%): plans nnUNetResEncUNet<P>Plans_cap5pct, for small "
                        "datasets where the preset's batch would be the whole dataset")
    g.add_argument("--pipelines", nargs="+", default=[], metavar="PIPELINE",
                   help="also compare whole pipelines on the test cases (docs/cascade.md): single_stage, cascade, "
                        "segmentor_without_crop, detector_segmentor, or all")
    g.add_argument("--pipeline-ids", type=dataset_id_arg, nargs=2, metavar=("CASCADE_ID", "DETECTOR_ID"),
                   help="new dataset ids for the two stage-2 crop datasets (default: -d + 1 and + 2)")
    g.add_argument("-f", "--folds", nargs="+", type=_fold, default=[0], help="folds (integers or 'all')")
    g.add_argument("--epochs", type=positive_int, default=d.epochs, help="training epochs per run")
    g.add_argument("--iterations", type=positive_int, default=d.iterations, help="training iterations per epoch")
    g.add_argument("--val-iterations", type=positive_int, default=d.val_iterations,
                   help="validation iterations per epoch")
    g.add_argument("--eval-set", choices=EVAL_SETS, default=d.eval_set,
                   help="auto: the held-out test set (imagesTs + labelsTs) when there is one, else validation")
    g.add_argument("--device", default=None, choices=("cpu", "cuda", "mps"), help=DEVICE_HELP)
    g.add_argument("--workdir", type=Path, default=d.workdir, help="report, cost and submitit logs go here")
    g.add_argument("--report-dir", type=Path, default=None, help="where the report goes (default: WORKDIR/report)")
    g.add_argument("--use-env-folders", action="store_true",
                   help="use nnUNet_raw/_preprocessed/_results from the environment (default for an existing "
                        "dataset; --generate uses a private workspace under --workdir)")
    gen = p.add_argument_group("generated phantom dataset")
    gen.add_argument("--generate", action="store_true", help="generate a phantom dataset with this id")
    gen.add_argument("--cases", type=positive_int, default=d.num_train_cases, help="training cases to generate")
    gen.add_argument("--test-cases", type=non_negative_int, default=d.num_test_cases, help="test cases to generate")
    gen.add_argument("--task", default=d.task, choices=("phantom", *TASKS),
                     help="what to generate: the default phantom or a study task (docs/datasets.md)")
    gen.add_argument("--shape", type=positive_int, nargs="+", default=None,
                     help=f"z y x (or y x) voxels (default: {' '.join(map(str, d.shape))}, or the task's)")
    gen.add_argument("--spacing", type=positive_float, nargs="+", default=None,
                     help=f"z y x (or y x) mm (default: {' '.join(map(str, d.spacing))}, or the task's)")
    gen.add_argument("--seed", type=non_negative_int, default=d.seed, help="seed of the generated dataset")
    run = p.add_argument_group("fan-out (submitit)")
    run.add_argument("--executor", choices=EXECUTORS, default=d.executor,
                     help="local: subprocesses on this machine; slurm: a job array; debug: in this process")
    run.add_argument("--max-parallel", type=positive_int, default=None,
                     help="runs at once (default: GPUs, or CPU cores // --cpus-per-run)")
    run.add_argument("--cpus-per-run", type=positive_int, default=d.cpus_per_run, help="CPU cores per run")
    run.add_argument("--da-processes", type=non_negative_int, default=None,
                     help="nnUNet_n_proc_DA (default 0 on CPU, 12 on GPU)")
    run.add_argument("--timeout-min", type=positive_int, default=d.timeout_min, help="time limit per run, minutes")
    run.add_argument("--slurm-partition", help="Slurm partition (default: Slurm's default)")
    run.add_argument("--slurm-account", help="Slurm account (default: none)")
    run.add_argument("--slurm-qos", help="Slurm QOS (default: none)")
    run.add_argument("--mem-gb", type=positive_int, help="memory per Slurm job, GB (default: Slurm's default)")
    run.add_argument("--slurm-extra", type=_key_value, nargs="*", default=[],
                     help="more sbatch options as KEY=VALUE (e.g. constraint=a100)")
    cost = p.add_argument_group("cost measurement")
    cost.add_argument("--cost-repeats", type=positive_int, default=d.cost_repeats, help="timed repeats per case")
    cost.add_argument("--cost-cases", type=positive_int, default=d.cost_cases, help="cases the predictor is timed on")
    cost.add_argument("--cost-threads", type=positive_int, default=d.cost_threads, help="torch threads when timing")
    cost.add_argument("--nsd-tolerance", type=positive_float, default=d.nsd_tolerance_mm, help="NSD tolerance in mm")
    cost.add_argument("--overlay-cases", type=non_negative_int, default=d.plots_overlay_cases,
                      help="cases drawn as overlays in the report")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report from the workdir's finished runs and cost.json (same other arguments); "
                        "nothing is trained or measured")
    p.set_defaults(func=run_command)


def config_from_args(args, argv=None):
    from nnunet_ext.benchmark.ablations import get_ablation
    from nnunet_ext.benchmark.runner import BenchmarkConfig, command_line
    from nnunet_ext.commands.arguments import resolve_device
    from nnunet_ext.data.tasks import TASKS

    d = BenchmarkConfig(workdir=Path("benchmark_output"), dataset_id=0)
    trainers = list(args.trainers)
    configuration = args.configuration
    if args.ablation:
        ablation = get_ablation(args.ablation)
        trainers = ablation.trainers() + [t for t in trainers if t not in ablation.trainers()]
        configuration = configuration or ablation.configuration
    if args.executor == "slurm" and not args.slurm_partition:
        print("note: no --slurm-partition given; Slurm uses its default partition", file=sys.stderr)
    task = TASKS.get(args.task)
    shape = args.shape or (task.shape if task else d.shape)
    spacing = args.spacing or (task.spacing if task else d.spacing)
    return BenchmarkConfig(
        workdir=args.workdir, dataset_id=args.dataset, configuration=configuration or "3d_fullres",
        trainers=tuple(trainers), folds=tuple(args.folds), epochs=args.epochs, iterations=args.iterations,
        val_iterations=args.val_iterations, resenc=args.resenc,
        resenc_dataset_cap=args.resenc_dataset_cap, eval_set=args.eval_set,
        device=resolve_device(args.device),
        generate=args.generate, num_train_cases=args.cases, num_test_cases=args.test_cases, shape=tuple(shape),
        spacing=tuple(spacing), seed=args.seed, task=args.task,
        use_environment_folders=args.use_env_folders or not args.generate, da_processes=args.da_processes,
        executor=args.executor, max_parallel=args.max_parallel, cpus_per_run=args.cpus_per_run,
        timeout_min=args.timeout_min, slurm_partition=args.slurm_partition, slurm_account=args.slurm_account,
        slurm_qos=args.slurm_qos, mem_gb=args.mem_gb, slurm_additional=dict(args.slurm_extra),
        cost_repeats=args.cost_repeats, cost_cases=args.cost_cases, cost_threads=args.cost_threads,
        nsd_tolerance_mm=args.nsd_tolerance, ablation=args.ablation, plots_overlay_cases=args.overlay_cases,
        pipelines=tuple(args.pipelines), pipeline_ids=args.pipeline_ids,
        report_dir=args.report_dir, report_only=args.report_only,
        command_line=command_line([a for a in (sys.argv[2:] if argv is None else argv) if a != "--report-only"]))


def run_command(args):
    from nnunet_ext.benchmark.runner import run_benchmark

    report = run_benchmark(config_from_args(args))
    print(report.read_text())
    return 0
