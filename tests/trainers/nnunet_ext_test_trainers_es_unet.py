"""Test-only ES-UNet-paper trainers (ES-UNet, UNet 3+, its loss and RSS on nnU-Net's network) and nnU-Net's own, with a
schedule short enough for CI (found via nnUNet_extTrainer)."""
from nnunet_ext.training.short_schedule import ShortSchedule
from nnunet_ext_trainers.es_unet_trainers import (ESUNetDWDRSSPaperTrainer, ESUNetDWDTrainer, ESUNetDWDRSSTrainer,
                                                 UNet3PlusBatchDiceTrainer, UNet3PlusDWDRSSTrainer,
                                                 nnUNetTrainerDWDRSS)
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class ESUNetDWDTrainer_test(ShortSchedule, ESUNetDWDTrainer):
    pass


class ESUNetDWDRSSTrainer_test(ShortSchedule, ESUNetDWDRSSTrainer):
    pass


class UNet3PlusDWDRSSTrainer_test(ShortSchedule, UNet3PlusDWDRSSTrainer):
    pass


class UNet3PlusBatchDiceTrainer_test(ShortSchedule, UNet3PlusBatchDiceTrainer):
    pass


class nnUNetTrainerDWDRSS_test(ShortSchedule, nnUNetTrainerDWDRSS):
    pass


class nnUNetTrainer_test(ShortSchedule, nnUNetTrainer):
    pass


class ESUNetDWDRSSPaperTrainer_test(ShortSchedule, ESUNetDWDRSSPaperTrainer):
    """One epoch of one iteration and no final validation: only checks that the paper's recipe trains (the
    other foundation tests exercise validation and prediction)."""

    short_epochs, short_iterations, skip_final_validation = 1, 1, True
