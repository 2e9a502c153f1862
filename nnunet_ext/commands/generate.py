"""`nnunet-ext generate`: write a synthetic nnU-Net raw dataset (see nnunet_ext/data/phantoms.py)."""
import os

from nnunet_ext.commands.arguments import non_negative_int, positive_float, positive_int
from nnunet_ext.data.phantoms import LABEL_VARIANTS
from nnunet_ext.data.tasks import TASKS
from nnunet_ext.dataset_names import dataset_id_arg, dataset_name_arg


def add_parser(subparsers):
    p = subparsers.add_parser("generate", help="write a synthetic nnU-Net raw dataset (body, organ, lesions)",
                              description="Writes DatasetXXX_NAME into $nnUNet_raw (or --raw) with imagesTr, "
                                          "labelsTr, dataset.json, and imagesTs/labelsTs if --test-cases > 0.")
    p.add_argument("--id", type=dataset_id_arg, required=True, dest="dataset_id", help="dataset id (1-999)")
    p.add_argument("--name", type=dataset_name_arg, default="Phantom",
                   help="dataset name: letters, digits, '_' or '-'")
    p.add_argument("--cases", type=positive_int, default=8, help="training cases")
    p.add_argument("--task", default="phantom", choices=("phantom", *TASKS),
                   help="phantom: body, organ, lesions; or a study task (docs/datasets.md): "
                        + "; ".join(f"{t.name}: {t.summary}" for t in TASKS.values()))
    p.add_argument("--shape", type=positive_int, nargs="+", default=None,
                   help="array shape z y x, or y x for 2D; at least 8 per axis (default: 32 64 64, or the task's)")
    p.add_argument("--spacing", type=positive_float, nargs="+", default=None,
                   help="voxel spacing in mm, same order as --shape (default: 3 1 1, or the task's)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 2), help="1: CT, 2: CT + PET")
    p.add_argument("--labels", default="plain", choices=LABEL_VARIANTS, help="label variant")
    p.add_argument("--test-cases", type=non_negative_int, default=0, help="held-out cases in imagesTs/labelsTs")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the phantoms")
    p.add_argument("--raw", default=None, help="nnU-Net raw folder (default: $nnUNet_raw)")
    p.set_defaults(func=run)


def run(args):
    from nnunet_ext.data.phantoms import generate_dataset

    raw = args.raw or os.environ.get("nnUNet_raw")
    if not raw:
        raise SystemExit("nnunet-ext generate: set nnUNet_raw or pass --raw DIR")
    task = TASKS.get(args.task)
    shape = args.shape or (task.shape if task else (32, 64, 64))
    spacing = args.spacing or (task.spacing if task else (3.0, 1.0, 1.0))
    out = generate_dataset(raw, args.dataset_id, args.name, num_cases=args.cases, shape=tuple(shape),
                           spacing=tuple(spacing), num_channels=args.channels, label_variant=args.labels,
                           num_test_cases=args.test_cases, seed=args.seed, task=args.task)
    print(out)
