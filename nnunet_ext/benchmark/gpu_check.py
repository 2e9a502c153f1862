"""One prepared GPU check (issue 10, item 6): what a user's CUDA run exercises, in one command.

1. The ES-UNet paper's Table 9 side by side: ES-UNet and 3D UNet 3+ paper presets, the 3D UNet stand-in
   and nnU-Net's default 3d network, 2 input channels: params, GFLOPs (nnunet_ext.network_cost), ms per forward
   (CUDA events after warm-up, fp16 autocast), peak GB (torch.cuda.max_memory_allocated), next to the paper.
2. Every trainer family through the real ``nnUNetv2_train`` with torch.compile on (nnU-Net's default on a
   GPU) and fp16 autocast + GradScaler, ``<Trainer>_ep1it<I>val<V>``: logged losses must be finite.
3. ``nnUNetv2_predict`` with each trained (compiled) checkpoint, scored by nnU-Net's ``compute_metrics``.

``--dry-run`` runs the same on the CPU at tiny sizes, so CI keeps the script working. nnU-Net never
compiles on a CPU, so the dry run trains the test-only ``<Trainer>_ep1it2val1_compiled`` trainers
(tests/trainers/nnunet_ext_test_trainers_compiled.py, backend aot_eager): a compiled network's checkpoint
is still saved by nnUNetv2_train and loaded by nnUNetv2_predict. Usage: ``bash scripts/gpu_check.sh``.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, List, Sequence

# (family, headline trainer class of that family)
FAMILIES = (
    ("nnU-Net (vanilla)", "nnUNetTrainer"),
    ("ES-UNet", "ESUNetDWDRSSTrainer"),
    ("3D UNet 3+", "UNet3PlusTrainer"),
    ("DLKUNet-L", "DLKUNetLTrainer"),
    ("ELANRes-MSCA-UNet", "ELANResMSCAUNetTrainer"),
    ("STS-Net 2.5D", "STSNet25DTrainer"),
    ("stage-skipping segmentor", "StageSkippingSegmentorTrainer"),
)

# ES-UNet paper, Table 9 (HECKTOR, 2 x 144^3, one RTX 4090): params M, "FLOPs" G (multiply-adds, see
# docs/es_unet.md), inference ms per sample, peak memory GB. Swin UNETR is not implemented here.
PAPER_TABLE9 = {
    "es_unet": (9.01, 3020.38, 178.52, 16.13),
    "unet3plus": (6.14, 3286.40, 184.91, 16.77),
    "unet3d": (6.42, 794.57, 60.41, 5.30),
    "nnunet3d": (31.20, 480.83, 33.61, 3.71),
}
PAPER_INPUT_SIZE = 144
NNUNET_STAGES = 6  # nnU-Net's default 3d network for a ~144^3 patch: 32..320 features, 6 stages
DATASET_ID = 977
CONFIGURATION = "3d_fullres"
TEST_TRAINERS = Path(__file__).resolve().parents[2] / "tests" / "trainers"
COMPILED_SUFFIX = "_compiled"  # tests/trainers/nnunet_ext_test_trainers_compiled.py


@dataclass(frozen=True)
class CheckConfig:
    device: str
    table9_size: int          # cubic input edge of the Table 9 comparison
    warmup: int
    repeats: int
    shape: tuple              # generated volumes, z y x
    spacing: tuple
    cases: int                # >= 5: nnU-Net's 5-fold split
    test_cases: int
    iterations: int           # training iterations (one epoch)
    val_iterations: int
    jobs: int                 # families trained at the same time
    da_processes: int         # nnUNet_n_proc_DA per training
    force_compile: bool       # CPU: nnU-Net does not compile there by itself; use the test-only trainers
    disable_tta: bool
    timeout: int              # seconds per nnU-Net command


GPU = CheckConfig(device="cuda", table9_size=PAPER_INPUT_SIZE, warmup=5, repeats=20, shape=(64, 128, 128),
                  spacing=(1.0, 1.0, 1.0), cases=6, test_cases=1, iterations=20, val_iterations=2,
                  jobs=len(FAMILIES), da_processes=2, force_compile=False, disable_tta=False,
                  timeout=420)
DRY_RUN = CheckConfig(device="cpu", table9_size=16, warmup=1, repeats=2, shape=(16, 24, 24), spacing=(3.0, 1.0, 1.0),
                      cases=5, test_cases=1, iterations=2, val_iterations=1, jobs=1, da_processes=0,
                      force_compile=True, disable_tta=True, timeout=600)


# ------------------------------------------------------------------------------------------------ Table 9
def nnunet_default_network(input_channels: int, num_classes: int, n_stages: int = NNUNET_STAGES):
    """nnU-Net's default 3d PlainConvUNet (32..320 features, stride 2 per stage, instance norm, leaky ReLU)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch import nn

    features = [min(32 * 2 ** i, 320) for i in range(n_stages)]
    return PlainConvUNet(input_channels, n_stages, features, nn.Conv3d, 3, [1] + [2] * (n_stages - 1), 2,
                         num_classes, 2, conv_bias=True, norm_op=nn.InstanceNorm3d,
                         norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                         nonlin_kwargs={"inplace": True})


