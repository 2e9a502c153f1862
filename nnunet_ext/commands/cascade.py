"""`nnunet-ext cascade prepare|predict|compare`: the two-stage ROI pipelines (docs/cascade.md)."""
from __future__ import annotations


def add_parser(subparsers):
    from nnunet_ext.commands.arguments import DEVICE_HELP, non_negative_float, non_negative_int, positive_int
    from nnunet_ext.dataset_names import dataset_arg, dataset_id_arg, dataset_name_arg

    p = subparsers.add_parser("cascade", help="two-stage ROI pipelines: prepare the stage-2 dataset, predict, compare",
                              description="Stage 1 (an nnU-Net model or the slice-box detector) finds the region, "
                                          "stage 2 (an nnU-Net model trained on crops) segments inside it.")
    sub = p.add_subparsers(dest="cascade_command", metavar="ACTION", required=True)

    prep = sub.add_parser("prepare",
                          help="write the stage-2 nnU-Net raw dataset (crops around the ground-truth region)")
    prep.add_argument("--source", type=dataset_arg, required=True,
                      help="source dataset id or DatasetXXX_Name (in $nnUNet_raw)")
    prep.add_argument("--target-id", type=dataset_id_arg, required=True, help="id of the new stage-2 dataset (1-999)")
    prep.add_argument("--name", type=dataset_name_arg, default=None,
                      help="stage-2 dataset name (default: <source>Stage2<Target>)")
    prep.add_argument("--target", default="lesion", choices=("lesion", "all"),
                      help="lesion: lesion vs rest (organ -> lesion cascade); all: the source labels "
                           "(detector pipeline)")
    prep.add_argument("--region-labels", type=non_negative_int, nargs="+", default=[1, 2],
                      help="labels forming the region (default 1 2)")
    prep.add_argument("--lesion-labels", type=non_negative_int, nargs="+", default=[2],
                      help="lesion labels (default 2)")
    prep.add_argument("--margin", type=non_negative_float, default=10.0, help="margin around the region (default 10)")
    prep.add_argument("--margin-unit", default="mm", choices=("mm", "voxels"), help="unit of --margin")
    prep.add_argument("--jitter", type=non_negative_int, default=2,
                      help="max voxels each box face moves in training crops (default 2)")
    prep.add_argument("--copies", type=positive_int, default=1, help="jittered crops per training case (default 1)")
    prep.add_argument("--no-organ-channel", action="store_true", help="do not add the organ mask as an input channel")
    prep.add_argument("--region-source", default="ground_truth", choices=("ground_truth", "detector"),
                      help="ground_truth: jittered ground-truth boxes (default); detector: the boxes the detector "
                           "(--detector) finds on each training case, as at inference (needs --target all)")
    prep.add_argument("--detector", metavar="CHECKPOINT",
                      help="`nnunet-ext detector train`'s detector.pt (default: none; for --region-source detector)")
    prep.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the jitter")
    prep.set_defaults(func=run_prepare)

    pred = sub.add_parser("predict", help="run the whole pipeline on raw images")
    pred.add_argument("-i", required=True, dest="input_dir", help="raw images (<case>_XXXX<ending>)")
    pred.add_argument("-o", required=True, dest="output_dir", help="where the segmentations are written")
    pred.add_argument("--stage2", nargs=3, required=True, metavar=("ID", "CONFIGURATION", "TRAINER"),
                      help="the stage-2 nnU-Net model (dataset id or name)")
    pred.add_argument("--stage2-plans", default="nnUNetPlans", help="plans identifier of the stage-2 model")
    source = pred.add_mutually_exclusive_group(required=True)
    source.add_argument("--stage1", nargs=3, metavar=("ID", "CONFIGURATION", "TRAINER"),
                        help="region from this nnU-Net model (dataset id or name)")
    source.add_argument("--detector", metavar="CHECKPOINT",
                        help="region from `nnunet-ext detector train`'s detector.pt")
    pred.add_argument("--stage1-plans", default="nnUNetPlans", help="plans identifier of the stage-1 model")
    pred.add_argument("-f", "--folds", nargs="+", type=non_negative_int, default=[0],
                      help="folds of both models (default 0)")
    pred.add_argument("--no-lcc", action="store_true", help="skip the largest-connected-component post-processing")
    pred.add_argument("--no-confine", action="store_true", help="keep stage-2 lesions outside the organ region")
    pred.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None, help=DEVICE_HELP)
    pred.set_defaults(func=run_predict)

    comp = sub.add_parser("compare", help="single stage vs cascade vs detector + segmentor: Dice and cost")
    comp.add_argument("-d", type=dataset_arg, required=True, dest="dataset_id",
                      help="source dataset id or name (with imagesTs/labelsTs)")
    comp.add_argument("--cascade-id", type=dataset_id_arg, required=True, help="id for the cascade's stage-2 dataset")
    comp.add_argument("--detector-stage2-id", type=dataset_id_arg, required=True,
                      help="id for the detector pipeline's stage-2 dataset")
    comp.add_argument("--trainer", default="nnUNetTrainer_ep2it2", help="trainer of the nnU-Net models")
    comp.add_argument("--segmentor-trainer", default="StageSkippingSegmentorTrainer_ep2it2",
                      help="trainer of the detector pipeline's segmentor")
    comp.add_argument("--detector-steps", type=positive_int, default=200, help="detector training steps")
    comp.add_argument("--workspace", required=True,
                      help="root folder of an nnunet-ext workspace (nnUNet_raw etc. inside)")
    comp.set_defaults(func=run_compare)


