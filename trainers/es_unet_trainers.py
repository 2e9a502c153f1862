"""ES-UNet paper (BMC Med Imaging 2025) trainers: ES-UNet / 3D UNet 3+ / nnU-Net's network x DWD loss x RSS.

The names say what is added to nnU-Net's defaults: ``ESUNetTrainer`` swaps only the network,
``...FocalDice...`` uses the paper's baseline loss (focal + Dice, Eq. 1-2; its Tables 1-4),
``...DWD...`` adds the DWD + focal loss, ``...RSS...`` adds Region Specific Scaling; one exception:
``ESUNetDWDTrainer`` is the full method (DWD + RSS, the name users type), ``ESUNetDWDOnlyTrainer`` DWD alone.
``nnUNetTrainer...`` put the paper's loss and augmentation on vanilla nnU-Net's own network (its Table 5 rows for
3D UNet).
``...BatchDice...`` is not from the paper: nnU-Net's loss with the Dice over the batch, the remedy for the dead
UNet 3+ node channel that study A found (nnunet_ext/training/batch_dice.py).
Which trainer reproduces which table row: docs/es_unet.md.
"""
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.batch_dice import BatchDice
from nnunet_ext.training.checkpointing import NoActivationCheckpointing
from nnunet_ext.training.dwd import DWDFocalLoss, FocalDiceLoss
from nnunet_ext.training.es_unet import ESUNetArchitecture, UNet3PlusArchitecture
from nnunet_ext.training.rss import RSSAugmentation
from nnunet_ext.training.optimizers import ESUNetPaperSchedule
from nnunet_ext.training.paper_augmentation import ESUNetPaperAugmentation


class ESUNetTrainer(ESUNetArchitecture, ExtTrainer):
    """ES-UNet network with nnU-Net's loss, augmentation and schedule."""


class ESUNetFocalDiceTrainer(FocalDiceLoss, ESUNetArchitecture, ExtTrainer):
    """ES-UNet with the paper's baseline loss, focal + Dice (Tables 1, 3 'Dice', 4 'Both', 5 first row)."""


class ESUNetFocalDiceRSSTrainer(RSSAugmentation, FocalDiceLoss, ESUNetArchitecture, ExtTrainer):
    """ES-UNet with focal + Dice and Region Specific Scaling (Tables 2 and 5, RSS row)."""


class ESUNetDWDOnlyTrainer(DWDFocalLoss, ESUNetArchitecture, ExtTrainer):
    """ES-UNet trained with the DWD + focal loss, without RSS (Table 5 '+DWD')."""


class ESUNetRSSTrainer(RSSAugmentation, ESUNetArchitecture, ExtTrainer):
    """ES-UNet with Region Specific Scaling added to nnU-Net's augmentation."""


class ESUNetDWDRSSTrainer(RSSAugmentation, DWDFocalLoss, ESUNetArchitecture, ExtTrainer):
    """The paper's full method: ES-UNet + DWD/focal loss + RSS, on nnU-Net's schedule."""


class ESUNetDWDTrainer(ESUNetDWDRSSTrainer):
    """The full method under the name users type (`-tr ESUNetDWDTrainer`): ES-UNet + DWD + RSS, as above."""


class ESUNetDWDRSSPaperScheduleTrainer(ESUNetPaperSchedule, ESUNetDWDRSSTrainer):
    """Full method, paper's schedule: Adam 0.9/0.99, lr 1e-3, cosine restarts /25 ep to 1e-5, 100 ep, no decay."""


class ESUNetDWDRSSPaperTrainer(ESUNetPaperAugmentation, ESUNetDWDRSSPaperScheduleTrainer):
    """The paper's full method, schedule and augmentation (RSS + mirroring p 0.5 + rotation +-15 deg, nothing else)."""


class UNet3PlusTrainer(UNet3PlusArchitecture, ExtTrainer):
    """3D UNet 3+ baseline network with nnU-Net's loss, augmentation and schedule."""


