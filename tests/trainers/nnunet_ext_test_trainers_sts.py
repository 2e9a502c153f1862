"""Test-only STS-Net trainers: two epochs of two iterations of batch 2 (found via nnUNet_extTrainer)."""
from nnunet_ext.training.short_schedule import ShortSchedule
from nnunet_ext_test_mixins import SmallBatch
from nnunet_ext_trainers.sts_net_trainers import STSNet25DTrainer, STSNetDWDTrainer, STSNetTrainer


class STSNetTrainer_test(ShortSchedule, SmallBatch, STSNetTrainer):
    pass


class STSNetDWDTrainer_test(ShortSchedule, SmallBatch, STSNetDWDTrainer):
    pass


class STSNet25DTrainer_test(ShortSchedule, SmallBatch, STSNet25DTrainer):
    pass
