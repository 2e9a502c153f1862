"""Batch Dice whatever the plans say: the remedy for a class channel that per-case Dice leaves dead.

nnU-Net's planner picks per-case Dice for ``3d_fullres`` unless the dataset also gets a ``3d_lowres``
configuration (large images); on small or moderately sized images every Dice term is then computed per case.
For a class absent from some training cases, per-case Dice rewards an exactly empty channel on those cases, and
a head whose channel has saturated to "never" gets almost no gradient back from the cases that do contain the
class (study A, docs/benchmarks/study_a_es_unet/README.md, "UNet 3+ and the nodes"). Summed over the batch, an
empty case has no Dice term of its own, and the measured dead channel did not occur
(docs/benchmarks/study_a_es_unet/batch_dice/).
"""
from __future__ import annotations


class BatchDice:
    """Loss mixin: every Dice-type term of the trainer's loss is one Dice over the batch (nnU-Net's ``batch_dice``)."""

    def dice_over_batch(self) -> bool:
        if not self.configuration_manager.batch_dice and not self.__dict__.get("_batch_dice_logged"):
            self._batch_dice_logged = True  # the training log says once that the plans are overridden
            self.print_to_log_file("BatchDice: every Dice term is one Dice over the batch (the plans say "
                                   "batch_dice = False)")
        return True
