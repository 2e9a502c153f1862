"""Paper ideas on vanilla nnU-Net's own network (the ES-UNet paper's Table 5 rows for 3D UNet)."""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.dwd import DWDFocalLoss, FocalDiceLoss
from nnunet_ext.training.rss import RSSAugmentation


class nnUNetTrainerFocalDice(FocalDiceLoss, ExtTrainer):
    """nnU-Net's network and augmentation with the ES-UNet paper's baseline loss, focal + Dice (its 3D UNet rows)."""


class nnUNetTrainerFocalDiceRSS(RSSAugmentation, FocalDiceLoss, ExtTrainer):
    """nnU-Net's network with focal + Dice and Region Specific Scaling (Table 5, 3D UNet RSS row)."""


class nnUNetTrainerDWD(DWDFocalLoss, ExtTrainer):
    """nnU-Net's network and augmentation with the DWD + focal loss."""


class nnUNetTrainerRSS(RSSAugmentation, ExtTrainer):
    """nnU-Net's network and loss with Region Specific Scaling added to its augmentation."""


class nnUNetTrainerDWDRSS(RSSAugmentation, DWDFocalLoss, ExtTrainer):
    """nnU-Net's network with DWD + focal loss and RSS."""
