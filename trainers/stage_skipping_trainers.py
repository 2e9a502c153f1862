"""Multi-Stage Hierarchical Feature Extraction paper (CMC 2025) trainers: the segmentor with stage skipping.

The paper's detector (3D ROI from 2D boxes) is trained by ``nnunet-ext detector``, and the two stages run
together with ``nnunet-ext cascade`` (docs/cascade.md); the segmentor is an nnU-Net trainer.
"""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.optimizers import StageSkippingPaperOptimizer
from nnunet_ext.training.stage_skipping import StageSkippingArchitecture


class StageSkippingSegmentorTrainer(StageSkippingArchitecture, ExtTrainer):
    """Multi-stage segmentor with stage skipping (CMC 2025) with nnU-Net's loss, augmentation and schedule."""


class StageSkippingSegmentorPaperScheduleTrainer(StageSkippingPaperOptimizer, StageSkippingSegmentorTrainer):
    """Multi-stage segmentor with the paper's lr 1.5e-3 and batch 32 (Tables 6-7); nnU-Net's SGD + poly otherwise."""
