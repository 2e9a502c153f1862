"""`nnunet-ext lesion-stats -d ID -c CONFIG`: STS-Net's lesion statistics (A, S, N1, N2) of a preprocessed dataset."""
from __future__ import annotations

import json
import os
from pathlib import Path


def add_parser(subparsers):
    from nnunet_ext.dataset_names import dataset_arg

    p = subparsers.add_parser("lesion-stats", help="compute (or read the cache of) STS-Net lesion-size statistics")
    p.add_argument("-d", "--dataset", type=dataset_arg, required=True,
                   help="dataset id or name (as nnUNetv2_train takes it)")
    p.add_argument("-c", "--configuration", required=True, help="nnU-Net configuration, e.g. 2d or 3d_fullres")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: nnUNetPlans)")
    p.add_argument("--label", type=int, default=None, help="lesion label (default: the highest foreground label)")
    p.add_argument("--unit", choices=("image", "component"), default="image",
                   help="count per image (slice in 2D, case in 3D; the paper) or per connected lesion (default: image)")
    p.add_argument("--force", action="store_true", help="recompute even if the cache is up to date")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.data.lesion_stats import (dataset_foreground_labels, default_cache_path,
                                              load_or_compute_lesion_stats, resolve_lesion_label)
    from nnunet_ext.dataset_names import resolve_dataset_name

    base = os.environ.get("nnUNet_preprocessed")
    if not base:
        raise RuntimeError("nnUNet_preprocessed is not set; point it at nnU-Net's preprocessed folder")
    dataset_name = resolve_dataset_name(args.dataset)
    dataset_folder = Path(base) / dataset_name
    plans_file = dataset_folder / f"{args.plans}.json"
    if not plans_file.is_file():
        raise FileNotFoundError(f"no plans file {plans_file}; run nnUNetv2_plan_and_preprocess first")
    plans = PlansManager(str(plans_file))
    if args.configuration not in plans.available_configurations:
        raise ValueError(f"configuration {args.configuration!r} is not in {plans_file.name} "
                         f"(available: {plans.available_configurations})")
    config = plans.get_configuration(args.configuration)
    labels = json.loads((dataset_folder / "dataset.json").read_text())["labels"]
    label = resolve_lesion_label(args.label, dataset_foreground_labels(labels))
    data_folder = dataset_folder / config.data_identifier
    stats = load_or_compute_lesion_stats(data_folder, label, len(config.patch_size), args.unit, force=args.force)
    summary = stats.summary()
    summary["cache"] = str(default_cache_path(data_folder, label, args.unit))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{dataset_name} / {args.configuration} ({config.data_identifier}), lesion label {label}, "
          f"{stats.ndim}D, unit {stats.unit}")
    print(f"  cases {summary['num_cases']}, images U = {summary['num_images']}")
    what = "images with lesion" if stats.unit == "image" else "connected lesions"
    print(f"  {what} A = {summary['A']}, total lesion size S = {summary['S']}")
    if stats.A:
        power = "^2" if stats.ndim == 2 else "^3"
        root = "sqrt" if stats.ndim == 2 else "cbrt"
        print(f"  N1 = ceil({root}(S/A)){power} = ceil({root}({summary['mean_size']:.2f})){power} = {summary['N1']}")
        print(f"  N2 = ceil({root}(N1/2)){power} = {summary['N2']}")
        print(f"  units with 5 < size < N1: {summary['below_N1']}, with 5 < size < N2: {summary['below_N2']}")
    print(f"  cache: {summary['cache']}")
    return 0

