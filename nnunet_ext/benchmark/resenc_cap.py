"""``--resenc-dataset-cap``: nnU-Net's ResEnc preset planner with nnU-Net's default 5% dataset cap on the batch.

nnU-Net's default planner caps the batch so that one batch covers at most 5% of the dataset's voxels
(``max_dataset_covered = 0.05``, an overfitting precaution); its ResEnc presets raise the cap to 100%. On a real
dataset neither cap binds for ResEnc M, but on a tiny one (50 cases of 12x24x24) ResEnc M's batch becomes the
whole dataset while nnUNetPlans' stays at 2, so the arm does 25x the work per iteration. The capped planner is
the preset's own class with only ``max_dataset_covered`` changed, writing its own plans identifier
(``nnUNetResEncUNet{M,L,XL}Plans_cap5pct``), so the stock preset plans are never overwritten. Its ``3d_fullres``
and ``2d`` data identifier stays ``nnUNetPlans_<configuration>`` (nnU-Net's ResEnc planners reuse the default
preprocessing), so those configurations train on nnUNetPlans' preprocessed data.

nnUNetv2_plan_experiment -pl only finds planners inside nnunetv2, so this runs as
``python -m nnunet_ext.benchmark.resenc_cap DATASET_ID PRESET`` in the workspace's environment (nnU-Net reads
its folders from the environment when it is imported).
"""
from __future__ import annotations

import sys

from nnunet_ext.benchmark.spec import RESENC_PRESETS, resenc_plans

DEFAULT_DATASET_COVERED = 0.05   # nnU-Net's ExperimentPlanner.max_dataset_covered


def capped_planner(preset: str):
    """The preset's planner class with ``max_dataset_covered = 0.05``; everything else is nnU-Net's own."""
    resenc_plans(preset)  # checks the preset
    from nnunetv2.experiment_planning.experiment_planners.residual_unets import residual_encoder_unet_planners

    stock = getattr(residual_encoder_unet_planners, RESENC_PRESETS[preset][0])

    def __init__(self, *args, **kwargs):
        stock.__init__(self, *args, **kwargs)
        self.max_dataset_covered = DEFAULT_DATASET_COVERED

    return type(f"{stock.__name__}DatasetCap", (stock,),
                {"__init__": __init__, "__doc__": f"{stock.__name__} with nnU-Net's default 5% dataset cap."})


def plan(dataset_id: int, preset: str) -> str:
    """Write ``<capped plans>.json`` for ``dataset_id`` (its fingerprint must exist); returns its identifier."""
    planner = capped_planner(preset)(dataset_id, plans_name=resenc_plans(preset, dataset_cap=True))
    planner.plan_experiment()
    return planner.plans_identifier


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[1] not in RESENC_PRESETS or not argv[0].isdigit():
        print(f"usage: python -m nnunet_ext.benchmark.resenc_cap DATASET_ID {{{','.join(RESENC_PRESETS)}}}",
              file=sys.stderr)
        return 2
    print(plan(int(argv[0]), argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
