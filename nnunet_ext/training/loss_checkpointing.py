"""Checkpointed deep-supervision loss: the loss of each full-resolution head is recomputed in the backward pass.

ES-UNet and UNet 3+ supervise every head at input resolution, so nnU-Net's DeepSupervisionWrapper evaluates
the loss N (+1) times on the whole patch, and autograd keeps what every evaluation saves (softmax, log-softmax,
one-hot products, focal factors) from the forward to the backward: 2.1 GiB for ES-UNet's DWD + focal at
stock plans (docs/es_unet.md). Here the per-output loss is wrapped in ``CheckpointedLoss``, and nnU-Net's
own DeepSupervisionWrapper sums it unchanged: each term ``loss(output_i, target_i)`` runs under torch's
non-reentrant checkpoint, so only its inputs are kept (the head output, which nnU-Net's ``train_step`` holds
anyway, and the target), and one head's intermediates at a time are recomputed during the backward pass.
Same loss, same gradients; the cost is one more loss evaluation per head.

It lowers what is kept, not (as measured for ES-UNet and UNet 3+) the step's peak: the loss's backward runs
first and frees what the loss kept before the network's backward, where the step peaks (docs/es_unet.md).
"""
from __future__ import annotations

from torch import nn

from nnunet_ext.training.checkpointing import checkpoint_call


class CheckpointedLoss(nn.Module):
    """``loss(output, target)`` under checkpointing. The wrapped loss stays reachable as ``.loss`` (as in
    nnU-Net's wrapper), so mixins that change its weights per epoch change what is computed."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, *args):
        return checkpoint_call(self.loss, *args, norms_of=self.loss)


def unwrap_checkpointed(loss: nn.Module) -> nn.Module:
    """The loss inside ``CheckpointedLoss`` (or the loss itself)."""
    return loss.loss if isinstance(loss, CheckpointedLoss) else loss


class CheckpointedDeepSupervision:
    """Trainer mixin: with ``loss_checkpointing``, ``build_deep_supervision_loss`` checkpoints every term.

    Off by default: it lowers what is kept but, measured, not the step's peak (module docstring). Not with
    torch.compile: nnU-Net then compiles ``loss.dc``, and a compiled graph under the checkpoint's saved-tensor
    hooks is untested here."""

    loss_checkpointing: bool = False

    def build_deep_supervision_loss(self, loss: nn.Module) -> nn.Module:
        if self.loss_checkpointing and not self._do_i_compile():
            loss = CheckpointedLoss(loss)
        return super().build_deep_supervision_loss(loss)
