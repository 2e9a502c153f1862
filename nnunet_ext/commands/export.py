"""`nnunet-ext export`: a trained model's network as ONNX (and TorchScript where it traces), ELANRes fused.

`nnunet-ext export --check-only` says whether nnUNetv2_predict will find the model's trainer here."""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers):
    from nnunet_ext.export import FORMATS

    p = subparsers.add_parser("export", help="write a trained model's network as ONNX / TorchScript (or check that "
                                             "nnU-Net will find its trainer)", description=__doc__)
    where = p.add_argument_group("the model (a folder, or nnU-Net's -d/-tr/-c/-p under nnUNet_results)")
    where.add_argument("-m", "--model-folder", type=Path,
                       help="TRAINER__PLANS__CONFIGURATION folder (holds plans.json, dataset.json, fold_X/)")
    where.add_argument("-d", "--dataset", help="dataset id or name (with -tr and -c, instead of -m)")
    where.add_argument("-tr", "--trainer", help="trainer name")
    where.add_argument("-c", "--configuration", help="configuration, e.g. 3d_fullres")
    where.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: %(default)s)")
    p.add_argument("-f", "--fold", default="0", help="fold to export: 0-4 or 'all' (default: %(default)s)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth", help="checkpoint file (default: %(default)s)")
    p.add_argument("-o", "--output", type=Path, help="output folder (required unless --check-only)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                   help="what to write (default: %(default)s)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    p.add_argument("--check-only", action="store_true",
                   help="only check that nnUNetv2_predict will find the model's trainer with this environment's "
                        "nnUNet_extTrainer; exit 1 with the fix if not")
    p.set_defaults(func=run)


def model_folder(args) -> Path:
    if args.model_folder is not None:
        return args.model_folder
    if not (args.dataset and args.trainer and args.configuration):
        raise ValueError("give -m MODEL_FOLDER, or -d, -tr and -c (with -p) to find it under nnUNet_results")
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    return Path(get_output_folder(args.dataset, args.trainer, args.plans, args.configuration))


def run(args) -> int:
    from nnunet_ext.export import check_model_folder, export_model

    fold = args.fold if args.fold == "all" else int(args.fold)
    folder = model_folder(args)
    if args.check_only:
        trainer = check_model_folder(folder, fold, args.checkpoint)
        print(f"ok: nnUNetv2_predict will find {trainer} for {folder}")
        return 0
    if args.output is None:
        raise ValueError("-o OUTPUT is required (or pass --check-only)")
    result = export_model(folder, args.output, fold, args.checkpoint, args.formats, args.opset)
    for path in result.files:
        print(f"wrote {path}")
    for fmt, diff in result.max_abs_difference.items():
        print(f"{fmt}: max |difference| to PyTorch on a random patch = "
              f"{'not checked (onnxruntime not installed)' if diff is None else f'{diff:.3g}'}")
    for skipped in result.skipped:
        print(f"skipped {skipped}")
    print(f"wrote {args.output / 'export.json'} (input/output description; preprocessing stays nnU-Net's)")
    return 0
