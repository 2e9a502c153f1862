"""Per-sample time of our augmentations, single-threaded like nnU-Net's loader workers (figures in the docs).

``python -m nnunet_ext.benchmark.augmentation_speed rss --shape 1 128 128 128 [--nnunet-patch-size ...]``:
Region Specific Scaling on one sample with a centred cube of foreground, per axis, every axis, and the
paper's setting; optionally nnU-Net's own default training pipeline on the same crop, for scale
(docs/rss.md).

``python -m nnunet_ext.benchmark.augmentation_speed amplification`` builds nnU-Net's default training transforms
(nnUNetTrainer.get_training_transforms, as get_dataloaders calls it) and the same pipeline with the
amplification behind the spatial transform (SmallLesionAmplification, method 4), feeds both the loader's
oversized crop of
a synthetic sample (organ + one small lesion at the crop centre, as a lesion-centred draw), one torch
thread (nnU-Net's workers run with threadpool_limits(1)), and prints the mean time per sample:
plain pipeline, amplified pipeline on an unmarked sample (a normal draw), and on a marked sample (an
amplified copy), interleaved and with the same random seeds per sample so machine load and nnU-Net's
own random choices affect all three alike.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.training.amplification import SmallLesionAmplification
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.transforms.amplification import AMPLIFY_KEY, build_amplification_transform
from nnunet_ext.transforms.rss import RegionSpecificScaling

ORGAN, LESION = 1, 2


def transform_seconds(transform: Callable, image: torch.Tensor, seg: torch.Tensor, calls: int,
                      **extra) -> List[float]:
    """Seconds of each of ``calls`` calls on fresh copies of one sample (copying is not timed)."""
    times = []
    for _ in range(calls):
        img, sg = image.clone(), seg.clone()
        start = time.perf_counter()
        transform(image=img, segmentation=sg, **extra)
        times.append(time.perf_counter() - start)
    return times


class _AmplifiedPipeline(SmallLesionAmplification, ExtTrainer):
    amplification_method = 4


def nnunet_augmentation_settings(patch_size: Sequence[int]):
    """nnU-Net 2.8's rotation, mirror axes and loader crop size for an isotropic patch (no dummy 2D)."""
    dim = len(patch_size)
    angle = np.pi if dim == 2 else np.pi / 6
    rotation = (-angle, angle)
    initial = get_patch_size(patch_size, rotation, rotation, rotation, (0.85, 1.25))
    ds_scales = [[1.0 / 2 ** i] * dim for i in range(5)]
    return rotation, tuple(range(dim)), tuple(int(i) for i in initial), ds_scales


