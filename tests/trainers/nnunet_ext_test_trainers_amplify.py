"""Test-only STS-Net amplification trainers: short schedules (found via nnUNet_extTrainer)."""
from nnunet_ext.training.short_schedule import ShortSchedule
from nnunet_ext_test_mixins import SmallBatch
from nnunet_ext_trainers.sts_net_trainers import (STSNet25DAmplifyTrainer, STSNetAmplifyTrainer, nnUNetTrainerAmplify,
                                                  nnUNetTrainerAmplifyM3)


class nnUNetTrainerAmplify_test(ShortSchedule, nnUNetTrainerAmplify):
    pass


class nnUNetTrainerAmplifyM3_test(ShortSchedule, nnUNetTrainerAmplifyM3):
    pass


class _OneEpochSTSNet(ShortSchedule, SmallBatch):
    """ResNeXt50 on two CPU cores: one epoch of two steps of batch 2. STS-Net's sliding-window validation
    (2d and 2.5D) is tested in test_e2e_sts_net.py; here nnUNetv2_predict checks inference, and the final
    validation would only add minutes of CPU."""

    short_epochs, skip_final_validation = 1, True


class STSNetAmplifyTrainer_test(_OneEpochSTSNet, STSNetAmplifyTrainer):
    pass


class STSNet25DAmplifyTrainer_test(_OneEpochSTSNet, STSNet25DAmplifyTrainer):
    pass