class UNet3PlusFocalDiceTrainer(FocalDiceLoss, UNet3PlusArchitecture, ExtTrainer):
    """3D UNet 3+ with the paper's baseline loss, focal + Dice (Tables 1, 3 'Dice', 5 first row)."""


class UNet3PlusFocalDiceRSSTrainer(RSSAugmentation, FocalDiceLoss, UNet3PlusArchitecture, ExtTrainer):
    """3D UNet 3+ with focal + Dice and Region Specific Scaling (Tables 2 and 5, RSS row)."""


class UNet3PlusDWDTrainer(DWDFocalLoss, UNet3PlusArchitecture, ExtTrainer):
    """3D UNet 3+ trained with the DWD + focal loss."""


class UNet3PlusRSSTrainer(RSSAugmentation, UNet3PlusArchitecture, ExtTrainer):
    """3D UNet 3+ with Region Specific Scaling."""


class UNet3PlusDWDRSSTrainer(RSSAugmentation, DWDFocalLoss, UNet3PlusArchitecture, ExtTrainer):
    """3D UNet 3+ with DWD/focal loss and RSS."""


class ESUNetSkipBaseTrainer(ESUNetTrainer):
    """Table 4 ablation 'Base': ES-UNet with same-level skips only."""

    skip_connections = "base"


class ESUNetSkipEncOnlyTrainer(ESUNetTrainer):
    """Table 4 ablation 'Enc-only': same-level + encoder-to-decoder skips."""

    skip_connections = "enc_only"


class ESUNetSkipDecOnlyTrainer(ESUNetTrainer):
    """Table 4 ablation 'Dec-only': same-level + decoder-to-decoder skips."""

    skip_connections = "dec_only"


class ESUNetSkipBaseFocalDiceTrainer(FocalDiceLoss, ESUNetArchitecture, ExtTrainer):
    """Table 4 'Base' as the paper trains it: same-level skips only, focal + Dice."""

    skip_connections = "base"


class ESUNetSkipEncOnlyFocalDiceTrainer(FocalDiceLoss, ESUNetArchitecture, ExtTrainer):
    """Table 4 'Enc-only' as the paper trains it: same-level + encoder-to-decoder skips, focal + Dice."""

    skip_connections = "enc_only"


class ESUNetSkipDecOnlyFocalDiceTrainer(FocalDiceLoss, ESUNetArchitecture, ExtTrainer):
    """Table 4 'Dec-only' as the paper trains it: same-level + decoder-to-decoder skips, focal + Dice."""

    skip_connections = "dec_only"


class ESUNetDWDRSSNoCheckpointingTrainer(NoActivationCheckpointing, ESUNetDWDRSSTrainer):
    """The paper's full method without activation checkpointing: faster, several times the memory (docs/es_unet.md)."""


class ESUNetNoCheckpointingTrainer(NoActivationCheckpointing, ESUNetTrainer):
    """ES-UNet without activation checkpointing: faster, several times the memory."""


class UNet3PlusNoCheckpointingTrainer(NoActivationCheckpointing, UNet3PlusTrainer):
    """3D UNet 3+ without activation checkpointing: faster, several times the memory."""


# ---- the paper's loss and augmentation on vanilla nnU-Net's own network (Table 5, 3D UNet rows)

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


class nnUNetTrainerBatchDice(BatchDice, ExtTrainer):
    """Vanilla nnU-Net with its Dice over the batch whatever the plans say (the reference for UNet 3+ with it)."""


class UNet3PlusBatchDiceTrainer(BatchDice, UNet3PlusArchitecture, ExtTrainer):
    """3D UNet 3+ with nnU-Net's loss over the batch: per-case Dice left its node channel dead in study A."""


class ESUNetBatchDiceTrainer(BatchDice, ESUNetArchitecture, ExtTrainer):
    """ES-UNet with nnU-Net's loss over the batch (per-case Dice left 2 of its 3 heads' node channels dead once)."""
