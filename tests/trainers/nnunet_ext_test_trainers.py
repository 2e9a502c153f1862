"""Test-only trainers: project trainers with a schedule short enough for CI (found via nnUNet_extTrainer)."""
from nnunet_ext.training.short_schedule import ShortSchedule
from nnunet_ext_test_mixins import Resumable
from nnunet_ext_trainers.es_unet_trainers import (ESUNetDWDRSSPaperTrainer, ESUNetDWDTrainer, ESUNetDWDRSSTrainer,
                                                 UNet3PlusDWDRSSTrainer, nnUNetTrainerDWDRSS)
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class ESUNetDWDTrainer_test(Resumable, ESUNetDWDTrainer):
    pass


class ESUNetDWDRSSTrainer_test(Resumable, ESUNetDWDRSSTrainer):
    pass


class UNet3PlusDWDRSSTrainer_test(Resumable, UNet3PlusDWDRSSTrainer):
    pass


class nnUNetTrainerDWDRSS_test(Resumable, nnUNetTrainerDWDRSS):
    pass


class nnUNetTrainer_test(Resumable, nnUNetTrainer):
    pass


class ESUNetDWDRSSPaperTrainer_test(ShortSchedule, ESUNetDWDRSSPaperTrainer):
    """One epoch of one iteration and no final validation: only checks that the paper's recipe trains (the
    other foundation tests exercise validation and prediction)."""

    short_epochs, short_iterations, skip_final_validation = 1, 1, True