def run_prepare(args):
    import os

    from nnunet_ext.cascade.prepare import CascadeSettings, prepare_stage2_dataset

    raw = os.environ.get("nnUNet_raw")
    if not raw:
        raise SystemExit("nnunet-ext cascade prepare: set nnUNet_raw")
    settings = CascadeSettings(region_labels=args.region_labels, lesion_labels=args.lesion_labels, target=args.target,
                               margin=args.margin, margin_unit=args.margin_unit, jitter_voxels=args.jitter,
                               copies=args.copies, organ_channel=not args.no_organ_channel and args.target == "lesion",
                               region_source=args.region_source)
    print(prepare_stage2_dataset(raw, args.source, args.target_id, args.name, settings, args.seed,
                                 detector_checkpoint=args.detector))


def run_predict(args):
    from nnunet_ext.cascade.predict import NnUNetModel, predict_cascade
    from nnunet_ext.workspace import NnUNetFolders
    from nnunet_ext.commands.arguments import resolve_device
    from nnunet_ext.dataset_names import parse_dataset

    from pathlib import Path

    if not Path(args.input_dir).is_dir():
        raise FileNotFoundError(f"input folder {args.input_dir} does not exist")
    folds, device = tuple(args.folds), resolve_device(args.device)
    stage2 = NnUNetModel(parse_dataset(args.stage2[0]), args.stage2[1], args.stage2[2], args.stage2_plans, folds,
                         device)
    stage1 = NnUNetModel(parse_dataset(args.stage1[0]), args.stage1[1], args.stage1[2], args.stage1_plans, folds,
                         device) if args.stage1 else None
    result = predict_cascade(NnUNetFolders.from_environment(), args.input_dir, args.output_dir, stage2, stage1,
                             args.detector, lcc=not args.no_lcc, confine_lesions=not args.no_confine)
    for case, box in result.boxes.items():
        print(case, box.as_list() if box is not None else "no region: empty prediction")
    print(f"{result.seconds:.1f} s, peak {result.peak_rss_mib:.0f} MiB")


def run_compare(args):
    from nnunet_ext.cascade.compare import ComparisonSettings, compare_pipelines, format_rows
    from nnunet_ext.cascade.detector import DetectorConfig
    from nnunet_ext.workspace import NnUNetWorkspace

    settings = ComparisonSettings(trainer=args.trainer, segmentor_trainer=args.segmentor_trainer,
                                  detector=DetectorConfig(steps=args.detector_steps))
    rows = compare_pipelines(NnUNetWorkspace(args.workspace), args.dataset_id, args.cascade_id,
                             args.detector_stage2_id, settings)
    print(format_rows(rows))
