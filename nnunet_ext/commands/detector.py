"""`nnunet-ext detector train|predict`: the multi-stage paper's slice-box detector (docs/cascade.md)."""
from __future__ import annotations


def add_parser(subparsers):
    from nnunet_ext.commands.arguments import non_negative_int, positive_int
    from nnunet_ext.dataset_names import dataset_arg

    p = subparsers.add_parser("detector", help="train / run the 2D-box detector that gives the cascade a 3D region")
    sub = p.add_subparsers(dest="detector_command", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train on nnU-Net's preprocessed data; reports box IoU on held-out cases")
    train.add_argument("-d", type=dataset_arg, required=True, dest="dataset_id", help="dataset id or DatasetXXX_Name")
    train.add_argument("-c", default="3d_fullres", dest="configuration", help="nnU-Net configuration")
    train.add_argument("-p", default="nnUNetPlans", dest="plans", help="plans identifier")
    train.add_argument("-f", type=non_negative_int, default=0, dest="fold",
                       help="held-out cases = this fold's validation split")
    train.add_argument("--steps", type=positive_int, default=200, help="training steps")
    train.add_argument("--view", default="mean", choices=("mean", "centre"),
                       help="view input: mean projection or centre slice")
    train.add_argument("--combine", default="union", choices=("union", "mean"),
                       help="how the two extents of each axis are combined")
    train.add_argument("--region-labels", type=non_negative_int, nargs="+", default=None,
                       help="labels forming the region (default: every foreground label)")
    train.set_defaults(func=run_train)
    pred = sub.add_parser("predict", help="print the 3D box (raw voxel indices) of each raw case")
    pred.add_argument("-i", required=True, dest="input_dir", help="raw images (<case>_XXXX<ending>)")
    pred.add_argument("--checkpoint", required=True, help="`nnunet-ext detector train`'s detector.pt")
    pred.set_defaults(func=run_predict)


def run_train(args):
    import os

    from nnunet_ext.cascade.detector import DetectorConfig, train_detector_from_preprocessed

    pre, res = os.environ.get("nnUNet_preprocessed"), os.environ.get("nnUNet_results")
    if not pre or not res:
        raise SystemExit("nnunet-ext detector train: set nnUNet_preprocessed and nnUNet_results")
    config = DetectorConfig(view=args.view, combine=args.combine, steps=args.steps)
    checkpoint, summary = train_detector_from_preprocessed(pre, res, args.dataset_id, args.configuration, args.plans,
                                                           config, args.region_labels, args.fold)
    print(checkpoint)


def run_predict(args):
    import json
    import os
    from pathlib import Path

    from nnunet_ext.cascade.detector import detect_raw_case, load_detector
    from nnunet_ext.cascade.prepare import case_identifiers

    pre = os.environ.get("nnUNet_preprocessed")
    if not pre:
        raise SystemExit("nnunet-ext detector predict: set nnUNet_preprocessed")
    if not Path(args.input_dir).is_dir():
        raise FileNotFoundError(f"input folder {args.input_dir} does not exist")
    detector, meta = load_detector(args.checkpoint)
    dataset_json_file = Path(pre) / meta["dataset_name"] / "dataset.json"
    if not dataset_json_file.is_file():
        raise FileNotFoundError(f"{dataset_json_file} does not exist: the detector was trained on "
                                f"{meta['dataset_name']}, which is not in nnUNet_preprocessed")
    dataset_json = json.loads(dataset_json_file.read_text())
    ending, channels = dataset_json["file_ending"], len(dataset_json["channel_names"])
    for case in case_identifiers(Path(args.input_dir), ending, channels):
        files = [Path(args.input_dir) / f"{case}_{c:04d}{ending}" for c in range(channels)]
        print(case, detect_raw_case(detector, meta, files, pre).as_list())
