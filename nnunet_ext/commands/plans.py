"""`nnunet-ext plans`: write nnUNetPlans_<Arch>.json for one of our networks, memory-matched to nnU-Net's plans."""


def add_parser(subparsers):
    from nnunet_ext.commands.arguments import positive_float, positive_int
    from nnunet_ext.dataset_names import dataset_arg
    from nnunet_ext.planning.arch_plans import PLANNABLE

    p = subparsers.add_parser(
        "plans", help="derive nnUNetPlans_<Arch>.json (our network, same preprocessing, matched memory)",
        description="Reads $nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json and writes nnUNetPlans_<Arch>.json "
                    "beside it: same data_identifier (no re-preprocessing), our network as the architecture, batch "
                    "then patch size reduced until the estimated training memory fits the budget (default: what "
                    "nnU-Net's planned PlainConvUNet needs by the same estimate), except for networks our trainers "
                    "train with activation checkpointing, which keep nnU-Net's batch and patch (see "
                    "--no-checkpointing). Train with -p nnUNetPlans_<Arch>.")
    p.add_argument("-d", "--dataset", type=dataset_arg, required=True, help="dataset id or DatasetXXX_Name")
    p.add_argument("-a", "--architecture", required=True, help=f"one of: {', '.join(sorted(PLANNABLE))}")
    p.add_argument("-c", "--configurations", nargs="+", default=None,
                   help="configurations to convert (default: every configuration with its own network)")
    p.add_argument("--memory-gb", type=positive_float, default=None,
                   help="memory budget by our estimate (default: that of nnU-Net's planned PlainConvUNet)")
    p.add_argument("--plans", default="nnUNetPlans", help="source plans identifier (default: nnUNetPlans)")
    p.add_argument("--optimizer-states", type=positive_int, default=1,
                   help="optimizer state tensors per parameter: 1 for nnU-Net's SGD (default), 2 for Adam")
    p.add_argument("--preprocessed", default=None, help="nnU-Net preprocessed folder (default: $nnUNet_preprocessed)")
    p.add_argument("--no-checkpointing", action="store_true",
                   help="plan for the ...NoCheckpointing trainers: ES-UNet, UNet 3+, DLKUNet and ELANRes are otherwise "
                        "trained with activation checkpointing and keep nnU-Net's batch and patch (default: off)")
    p.set_defaults(func=run)


def run(args):
    from nnunet_ext.planning.arch_plans import PlanningError, plan_architecture

    try:
        out, fits = plan_architecture(args.dataset, args.architecture, args.configurations, args.memory_gb,
                                      args.preprocessed, args.plans, args.optimizer_states,
                                      activation_checkpointing=not args.no_checkpointing)
    except PlanningError as error:
        raise SystemExit(f"nnunet-ext plans: {error}")
    print("\n".join(fit_lines(fits)))
    print(f"wrote {out}")
    print(f"train with: nnUNetv2_train {args.dataset} CONFIGURATION FOLD -p {out.stem}")
    return 0


def fit_lines(fits) -> list:
    """The table the command prints: per configuration the budget beside the estimate of the network our trainers
    train (the checkpointed one, marked, where checkpointing kept nnU-Net's batch and patch), then the decision."""
    lines = [f"{'configuration':<14} {'budget GB':>9} {'planned (batch, patch)':>28} {'ours (batch, patch)':>28} "
             f"{'est. GB':>8}"]
    for f in fits:
        planned = f"{f.planned_batch_size}, {list(f.planned_patch_size)}"
        ours = f"{f.estimate.batch_size}, {list(f.estimate.patch_size)}"
        marked = " (checkpointed)" if f.checkpointed_estimate is not None else ""
        lines += [f"{f.configuration:<14} {f.budget_gb:>9.3f} {planned:>28} {ours:>28} "
                  f"{f.trained_estimate.total_gb:>8.3f}{marked}", f"  {f.configuration}: {f.decision}"]
    return lines
