"""Paper ideas on vanilla nnU-Net's own network (the ES-UNet paper's Table 5 rows for 3D UNet)."""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.dwd import DWDFocalLoss
from nnunet_ext.training.rss import RSSAugmentation


class nnUNetTrainerDWD(DWDFocalLoss, ExtTrainer):
    """nnU-Net's network and augmentation with the DWD + focal loss."""


class nnUNetTrainerRSS(RSSAugmentation, ExtTrainer):
    """nnU-Net's network and loss with Region Specific Scaling added to its augmentation."""


class nnUNetTrainerDWDRSS(RSSAugmentation, DWDFocalLoss, ExtTrainer):
    """nnU-Net's network with DWD + focal loss and RSS."""
