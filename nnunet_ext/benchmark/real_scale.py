"""Real-scale cost of every trainer family on a dataset's stock nnU-Net plans, side by side in one run.

Each trainer is measured in a fresh process, exactly as ``nnUNetv2_train`` would set it up: the trainer
class nnU-Net finds, ``initialize()`` (network from the plans, its loss with deep supervision, its
optimizer), then nnU-Net's own ``train_step`` on a batch of the plans' batch size and patch size (random
image, random labels; the targets at the trainer's deep-supervision scales). Reported per trainer:

- parameters, GFLOPs of one forward per patch (torch's FlopCounterMode, 2 per multiply-add),
- peak training-step memory: CUDA max allocated on a GPU; on a CPU the process's peak RSS above its
  resident size after ``initialize()`` (what the step itself adds, incl. gradients and optimizer state),
- the estimator's figure for the same network (nnunet_ext.planning.memory), for comparison,
- seconds per training step (median of the timed steps after one untimed step), wall clock and, with
  ``--cpu-time`` in the table, the process's CPU seconds (all its threads): on a shared, loaded machine the CPU
  seconds say more about the network than the wall clock, which says as much about the load (study budgets),
- milliseconds per forward in eval (no grad, deep supervision off, as nnUNetv2_predict runs it),

and every ratio to the first trainer (vanilla nnU-Net). The machine is noisy: read the ratios, which come
from one run, not the absolute seconds.

    python -m nnunet_ext.benchmark.real_scale -d 990 --generate --out docs/benchmarks/real_scale

CPU seconds per step on a study task's grid, one thread (a study's budget; docs/benchmarks/study_c_two_stage):

    python -m nnunet_ext.benchmark.real_scale -d 978 --generate --task organ_lesion --shape 16 32 32 \
        --spacing 8 3 3 --threads 1 --steps 5 --cpu-time --no-estimate -tr nnUNetTrainer ELANResMSCAUNetTrainer
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from nnunet_ext.benchmark.timing import timed_forwards, timed_train_steps
from nnunet_ext.process_memory import RssGrowth
from nnunet_ext.trainer_lookup import initialized_trainer, random_training_batch

GB = 1024 ** 3

FAMILIES = ("nnUNetTrainer", "ESUNetDWDRSSTrainer", "ESUNetTrainer", "UNet3PlusTrainer", "DLKUNetLTrainer",
            "ELANResMSCAUNetTrainer", "STSNet25DTrainer", "StageSkippingSegmentorTrainer")

# the phantom this benchmark plans on: a 1 mm CT-like volume (z y x), so nnU-Net's planner picks its usual
# ~128^3-class 3d_fullres patch (96 x 160 x 160, batch 2, 6 stages at nnU-Net 2.8's defaults)
REAL_SCALE_SHAPE = (120, 200, 200)
REAL_SCALE_SPACING = (1.0, 1.0, 1.0)


@dataclass
class StepCost:
    trainer: str
    patch_size: List[int]
    batch_size: int
    parameters: int
    gflops_per_patch: float
    train_memory_gb: float
    memory_kind: str
    estimate_gb: Optional[float]
    train_step_s: float
    train_step_all_s: List[float]
    train_step_cpu_s: float
    train_step_cpu_all_s: List[float]
    forward_ms: float
    loss: float
    checkpointing: bool
    device: str
    threads: int
    notes: List[str] = field(default_factory=list)


def estimate_divisor(network, configuration_manager) -> List[int]:
    """Per-axis total stride of ``network`` for the estimator's probes.

    The plans' strides where the configuration has them. A network with a fixed ``output_stride`` instead
    (STS-Net: a ResNeXt encoder, stride 8 in-plane; its trainers rewrite the plans' architecture entry) is
    probed at that stride in-plane and at the whole patch along the slice axis of a 2.5D patch, whose slice
    window (the outer slices only give context) does not scale like the in-plane size."""
    patch = [int(p) for p in configuration_manager.patch_size]
    try:
        strides = configuration_manager.pool_op_kernel_sizes
    except KeyError:  # nnU-Net reads arch_kwargs["strides"], which STS-Net's entry does not have
        strides = None
    if strides is not None:
        from nnunet_ext.planning.arch_plans import total_stride

        return list(total_stride(strides, len(patch)))
    output_stride = getattr(network, "output_stride", None)
    if output_stride is None:
        raise ValueError(f"cannot tell {type(network).__name__}'s total stride for the memory probes: the plans' "
                         f"architecture entry has no 'strides' and the network has no 'output_stride'")
    return [*patch[:-2], int(output_stride), int(output_stride)]


def plans_memory_estimate(network, configuration_manager, input_channels: int, patch: Sequence[int], batch: int):
    """The estimator's training-step memory (a ``MemoryEstimate``) of ``network`` as a configuration plans it: counted
    at the patch on the meta device (activation checkpointing included), else fitted from probes at the
    configuration's divisor. The one estimate the real-scale tables and ``--resenc nearest`` use."""
    from nnunet_ext.planning.memory import estimate_training_memory

    divisor = estimate_divisor(network, configuration_manager)
    return estimate_training_memory(network, input_channels, patch, batch, divisor)


def estimate_trainer(preprocessed: str, plans_name: str, configuration: str, trainer_name: str,
                     patch_override: Optional[List[int]] = None) -> dict:
    """Runs in the child process for ``--estimate-only``: the estimator's figure for the trainer's network."""
    import torch

    from nnunet_ext.training.checkpointing import is_checkpointed

    torch.set_num_threads(1)
    _, trainer = initialized_trainer(preprocessed, plans_name, configuration, trainer_name, torch.device("cpu"),
                                      patch_override)
    network = getattr(trainer.network, "_orig_mod", trainer.network)
    cm = trainer.configuration_manager
    patch, batch = [int(p) for p in cm.patch_size], int(trainer.batch_size)
    return {"trainer": trainer_name, "patch_size": patch, "batch_size": batch,
            "checkpointing": is_checkpointed(network),
            "estimate_gb": plans_memory_estimate(network, cm, trainer.num_input_channels, patch, batch).total_gb}


def measure_trainer(preprocessed: str, plans_name: str, configuration: str, trainer_name: str, device_name: str,
                    steps: int, threads: int, patch_override: Optional[List[int]] = None,
                    estimate: bool = True) -> StepCost:
    """Runs in the child process: one trainer, set up as nnUNetv2_train does, then its real train_step."""
    import torch

    from nnunet_ext.network_cost import count_flops, count_parameters
    from nnunet_ext.training.checkpointing import is_checkpointed

    torch.set_num_threads(max(1, threads))
    device = torch.device(device_name)
    trainer_class, trainer = initialized_trainer(preprocessed, plans_name, configuration, trainer_name, device,
                                                  patch_override)
    network = trainer.network
    plain = getattr(network, "_orig_mod", network)
    cm = trainer.configuration_manager
    patch, batch = [int(p) for p in cm.patch_size], int(trainer.batch_size)
    n_in = trainer.num_input_channels
    notes = []

    flops = None
    try:  # shapes only: the same network built on the meta device
        with torch.device("meta"):
            meta = trainer_class.build_network_architecture(trainer.plans_manager, cm, n_in,
                                                            trainer.label_manager.num_segmentation_heads, False)
        flops = count_flops(meta, (1, n_in, *patch), "meta")
    except (RuntimeError, NotImplementedError, TypeError) as error:
        notes.append(f"FLOPs not countable on the meta device ({type(error).__name__})")

    estimate_gb = None
    if estimate:
        try:
            estimate_gb = plans_memory_estimate(plain, cm, n_in, patch, batch).total_gb
        except Exception as error:  # the estimate is a comparison figure; its failure must not hide the measurement
            notes.append(f"no estimate: {type(error).__name__}: {str(error)[:120]}")

    batch_dict = random_training_batch(trainer, batch, patch)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    growth = RssGrowth()
    warmup = 1 if steps > 1 else 0
    times, cpu_times, loss = timed_train_steps(trainer, batch_dict, max(1, steps) - warmup, device, warmup)
    if device.type == "cuda":
        memory, kind = torch.cuda.max_memory_allocated(device), "CUDA max allocated"
    else:
        memory, kind = growth.peak_bytes(), "CPU peak RSS above post-initialize"

    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    with torch.no_grad():
        forward_ms = timed_forwards(trainer.network, torch.randn(1, n_in, *patch, device=device), device, 1)[0]
    return StepCost(trainer=trainer_name, patch_size=patch, batch_size=batch, parameters=count_parameters(plain),
                    gflops_per_patch=(flops or 0) / 1e9, train_memory_gb=memory / GB, memory_kind=kind,
                    estimate_gb=estimate_gb, train_step_s=statistics.median(times), train_step_all_s=times,
                    train_step_cpu_s=statistics.median(cpu_times), train_step_cpu_all_s=cpu_times,
                    forward_ms=forward_ms, loss=loss, checkpointing=is_checkpointed(plain), device=str(device),
                    threads=threads, notes=notes)


def _error_line(error: BaseException) -> str:
    """An exception as one line, ``Type: message``: a failed trainer's table row and console line."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def run_child(spec: dict) -> int:
    """The ``--child`` process: one JSON line on stdout, the result or ``{"trainer", "error"}`` naming the
    exception (its traceback on stderr, for the parent's log)."""
    import traceback

    spec = dict(spec)
    try:
        if spec.pop("estimate_only", False):
            result = estimate_trainer(**spec)
        else:
            result = asdict(measure_trainer(**spec))
    except Exception as error:
        traceback.print_exc()
        print(json.dumps({"trainer": spec.get("trainer_name"), "error": _error_line(error)}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


def measure_in_subprocess(spec: dict, timeout: int = 7200) -> dict:
    """``measure_trainer(**spec)`` (or ``estimate_trainer`` for a spec with ``"estimate_only": True``) in a
    fresh process; a failure comes back as ``{"trainer", "error", "log"}``, ``error`` one line: the exception
    (``Type: message``), or the exit status and last line of output of a process that died (out of memory)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.get("threads", 1)), nnUNet_compile="false")
    proc = subprocess.run([sys.executable, "-m", "nnunet_ext.benchmark.real_scale", "--child", json.dumps(spec)],
                          env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    reported = json.loads(lines[-1]) if lines else {}
    tail = (proc.stdout + proc.stderr)[-3000:]
    if "error" in reported:
        return {**reported, "trainer": spec["trainer_name"], "log": tail}
    if proc.returncode != 0 or not lines:
        killed = " (killed: out of memory?)" if proc.returncode in (-9, 137) else ""
        last = [ln for ln in tail.splitlines() if ln.strip()][-1:] or [""]
        return {"trainer": spec["trainer_name"], "error": f"exit {proc.returncode}{killed}: {last[0]}", "log": tail}
    return reported


def _failed_row(result: dict, columns: int) -> str:
    """A failed trainer's table row: its name, why (one line), empty cells to the table's width."""
    return f"| {result['trainer']} | failed: {result['error'].splitlines()[0][:160]} |" + " |" * (columns - 2)


def _ratio(value, reference) -> str:
    return f"{value / reference:.2f}" if reference else "-"


def render(results: List[dict], command: str, title: str, estimate_command: Optional[str] = None,
           cpu_time: bool = False) -> str:
    """The measured table; ``estimate_command``: the ``--estimate-only`` run whose estimates replaced the
    measured run's (``merge_estimates``), named under the measured run's command; ``cpu_time``: the process's
    CPU seconds per step and their ratio beside the wall-clock seconds (``-`` for a run that did not record them)."""
    ok = [r for r in results if "error" not in r]
    ref = ok[0] if ok else None
    lines = [f"### {title}", "", f"`{command}`", ""]
    if estimate_command:
        lines += [f"\"estimate GB\" is the current estimator's, written into this table from the measured run's "
                  f"results.json by `{estimate_command}` (no training step); every other column is the measured "
                  f"run's.", ""]
    if ref:
        lines += [f"Patch {'x'.join(map(str, ref['patch_size']))}, batch {ref['batch_size']}, device "
                  f"{ref['device']} ({ref['threads']} threads); memory = {ref['memory_kind']}. Ratios are to "
                  f"`{ref['trainer']}`, measured in the same run.", ""]
    header = ["trainer", "patch x batch", "checkpointing", "params M", "GFLOPs/patch", "FLOPs x", "train memory GB",
              "memory x", "estimate GB", "s / train step", "time x",
              *(["CPU s / train step", "CPU time x"] if cpu_time else []), "forward ms", "forward x", "loss"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if "error" in r:
            lines.append(_failed_row(r, len(header)))
            continue
        est = f"{r['estimate_gb']:.2f}" if r.get("estimate_gb") is not None else "-"
        cpu = r.get("train_step_cpu_s")
        cpu_cells = ([f"{cpu:.2f}" if cpu is not None else "-",
                      _ratio(cpu, ref.get("train_step_cpu_s")) if cpu is not None else "-"] if cpu_time else [])
        cells = [r["trainer"], f"{'x'.join(map(str, r['patch_size']))} x {r['batch_size']}",
                 "yes" if r["checkpointing"] else "no", f"{r['parameters'] / 1e6:.2f}", f"{r['gflops_per_patch']:.1f}",
                 _ratio(r["gflops_per_patch"], ref["gflops_per_patch"]), f"{r['train_memory_gb']:.2f}",
                 _ratio(r["train_memory_gb"], ref["train_memory_gb"]), est, f"{r['train_step_s']:.1f}",
                 _ratio(r["train_step_s"], ref["train_step_s"]), *cpu_cells, f"{r['forward_ms']:.0f}",
                 _ratio(r["forward_ms"], ref["forward_ms"]), f"{r['loss']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['trainer']}: {n}" for r in ok for n in r.get("notes", [])]
    return "\n".join(lines + ([""] + notes if notes else []) + [""])


def merge_estimates(measured: List[dict], estimates: List[dict]) -> List[dict]:
    """The measured results with each trainer's estimate replaced by the estimate run's at the same patch and
    batch (none there: no estimate); a failed measurement stays as it was."""
    by_run = {(r["trainer"], tuple(r["patch_size"]), r["batch_size"]): r["estimate_gb"]
              for r in estimates if "error" not in r}
    merged = []
    for r in measured:
        if "error" not in r:
            r = {**r, "estimate_gb": by_run.get((r["trainer"], tuple(r["patch_size"]), r["batch_size"])),
                 "notes": [n for n in r.get("notes", []) if not n.startswith("no estimate")]}
        merged.append(r)
    return merged


def render_estimates(results: List[dict], command: str, title: str, measured: Optional[List[dict]] = None) -> str:
    """The estimator's figure per trainer, beside a measured run's memory (``--measured``) where it has the
    trainer at the same patch and batch."""
    by_name = {m["trainer"]: m for m in (measured or []) if "error" not in m}
    lines = [f"### {title}", "", f"`{command}`", "",
             "| trainer | patch x batch | checkpointing | estimate GB | measured GB | estimate / measured |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(_failed_row(r, 6))
            continue
        m = by_name.get(r["trainer"])
        same = m is not None and m["patch_size"] == r["patch_size"] and m["batch_size"] == r["batch_size"]
        got = f"{m['train_memory_gb']:.2f}" if same else "-"
        lines.append(f"| {r['trainer']} | {'x'.join(map(str, r['patch_size']))} x {r['batch_size']} | "
                     f"{'yes' if r['checkpointing'] else 'no'} | {r['estimate_gb']:.2f} | {got} | "
                     f"{_ratio(r['estimate_gb'], m['train_memory_gb']) if same else '-'} |")
    if measured:
        kinds = sorted({m["memory_kind"] for m in measured if "memory_kind" in m})
        lines += ["", f"Measured: {', '.join(kinds)} (from the results file given with --measured)."]
    return "\n".join(lines + [""])


def main(argv=None) -> int:
    from nnunet_ext.commands.arguments import positive_float, positive_int
    from nnunet_ext.data.tasks import TASKS

    parser = argparse.ArgumentParser(
        prog="python -m nnunet_ext.benchmark.real_scale",
        description="Training-step memory and time of every trainer family at a dataset's stock nnU-Net plans, "
                    "side by side in one run (each trainer in a fresh process).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("-d", "--dataset", type=int, default=990, help="dataset id (default: 990)")
    parser.add_argument("--generate", action="store_true",
                        help="generate the real-scale phantom (4 cases of 120x200x200 at 1 mm; --task, --shape, "
                             "--spacing for another) and run nnUNetv2_plan_and_preprocess on it first, if not "
                             "planned yet")
    parser.add_argument("--task", default="phantom", choices=("phantom", *TASKS),
                        help="with --generate: the phantom, or a study task (docs/datasets.md) (default: phantom)")
    parser.add_argument("--shape", type=positive_int, nargs=3, metavar=("Z", "Y", "X"),
                        help="with --generate: volume shape (default: 120 200 200 for the phantom, else the task's)")
    parser.add_argument("--spacing", type=positive_float, nargs=3, metavar=("Z", "Y", "X"),
                        help="with --generate: voxel spacing in mm (default: 1 1 1 for the phantom, else the task's)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: nnUNetPlans)")
    parser.add_argument("-c", "--configuration", default="3d_fullres", help="(default: 3d_fullres)")
    parser.add_argument("-tr", "--trainers", nargs="+", default=list(FAMILIES),
                        help="trainers; the first is the reference of every ratio (default: one per family)")
    parser.add_argument("--patch", type=int, nargs="+", help="override the plans' patch size (default: the plans')")
    parser.add_argument("--steps", type=int, default=2,
                        help="training steps; the first is not timed unless it is the only one (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process (default: 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="also tabulate the process's CPU seconds per training step (all its threads) and their "
                             "ratio, beside the wall-clock seconds: on a loaded machine they track the network, "
                             "not the load")
    parser.add_argument("--no-estimate", action="store_true", help="skip the memory estimator's figure")
    parser.add_argument("--estimate-only", action="store_true",
                        help="only the memory estimator's figure per trainer (no training step; minutes, not hours)")
    parser.add_argument("--measured", type=Path,
                        help="with --estimate-only: a results.json of an earlier run, whose measured memory is "
                             "printed beside the estimate")
    parser.add_argument("--measured-command",
                        help="with --measured: the command that measured it; also write measured_table.md, its table "
                             "with this run's estimates in the estimate column (merged.json: its results with them)")
    parser.add_argument("--out", type=Path, required=False, help="folder for results.json and table.md")
    parser.add_argument("--title", default="Stock nnU-Net plans", help="table heading")
    args = parser.parse_args(argv)
    if args.child:
        return run_child(json.loads(args.child))
    if args.measured and not args.estimate_only:
        parser.error("--measured goes with --estimate-only")
    if args.cpu_time and args.estimate_only:
        parser.error("--cpu-time times training steps, which --estimate-only does not run")
    if (args.task != "phantom" or args.shape or args.spacing) and not args.generate:
        parser.error("--task, --shape and --spacing go with --generate")
    if args.measured_command and not (args.measured and args.out):
        parser.error("--measured-command goes with --measured and --out")
    measured = None
    if args.measured:
        try:
            measured = json.loads(args.measured.read_text())
        except (OSError, ValueError) as error:
            parser.error(f"--measured {args.measured}: cannot read a results.json: {error}")

    from nnunet_ext.planning.arch_plans import preprocessed_dataset_folder

    if args.generate:
        _generate_and_plan(args.dataset, args.task, args.shape, args.spacing)
    folder = preprocessed_dataset_folder(args.dataset)
    command = "python -m nnunet_ext.benchmark.real_scale " + shlex.join(argv if argv is not None else sys.argv[1:])
    results = []
    for name in args.trainers:
        spec = {"preprocessed": str(folder), "plans_name": args.plans, "configuration": args.configuration,
                "trainer_name": name, "patch_override": args.patch}
        if args.estimate_only:
            spec["estimate_only"] = True
        else:
            spec.update(device_name=args.device, steps=args.steps, threads=args.threads, estimate=not args.no_estimate)
        start = time.perf_counter()
        result = measure_in_subprocess(spec)
        result["wall_s"] = time.perf_counter() - start
        results.append(result)
        print(f"[real-scale] {name}: {_summary(result, args.estimate_only)}", flush=True)
        if args.out:  # keep what is done if a later trainer is killed
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
    table = (render_estimates(results, command, args.title, measured) if args.estimate_only else
             render(results, command, args.title, cpu_time=args.cpu_time))
    print(table)
    if args.out:
        (args.out / "table.md").write_text(table)
    if args.measured_command:
        merged = merge_estimates(measured, results)
        (args.out / "merged.json").write_text(json.dumps(merged, indent=1))
        (args.out / "measured_table.md").write_text(render(merged, args.measured_command, args.title, command))
    failed = [r["trainer"] for r in results if "error" in r]
    if failed:  # after the table, so that a script sees the other trainers' rows and a non-zero exit
        print(f"[real-scale] failed: {', '.join(failed)} (their rows say why; logs in results.json)", file=sys.stderr)
    return 1 if failed else 0


def _summary(result: dict, estimate_only: bool) -> str:
    """One trainer's console line: what it measured, or why it failed."""
    if "error" in result:
        return "failed: " + result["error"].splitlines()[0]
    if estimate_only:
        return f"estimate {result['estimate_gb']:.2f} GB"
    return f"{result['train_memory_gb']:.2f} GB, {result['train_step_s']:.1f} s/step"


def _generate_and_plan(dataset: int, task: str = "phantom", shape: Optional[Sequence[int]] = None,
                       spacing: Optional[Sequence[float]] = None) -> None:
    """``nnunet-ext generate`` (4 cases: the real-scale phantom, or ``task`` at its own or the given grid) and
    nnU-Net's planning, unless the dataset is planned already."""
    from nnunet_ext.planning.arch_plans import preprocessed_dataset_folder

    try:
        if (preprocessed_dataset_folder(dataset) / "nnUNetPlans.json").is_file():
            return
    except ValueError:  # PlanningError: not planned yet
        pass
    scripts = Path(sys.executable).parent  # the environment's console scripts, also when it is not on PATH
    if task == "phantom":
        shape, spacing = shape or REAL_SCALE_SHAPE, spacing or REAL_SCALE_SPACING
    grid = [*(["--shape", *map(str, shape)] if shape else []), *(["--spacing", *map(str, spacing)] if spacing else [])]
    subprocess.run([str(scripts / "nnunet-ext"), "generate", "--id", str(dataset), "--name", "RealScale",
                    "--cases", "4", "--task", task, *grid], check=True)
    subprocess.run([str(scripts / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset), "-c", "3d_fullres",
                    "-np", "2"], check=True)


if __name__ == "__main__":
    sys.exit(main())
