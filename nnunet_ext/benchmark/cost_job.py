"""Cost of one trainer's network, measured in a fresh process so trainers do not share allocator or cache state.

Parameters and FLOPs (nnunet_ext.network_cost, torch's FlopCounterMode) for one patch; inference milliseconds
per patch (eval, no_grad, median of repeats); peak memory of one training step at the plans' batch size
(CUDA max allocated on a GPU, process peak RSS above the post-import baseline on a CPU); seconds per case
of nnU-Net's predictor on a few cases; seconds per training step of the trainer's own ``train_step`` (its loss,
optimiser and mixed-precision rules, set up as ``nnUNetv2_train`` does, on a random batch of the plans' shape;
fewer than ``repeats`` once they pass ``train_step_budget_s``).
Networks come from each trainer's own ``build_network_architecture``. Timing the training step here rather than
in the benchmark's runs matters on a shared machine: runs side by side compete for the cores unevenly, and their
own step timings then differ by the company they kept (study A's batch-Dice run: 1.99x for the same network).

Run as ``python -m nnunet_ext.benchmark.cost_job request.json result.json`` (see :func:`measure_in_subprocess`).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from nnunet_ext.benchmark.timing import timed_forwards, timed_train_steps
from nnunet_ext.device_sync import sync_device
from nnunet_ext.process_memory import MIB, RssGrowth
from nnunet_ext.trainer_lookup import load_trainer_context


@dataclass
class CostRequest:
    preprocessed_dataset: str          # nnUNet_preprocessed/DatasetXXX_Name
    plans: str                         # plans identifier, e.g. nnUNetPlans
    configuration: str
    trainer: str                       # class name nnU-Net can find (short-schedule names included)
    device: str = "cpu"
    repeats: int = 5
    # the timed train steps stop past this many seconds (after at least one): at real plans a CPU step takes minutes
    train_step_budget_s: float = 120.0
    threads: int = 1
    model_folder: Optional[str] = None  # trained model: time the predictor per case when given
    fold: int = 0
    case_images: List[List[str]] = field(default_factory=list)  # image files per case, for the predictor


@dataclass
class CostResult:
    trainer: str
    plans: str
    device: str
    threads: int
    patch_size: List[int]
    batch_size: int
    parameters: int
    flops_per_patch: int               # torch's count (2 per multiply-add), batch 1
    flops_device: str                  # 'meta' (shapes only) or the real device when meta was not possible
    inference_ms_per_patch: float      # median over repeats
    inference_ms_all: List[float]
    train_step_peak_memory_mb: float   # CUDA max allocated, or peak RSS above the post-import baseline
    memory_kind: str
    baseline_rss_mb: float
    predict_seconds_per_case: Optional[float]  # median over the timed cases
    predict_seconds_all: List[float]
    train_step_seconds: Optional[float] = None  # median of the timed train_step calls (None: from before it)
    train_step_seconds_all: List[float] = field(default_factory=list)
    train_step_error: Optional[str] = None      # why the step could not be timed (the report then uses the runs')


def _build(ctx, deep_supervision: bool):
    trainer_class, plans_manager, configuration_manager, n_in, n_out = ctx
    return trainer_class.build_network_architecture(plans_manager, configuration_manager, n_in, n_out,
                                                    deep_supervision)


def _flops(ctx, input_shape) -> tuple:
    import torch

    from nnunet_ext.network_cost import count_flops

    try:
        with torch.device("meta"):
            net = _build(ctx, False)
        return count_flops(net, input_shape, "meta"), "meta"
    except (RuntimeError, NotImplementedError, TypeError):  # an op without a meta kernel: count on the CPU
        return count_flops(_build(ctx, False), input_shape, "cpu"), "cpu"


def measure_cost(request: CostRequest) -> CostResult:
    import torch

    from nnunet_ext.network_cost import count_parameters

    torch.set_num_threads(max(1, int(request.threads)))
    device = torch.device(request.device)
    ctx = load_trainer_context(request.preprocessed_dataset, request.plans, request.configuration, request.trainer)
    configuration_manager, n_in = ctx[2], ctx[3]
    patch = [int(s) for s in configuration_manager.patch_size]
    batch = int(configuration_manager.batch_size)
    growth = RssGrowth()
    flops, flops_device = _flops(ctx, (1, n_in, *patch))

    net = _build(ctx, False).to(device).eval()
    params = count_parameters(net)
    x = torch.randn(1, n_in, *patch, device=device)
    with torch.no_grad():
        times = timed_forwards(net, x, device, max(1, request.repeats))
    del net, x

    # one training step's memory at the plans' batch size (what nnU-Net Revisited matches baselines on)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    net = _build(ctx, True).to(device).train()
    out = net(torch.randn(batch, n_in, *patch, device=device))
    outputs = out if isinstance(out, (list, tuple)) else [out]
    sum(o.float().mean() for o in outputs).backward()
    sync_device(device)
    if device.type == "cuda":
        memory, kind = torch.cuda.max_memory_allocated(device) / 2 ** 20, "CUDA max allocated"
    else:
        memory, kind = growth.peak_bytes() / MIB, "peak RSS above baseline"
    del net, out, outputs

    seconds = _predict_seconds(request, device) if request.model_folder and request.case_images else []
    steps, step_error = train_step_timing(request, device)
    return CostResult(
        trainer=request.trainer, plans=request.plans, device=str(device), threads=int(request.threads),
        patch_size=patch, batch_size=batch, parameters=int(params), flops_per_patch=int(flops),
        flops_device=flops_device, inference_ms_per_patch=float(statistics.median(times)), inference_ms_all=times,
        train_step_peak_memory_mb=float(memory), memory_kind=kind, baseline_rss_mb=growth.baseline / MIB,
        predict_seconds_per_case=float(statistics.median(seconds)) if seconds else None,
        predict_seconds_all=seconds, train_step_seconds=float(statistics.median(steps)) if steps else None,
        train_step_seconds_all=steps, train_step_error=step_error)


def train_step_timing(request: CostRequest, device) -> Tuple[List[float], Optional[str]]:
    """Seconds of the timed training steps, or none and why: a trainer that cannot be set up on its own (a cascade
    stage without the previous stage's predictions, say) must not cost the other columns."""
    try:
        return _train_step_seconds(request, device), None
    except Exception as error:
        return [], f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def _train_step_seconds(request: CostRequest, device) -> List[float]:
    """The trainer's own ``train_step``, ``repeats`` times (fewer past the time budget) after one warm-up step."""
    from nnunet_ext.trainer_lookup import initialized_trainer, random_training_batch

    _, trainer = initialized_trainer(request.preprocessed_dataset, request.plans, request.configuration,
                                     request.trainer, device)
    batch = random_training_batch(trainer, int(trainer.batch_size), trainer.configuration_manager.patch_size)
    return timed_train_steps(trainer, batch, max(1, request.repeats), device,
                             budget_s=request.train_step_budget_s)[0]


def _predict_seconds(request: CostRequest, device) -> List[float]:
    """nnU-Net's predictor (preprocessing, sliding window, mirroring, resampling) timed case by case."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(device=device, perform_everything_on_device=device.type == "cuda", verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(request.model_folder, use_folds=(request.fold,),
                                                   checkpoint_name="checkpoint_final.pth")
    rw = predictor.plans_manager.image_reader_writer_class()
    seconds = []
    for files in request.case_images:
        image, props = rw.read_images(files)
        sync_device(device)
        start = time.perf_counter()
        predictor.predict_single_npy_array(image, props, None, None, False)
        sync_device(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_in_subprocess(request: CostRequest, env: Optional[dict] = None, timeout: int = 3600) -> CostResult:
    """Run :func:`measure_cost` in a new Python process (clean peak-memory counters, no shared caches). The trainer
    it sets up for the training step writes its log under a scratch ``nnUNet_results``, not into the runs' folders;
    it is not compiled (nor is the network whose forward is timed)."""
    with tempfile.TemporaryDirectory(prefix="nnunet_ext_cost_") as tmp:
        req, out = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(asdict(request)))
        env = dict(os.environ if env is None else env)
        env.setdefault("OMP_NUM_THREADS", str(request.threads))
        env.update(nnUNet_results=str(Path(tmp) / "nnUNet_results"), nnUNet_compile="false")
        proc = subprocess.run([sys.executable, "-m", "nnunet_ext.benchmark.cost_job", str(req), str(out)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"cost measurement of {request.trainer} ({request.plans}) failed "
                               f"(exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
        return CostResult(**json.loads(out.read_text()))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m nnunet_ext.benchmark.cost_job REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    request = CostRequest(**json.loads(Path(argv[0]).read_text()))
    Path(argv[1]).write_text(json.dumps(asdict(measure_cost(request)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
