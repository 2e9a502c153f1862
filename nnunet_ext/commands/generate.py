"""`nnunet-ext generate`: write a synthetic nnU-Net raw dataset (see nnunet_ext/data/phantoms.py)."""
import os

from nnunet_ext.data.phantoms import LABEL_VARIANTS


def add_parser(subparsers):
    p = subparsers.add_parser("generate", help="write a synthetic nnU-Net raw dataset (body, organ, lesions)",
                              description="Writes DatasetXXX_NAME into $nnUNet_raw (or --raw) with imagesTr, "
                                          "labelsTr, dataset.json, and imagesTs/labelsTs if --test-cases > 0.")
    p.add_argument("--id", type=int, required=True, dest="dataset_id", help="dataset id (1-999)")
    p.add_argument("--name", default="Phantom", help="dataset name (default: Phantom)")
    p.add_argument("--cases", type=int, default=8, help="training cases (default: 8)")
    p.add_argument("--shape", type=int, nargs="+", default=[32, 64, 64],
                   help="array shape z y x, or y x for 2D (default: 32 64 64)")
    p.add_argument("--spacing", type=float, nargs="+", default=[3.0, 1.0, 1.0],
                   help="voxel spacing in mm, same order as --shape (default: 3 1 1)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 2), help="1: CT, 2: CT + PET (default: 1)")
    p.add_argument("--labels", default="plain", choices=LABEL_VARIANTS, help="label variant (default: plain)")
    p.add_argument("--test-cases", type=int, default=0, help="held-out cases in imagesTs/labelsTs (default: 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw", default=None, help="nnU-Net raw folder (default: $nnUNet_raw)")
    p.set_defaults(func=run)


def run(args):
    from nnunet_ext.data.phantoms import generate_dataset

    raw = args.raw or os.environ.get("nnUNet_raw")
    if not raw:
        raise SystemExit("nnunet-ext generate: set nnUNet_raw or pass --raw DIR")
    out = generate_dataset(raw, args.dataset_id, args.name, num_cases=args.cases, shape=tuple(args.shape),
                           spacing=tuple(args.spacing), num_channels=args.channels, label_variant=args.labels,
                           num_test_cases=args.test_cases, seed=args.seed)
    print(out)