def synthetic_sample(shape: Sequence[int], lesion_radius: float, seed: int = 0):
    """Image (1, *shape) and label map: an organ ellipsoid and a small lesion at the centre of the crop."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(s) - (s - 1) / 2 for s in shape], indexing="ij")
    organ = sum((g / (0.3 * s)) ** 2 for g, s in zip(grid, shape)) < 1
    lesion = sum(g ** 2 for g in grid) < lesion_radius ** 2
    seg = np.zeros(shape, np.int16)
    seg[organ], seg[lesion] = ORGAN, LESION
    image = rng.standard_normal(shape).astype(np.float32) + seg
    return torch.from_numpy(image[None]), torch.from_numpy(seg[None])


def time_pipelines(patch_size: Sequence[int], lesion_radius: float, repeats: int) -> Dict[str, float]:
    rotation, mirror, initial, ds_scales = nnunet_augmentation_settings(patch_size)
    kwargs = dict(foreground_labels=[ORGAN, LESION])
    plain = nnUNetTrainer.get_training_transforms(patch_size, rotation, ds_scales, mirror, False, **kwargs)
    amplified = _AmplifiedPipeline.get_training_transforms(patch_size, rotation, ds_scales, mirror, False, **kwargs)
    image, seg = synthetic_sample(initial, lesion_radius)
    runs = {"plain": (plain, {}), "amplified, normal draw": (amplified, {}),
            "amplified, marked copy": (amplified, {AMPLIFY_KEY: 10 ** 6})}
    times = {name: [] for name in runs}
    for name, (pipeline, extra) in runs.items():  # warm-up
        pipeline(image=image.clone(), segmentation=seg.clone(), **extra)
    names = list(runs)
    for i in range(repeats):
        for name in names[i % 3:] + names[:i % 3]:  # rotate the order: no pipeline always runs first
            pipeline, extra = runs[name]
            # same seed for all three: nnU-Net's own random choices (rotate? scale? blur?) dominate the time
            # of a sample, so the comparison is paired
            torch.manual_seed(i)
            np.random.seed(i)
            start = time.perf_counter()
            pipeline(image=image.clone(), segmentation=seg.clone(), **extra)
            times[name].append(time.perf_counter() - start)
    out = {name: float(np.mean(t)) for name, t in times.items()}
    plain_times = np.asarray(times["plain"])
    # per-sample paired ratios: robust to load spikes that hit one run of one sample
    out["median_paired_ratio_marked"] = float(np.median(np.asarray(times["amplified, marked copy"]) / plain_times))
    out["median_paired_ratio_normal"] = float(np.median(np.asarray(times["amplified, normal draw"]) / plain_times))
    out["lesion_voxels"] = int((seg == LESION).sum())
    out["crop"] = list(initial)
    return out


def time_operations(patch_size: Sequence[int], lesion_radius: float, repeats: int) -> Dict[str, float]:
    """Median time of each method-4 operation alone on a final-size patch (where the pipeline runs them)."""
    image, seg = synthetic_sample(patch_size, lesion_radius)
    names = ["vertical flip", "horizontal flip", "border crop", "horizontal flip + border crop", "centre crop"]
    out = {}
    for name, op in zip(names, build_amplification_transform(4, LESION).operations):
        out[name] = float(np.median(transform_seconds(op, image, seg, repeats)))
    return out


def rss_speed(shape: Sequence[int], repeats: int = 20, nnunet_patch_size: Optional[Sequence[int]] = None,
              seed: int = 0) -> Dict[str, float]:
    """Milliseconds per sample of RSS on ``shape`` (channels first) with a centred cube of foreground; with
    ``nnunet_patch_size``, also nnU-Net's own default training pipeline on the same crop, for scale."""
    torch.set_num_threads(1)
    np.random.seed(seed)
    image = torch.randn(*shape)
    seg = torch.zeros((1, *shape[1:]), dtype=torch.int16)
    seg[(0, *(slice(s // 4, 3 * s // 4) for s in shape[1:]))] = 1

    def median_ms(transform, calls):
        transform(image=image.clone(), segmentation=seg.clone())  # warm-up
        return 1000 * float(np.median(transform_seconds(transform, image, seg, calls)))

    def mean_ms(transform, calls):
        return 1000 * float(np.mean(transform_seconds(transform, image, seg, calls)))

    result = {}
    for axis in range(len(shape) - 1):
        result[f"one axis ({axis}), median"] = median_ms(RegionSpecificScaling(p_per_axis=1.0, axes=(axis,)), repeats)
    result["every axis (p_per_axis=1), median"] = median_ms(RegionSpecificScaling(p_per_axis=1.0), repeats)
    result["paper setting, mean over samples"] = mean_ms(RegionSpecificScaling(), 10 * repeats)
    if nnunet_patch_size is not None:
        dim = len(nnunet_patch_size)
        rotation = (-np.pi / 6, np.pi / 6) if dim == 3 else (-np.pi, np.pi)  # nnU-Net's defaults
        pipeline = nnUNetTrainer.get_training_transforms(tuple(nnunet_patch_size), rotation, None,
                                                         tuple(range(dim)), False, foreground_labels=[1])
        result[f"nnU-Net default pipeline to patch {tuple(nnunet_patch_size)}, mean"] = mean_ms(pipeline, repeats)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="augmentation", required=True)
    rss = sub.add_parser("rss", help="Region Specific Scaling on one sample (C, X, Y[, Z])")
    rss.add_argument("--shape", type=int, nargs="+", required=True,
                     help="image shape incl. channels, e.g. 1 128 128 128")
    rss.add_argument("--repeats", type=int, default=20)
    rss.add_argument("--nnunet-patch-size", type=int, nargs="+", default=None,
                     help="also time nnU-Net's default training pipeline cropping to this patch size")
    amp = sub.add_parser("amplification", help="nnU-Net's pipeline with and without STS-Net amplification")
    amp.add_argument("--repeats-3d", type=int, default=20)
    amp.add_argument("--repeats-2d", type=int, default=60)
    amp.add_argument("--json", help="also write the results here")
    amp.add_argument("--operations-only", action="store_true", help="only time each operation alone")
    args = parser.parse_args(argv)
    if args.augmentation == "rss":
        for name, ms in rss_speed(args.shape, args.repeats, args.nnunet_patch_size).items():
            print(f"{tuple(args.shape)} {name}: {ms:.1f} ms")
        return 0
    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    cases = {"3d 1x128x128x128": ((128, 128, 128), 4.0, args.repeats_3d),
             "2d 1x512x512": ((512, 512), 12.0, args.repeats_2d)}
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads 1"}
    print(results["machine"])
    for name, (patch, radius, repeats) in cases.items():
        ops = time_operations(patch, radius, 7)
        print(f"{name}: each operation alone on the patch (median of 7): "
              + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in ops.items()))
        if args.operations_only:
            results[name] = {"operations": ops}
            continue
        r = time_pipelines(patch, radius, repeats)
        r["operations"] = ops
        r["ratio_marked_vs_plain"] = r["amplified, marked copy"] / r["plain"]
        r["ratio_normal_vs_plain"] = r["amplified, normal draw"] / r["plain"]
        # method 4 on a dataset where every image qualifies: p = 5/6 of the draws are copies (upper bound)
        r["ratio_at_p_5_6"] = (r["amplified, normal draw"] / 6 + r["amplified, marked copy"] * 5 / 6) / r["plain"]
        results[name] = r
        print(f"{name}: loader crop {r['crop']}, lesion {r['lesion_voxels']} voxels, {repeats} samples each")
        for key in ("plain", "amplified, normal draw", "amplified, marked copy"):
            print(f"  {key:<24} {1000 * r[key]:8.1f} ms/sample")
        print(f"  ratio of means: marked copy / plain {r['ratio_marked_vs_plain']:.2f}, normal draw / plain "
              f"{r['ratio_normal_vs_plain']:.2f}, expected at p = 5/6 {r['ratio_at_p_5_6']:.2f}")
        print(f"  median of per-sample ratios: marked copy / plain {r['median_paired_ratio_marked']:.2f}, "
              f"normal draw / plain {r['median_paired_ratio_normal']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