def table9_networks(input_size: int, input_channels: int = 2, num_classes: int = 1):
    """(key, label, builder, input edge) per row. nnU-Net's 6-stage network needs an edge divisible by 32:
    nnU-Net's planner would pick 128 for a 144^3 volume, and at 128^3 it matches the paper's row (31.20 M)."""
    from nnunet_ext.commands.model_cost import _plain_unet_reference
    from nnunet_ext_architectures.es_unet import build_paper_network

    stages = min(NNUNET_STAGES, 1 + int(math.log2(max(1, input_size // 4))))
    nnunet_size = (input_size // 2 ** (stages - 1)) * 2 ** (stages - 1)
    return [
        ("es_unet", "ES-UNet (paper preset)", lambda: build_paper_network("es_unet", input_channels, num_classes),
         input_size),
        ("unet3plus", "3D UNet 3+ (paper preset)",
         lambda: build_paper_network("unet3plus", input_channels, num_classes), input_size),
        ("unet3d", "3D UNet ~ PlainConvUNet 4 stages 32-256", lambda: _plain_unet_reference(input_channels,
                                                                                              num_classes),
         input_size),
        ("nnunet3d", f"nnU-Net default 3d ({stages} stages 32-{min(32 * 2 ** (stages - 1), 320)})",
         lambda: nnunet_default_network(input_channels, num_classes, stages), nnunet_size),
    ]


def measure_table9_row(key: str, label: str, build: Callable, size: int, config: CheckConfig,
                       input_channels: int = 2) -> dict:
    """One network: params and FLOPs (meta device), then ms per forward and peak memory on the device."""
    import torch

    from nnunet_ext.benchmark.timing import timed_forwards
    from nnunet_ext.network_cost import count_parameters, measure

    shape = (1, input_channels, size, size, size)
    cost = measure(build, shape, "meta")
    device = torch.device(config.device)
    cuda = device.type == "cuda"
    net = build().to(device).eval()
    params_on_device = count_parameters(net)
    x = torch.randn(*shape, device=device)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    autocast = torch.autocast("cuda", dtype=torch.float16) if cuda else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), autocast:
        times = timed_forwards(net, x, device, config.repeats, config.warmup)
    infer_gb = torch.cuda.max_memory_allocated(device) / 2 ** 30 if cuda else None
    train_gb, train_error = None, None
    if cuda:  # one training step's peak (forward + backward, fp16 autocast, batch 1)
        net.train()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            with autocast:
                out = net(x)
            (out[0] if isinstance(out, (list, tuple)) else out).float().mean().backward()
            torch.cuda.synchronize(device)
            train_gb = torch.cuda.max_memory_allocated(device) / 2 ** 30
            del out
        except torch.cuda.OutOfMemoryError:  # a smaller GPU than the check is sized for: say so, go on
            train_error = f"CUDA out of memory (at {torch.cuda.max_memory_allocated(device) / 2 ** 30:.1f} GB)"
    del net, x
    if cuda:
        torch.cuda.empty_cache()
    paper = paper_figures(key, config)
    return {"key": key, "network": label, "input": list(shape), "params": cost.params,
            "params_on_device": params_on_device, "macs": cost.macs, "torch_flops": cost.flops,
            "ms_per_forward": statistics.median(times), "ms_all": times,
            "precision": "float16 autocast" if cuda else "float32", "peak_gb_inference": infer_gb,
            "peak_gb_train_step": train_gb, "train_step_error": train_error, "paper_params_m": paper[0],
            "paper_gflops": paper[1], "paper_ms": paper[2], "paper_peak_gb": paper[3]}


def paper_figures(key: str, config: CheckConfig) -> tuple:
    """The paper's (params M, GFLOPs, ms, GB) for a row, or Nones when the run is not at the paper's 144^3."""
    return PAPER_TABLE9[key] if config.table9_size == PAPER_INPUT_SIZE else (None,) * 4


def run_table9(config: CheckConfig) -> List[dict]:
    return [measure_table9_row(key, label, build, size, config)
            for key, label, build, size in table9_networks(config.table9_size)]


# ------------------------------------------------------------------------------------------------ trainings
def trainer_name(base: str, config: CheckConfig) -> str:
    from nnunet_ext.training.short_schedule import short_schedule_name

    name = short_schedule_name(base, 1, config.iterations, config.val_iterations)
    return name + COMPILED_SUFFIX if config.force_compile else name


def _finite(values: Sequence) -> bool:
    return len(values) > 0 and all(v is not None and math.isfinite(float(v)) for v in values)


def run_family(ws, family: str, base: str, config: CheckConfig, out: Path, network: dict) -> dict:
    """nnUNetv2_train (compiled), the checkpoint's logged losses, nnUNetv2_predict, nnU-Net's evaluation."""
    import torch

    name = trainer_name(base, config)
    row = {"family": family, "trainer": name, "ok": False, "params": network["params"]}
    env = {} if config.force_compile else {"nnUNet_compile": "true"}
    t0 = time.perf_counter()
    try:
        ws.train(DATASET_ID, CONFIGURATION, 0, name, device=config.device, timeout=config.timeout, env=env)
        row["train_seconds"] = round(time.perf_counter() - t0, 1)
        fold = ws.model_folder(DATASET_ID, CONFIGURATION, name) / "fold_0"
        checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        log = "".join(p.read_text() for p in sorted(fold.glob("training_log_*.txt")))
        logging = checkpoint["logging"]
        row.update({
            "compiled": "Using torch.compile..." in log,
            "grad_scaler": checkpoint["grad_scaler_state"] is not None,
            "epochs": int(checkpoint["current_epoch"]),
            "train_losses": [float(v) for v in logging["train_losses"]],
            "val_losses": [float(v) for v in logging["val_losses"]],
            "checkpoint_matches_network": {k: list(v.shape) for k, v in checkpoint["network_weights"].items()}
            == network["state_shapes"],
        })
        timing = fold / "train_step_timing.json"
        if timing.is_file():
            row["seconds_per_iteration_median"] = json.loads(timing.read_text())["seconds_per_iteration_median"]
        raw = ws.raw / ws.dataset_name(DATASET_ID)
        pred = out / "predictions" / name
        t1 = time.perf_counter()
        extra = ["--disable_tta"] if config.disable_tta else []  # worker processes: workspace.predict_workers
        ws.predict(DATASET_ID, CONFIGURATION, name, raw / "imagesTs", pred, *extra, device=config.device,
                   timeout=config.timeout, env=env)
        row["predict_seconds"] = round(time.perf_counter() - t1, 1)
        row["predicted_cases"] = len(list(pred.glob("*.nii.gz")))
        row["test_dice"] = evaluate(ws, raw / "labelsTs", pred)
        row["ok"] = (row["compiled"] and _finite(row["train_losses"]) and _finite(row["val_losses"])
                     and row["epochs"] == 1 and row["predicted_cases"] == config.test_cases
                     and (row["grad_scaler"] or config.device != "cuda") and row["checkpoint_matches_network"])
    except Exception as e:  # one family failing must not hide the others' results
        row["error"] = f"{type(e).__name__}: {e}"[-3000:]
        traceback.print_exc()
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def evaluate(ws, gt_dir: Path, pred_dir: Path) -> float:
    """Mean foreground Dice over the test cases by nnU-Net's own per-case metric (compute_metrics), in this
    process: nnUNetv2_evaluate_folder would start a process pool for one case."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pre = ws.preprocessed / ws.dataset_name(DATASET_ID)
    dataset_json = json.loads((pre / "dataset.json").read_text())
    plans = PlansManager(str(pre / "nnUNetPlans.json"))
    labels = plans.get_label_manager(dataset_json)
    classes = labels.foreground_regions if labels.has_regions else labels.foreground_labels
    dice = []
    for gt in sorted(gt_dir.glob("*.nii.gz")):
        metrics = compute_metrics(str(gt), str(pred_dir / gt.name), plans.image_reader_writer_class(), classes,
                                  labels.ignore_label)["metrics"]
        dice += [m["Dice"] for m in metrics.values() if not math.isnan(m["Dice"])]
    return float(statistics.mean(dice)) if dice else float("nan")


def trainer_network(ws, trainer: str) -> dict:
    """The trainer's own network (its build_network_architecture on the workspace's plans, meta device):
    parameter count and state-dict shapes, which the compiled run's checkpoint must match key for key."""
    import os
    from unittest import mock

    import torch

    from nnunet_ext.network_cost import count_parameters
    from nnunet_ext.trainer_lookup import load_trainer_context

    with mock.patch.dict(os.environ, {k: v for k, v in ws.env.items() if k.startswith("nnUNet_")}):
        trainer_class, plans_manager, configuration_manager, n_in, n_out = load_trainer_context(
            ws.preprocessed / ws.dataset_name(DATASET_ID), "nnUNetPlans", CONFIGURATION, trainer)
    with torch.device("meta"):
        net = trainer_class.build_network_architecture(plans_manager, configuration_manager, n_in, n_out, True)
    return {"params": count_parameters(net), "state_shapes": {k: list(v.shape) for k, v in net.state_dict().items()}}


# ------------------------------------------------------------------------------------------------ report
def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def format_markdown(result: dict) -> str:
    c = result["config"]
    lines = [f"# GPU check ({'dry run, CPU' if result['dry_run'] else 'GPU'})", "",
             f"device: {result['device']}; command: `{result['command']}`; wall time {result['seconds']:.0f} s", "",
             f"## Table 9 side by side (2 channels, {c['table9_size']}^3 unless noted, batch 1)", "",
             "GFLOPs here = multiply-adds (the paper's convention; torch's counter reports 2x); peak GB = "
             "torch.cuda.max_memory_allocated (weights included).", "",
             "| network | input | params M | paper | GMACs | paper | ms/forward | paper | peak GB infer | "
             "peak GB train step | paper |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["table9"]:
        lines.append(f"| {r['network']} | {r['input'][2]}^3 | {r['params'] / 1e6:.3f} | {_fmt(r['paper_params_m'])} | "
                     f"{r['macs'] / 1e9:.2f} | {_fmt(r['paper_gflops'])} | {r['ms_per_forward']:.2f} | "
                     f"{_fmt(r['paper_ms'])} | {_fmt(r['peak_gb_inference'])} | {_fmt(r['peak_gb_train_step'])} | "
                     f"{_fmt(r['paper_peak_gb'])} |")
    lines += [f"\n{r['network']}: training step {r['train_step_error']}" for r in result["table9"]
              if r.get("train_step_error")]
    lines += ["", f"precision: {result['table9'][0]['precision'] if result['table9'] else '-'}; paper: one RTX 4090, "
              "its nnU-Net row matches nnU-Net's 6-stage network at 128^3 (31.20 M, 480.83 G).", "",
              f"## nnUNetv2_train (1 epoch x {c['iterations']} iterations, compiled) + nnUNetv2_predict", "",
              f"dataset: {c['cases']} + {c['test_cases']} generated cases of {tuple(c['shape'])} voxels, spacing "
              f"{tuple(c['spacing'])}; patch {result.get('patch_size')}, batch {result.get('batch_size')}", "",
              "| family | trainer | ok | params M | compiled | GradScaler | train loss | val loss | s/it (median) | "
              "test Dice | train s | predict s |", "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["families"]:
        tl, vl = r.get("train_losses") or [None], r.get("val_losses") or [None]
        lines.append(f"| {r['family']} | {r['trainer']} | {'yes' if r['ok'] else 'NO'} | {r['params'] / 1e6:.3f} | "
                     f"{r.get('compiled', '-')} | "
                     f"{r.get('grad_scaler', '-')} | {_fmt(tl[-1], '.4f')} | {_fmt(vl[-1], '.4f')} | "
                     f"{_fmt(r.get('seconds_per_iteration_median'), '.3f')} | {_fmt(r.get('test_dice'), '.3f')} | "
                     f"{_fmt(r.get('train_seconds'), '.0f')} | {_fmt(r.get('predict_seconds'), '.0f')} |")
    errors = [r for r in result["families"] if r.get("error")]
    for r in errors:
        lines += ["", f"**{r['trainer']} failed:**", "```", r["error"][-1500:], "```"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and the nnU-Net workspace")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, test-only compiled trainers (for CI)")
    p.add_argument("--families", nargs="+", default=None, metavar="TRAINER",
                   help=f"trainer classes to train (default: all {len(FAMILIES)} families)")
    p.add_argument("--skip-table9", action="store_true")
    p.add_argument("--jobs", type=int, default=None, help="trainings at the same time (GPU default: all)")
    p.add_argument("--shape", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="generated volumes' shape (GPU default 64 128 128, dry run 16 24 24: 3-stage plans)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    config = DRY_RUN if args.dry_run else GPU
    if args.jobs is not None:
        if args.jobs < 1:
            raise SystemExit("--jobs must be >= 1")
        config = replace(config, jobs=args.jobs)
    if args.shape is not None:
        if min(args.shape) < 8:
            raise SystemExit(f"--shape {args.shape}: every axis needs >= 8 voxels")
        config = replace(config, shape=tuple(args.shape))
    families = FAMILIES
    if args.families:
        known = dict((t, f) for f, t in FAMILIES)
        unknown = [t for t in args.families if t not in known]
        if unknown:
            raise SystemExit(f"unknown trainer family {unknown}; choose from {list(known)}")
        families = tuple((known[t], t) for t in args.families)
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run on a CPU")
    if config.force_compile and not TEST_TRAINERS.is_dir():
        raise SystemExit(f"--dry-run needs the test-only trainers in {TEST_TRAINERS} (a source checkout)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = {"dry_run": bool(args.dry_run), "command": "bash scripts/gpu_check.sh " + " ".join(argv or sys.argv[1:]),
              "device": torch.cuda.get_device_name(0) if config.device == "cuda" else "cpu",
              "torch": torch.__version__, "config": asdict(config), "table9": [], "families": [], "phases": {}}

    if not args.skip_table9:
        t = time.perf_counter()
        result["table9"] = run_table9(config)
        result["phases"]["table9_seconds"] = round(time.perf_counter() - t, 1)
        print(format_markdown({**result, "seconds": 0}).split("## nnUNetv2_train")[0], flush=True)

    from nnunet_ext.workspace import NnUNetWorkspace

    ws = NnUNetWorkspace(out / "workspace", extra_trainer_dirs=[TEST_TRAINERS] if config.force_compile else (),
                         num_da_processes=config.da_processes)
    t = time.perf_counter()
    if not (ws.raw / f"Dataset{DATASET_ID:03d}_GPUCheck").is_dir():
        ws.generate(DATASET_ID, name="GPUCheck", num_cases=config.cases, shape=config.shape, spacing=config.spacing,
                    num_channels=2, num_test_cases=config.test_cases, seed=0)
    ws.plan_and_preprocess(DATASET_ID, configurations=(CONFIGURATION,), timeout=config.timeout)
    plans = json.loads((ws.preprocessed / ws.dataset_name(DATASET_ID) / "nnUNetPlans.json").read_text())
    result["patch_size"] = plans["configurations"][CONFIGURATION]["patch_size"]
    result["batch_size"] = plans["configurations"][CONFIGURATION]["batch_size"]
    result["phases"]["dataset_seconds"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    networks = {base: trainer_network(ws, trainer_name(base, config)) for _, base in families}
    with ThreadPoolExecutor(max_workers=config.jobs) as pool:
        rows = pool.map(lambda fam: run_family(ws, fam[0], fam[1], config, out, networks[fam[1]]), families)
        for row in rows:
            print(f"{row['trainer']}: {'ok' if row['ok'] else 'FAILED'} ({row['seconds']} s)", flush=True)
            result["families"].append(row)
    result["phases"]["families_seconds"] = round(time.perf_counter() - t, 1)
    result["seconds"] = time.perf_counter() - start
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (out / "gpu_check.md").write_text(format_markdown(result))
    print(format_markdown(result))
    return 0 if all(r["ok"] for r in result["families"]) else 1


if __name__ == "__main__":
    sys.exit(main())
