"""Trainers of the two-stage pipelines (docs/cascade.md).

The ELANRes cascade trains any nnU-Net trainer on both stages (stage 2 on the dataset written by
``nnunet-ext cascade prepare``); the multi-stage paper's segmentor needs its own network.
"""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.optimizers import StageSkippingPaperOptimizer
from nnunet_ext.training.stage_skipping import StageSkippingArchitecture


class StageSkippingSegmentorTrainer(StageSkippingArchitecture, ExtTrainer):
    """Multi-stage segmentor with stage skipping (CMC 2025) with nnU-Net's loss, augmentation and schedule."""


class StageSkippingSegmentorPaperScheduleTrainer(StageSkippingPaperOptimizer, StageSkippingSegmentorTrainer):
    """Multi-stage segmentor with the paper's lr 1.5e-3 and batch 32 (Tables 6-7); nnU-Net's SGD + poly otherwise."""
