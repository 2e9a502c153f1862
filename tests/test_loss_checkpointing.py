"""Checkpointed deep-supervision loss (nnunet_ext.training.loss_checkpointing): the plain wrapper's numbers,
what autograd keeps counted by hand."""
from types import SimpleNamespace

import pytest
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_ext.losses.weight_schedules import DecayingDeepSupervisionSchedule
from nnunet_ext.planning.memory import checkpoint_regions
from nnunet_ext.training.base import ExtTrainer
from nnunet_ext.training.dwd import DWDFocalLoss
from nnunet_ext.training.es_unet import ESUNetArchitecture, UNet3PlusArchitecture
from nnunet_ext.training.loss_checkpointing import CheckpointedLoss
from nnunet_ext.training.loss_schedules import DecayingDeepSupervision, DynamicLossSchedule


class _CEDiceTrainer(UNet3PlusArchitecture, ExtTrainer):
    pass


class _DWDTrainer(DWDFocalLoss, ESUNetArchitecture, ExtTrainer):
    pass


class _NoEpochStart:
    """Ends the epoch-start chain before nnU-Net's (which needs a network and an optimizer); no log file."""

    def on_train_epoch_start(self):
        pass

    def print_to_log_file(self, *args, **kwargs):
        pass


class _ScheduledTrainer(DecayingDeepSupervision, DynamicLossSchedule, UNet3PlusArchitecture, _NoEpochStart,
                        ExtTrainer):
    num_epochs = 20
    deep_supervision_schedule = DecayingDeepSupervisionSchedule(period_epochs=5)  # epoch 15: 0.4 * 0.8^3


def make_trainer(cls, labels, regions_class_order=None, loss_checkpointing=False):
    """A trainer object without nnU-Net's __init__: what the loss hooks read (3 stages: 3 or 4 outputs)."""
    trainer = object.__new__(cls)
    trainer.current_epoch = 0
    trainer.label_manager = LabelManager(labels, regions_class_order)
    trainer.configuration_manager = SimpleNamespace(batch_dice=True, patch_size=[8, 8, 8],
                                                    pool_op_kernel_sizes=[[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    trainer.is_ddp, trainer.device, trainer.enable_deep_supervision = False, torch.device("cpu"), True
    trainer.loss_checkpointing = loss_checkpointing
    return trainer


LABELS = {"background": 0, "a": 1, "b": 2}
CASES = [(_CEDiceTrainer, LABELS, None), (_CEDiceTrainer, {**LABELS, "ignore": 3}, None),
         (_DWDTrainer, LABELS, None), (_DWDTrainer, {**LABELS, "ignore": 3}, None),
         (_DWDTrainer, {"background": 0, "whole": [1, 2], "core": 2}, [1, 2]),
         (_DWDTrainer, {"background": 0, "whole": [1, 2], "core": 2, "ignore": 3}, [1, 2])]
IDS = ["ce_dice", "ce_dice_ignore", "dwd_focal", "dwd_focal_ignore", "dwd_regions", "dwd_regions_ignore"]


def _inputs(trainer, n_outputs, shape=(2, 6, 6, 6), seed=0):
    """Outputs computed from one leaf (so the gradients of all heads meet) and nnU-Net's targets."""
    g = torch.Generator().manual_seed(seed)
    lm = trainer.label_manager
    leaf = torch.randn(shape[0], lm.num_segmentation_heads, *shape[1:], generator=g, requires_grad=True)
    scales = torch.rand(n_outputs, generator=g) + 0.5
    outputs = [leaf * s + i for i, s in enumerate(scales)]
    labels = torch.randint(0, max(lm.all_labels) + 1 + (lm.ignore_label is not None), (shape[0], 1, *shape[1:]),
                           generator=g).float()
    if lm.has_regions:  # nnU-Net's ConvertSegmentationToRegionsTransform: one-hot regions (+ the ignore channel)
        target = torch.cat([sum(labels == r for r in (region if isinstance(region, (list, tuple)) else [region]))
                            .float() for region in lm.foreground_regions], 1)
        if lm.ignore_label is not None:
            target = torch.cat([target, (labels == lm.ignore_label).float()], 1)
        labels = target
    return leaf, outputs, [labels] * n_outputs


def assert_same_loss_and_gradients(plain, checkpointed, trainer):
    """Both losses on the same outputs and targets: value and every gradient to 1e-6; returns the value."""
    n = len(plain.weight_factors)
    results = []
    for loss in (plain, checkpointed):
        leaf, outputs, targets = _inputs(trainer, n)
        for o in outputs:
            o.retain_grad()
        value = loss(outputs, targets)
        value.backward()
        results.append((value.detach(), leaf.grad, [o.grad for o in outputs]))
    (v0, g0, og0), (v1, g1, og1) = results
    assert v1.item() == pytest.approx(v0.item(), rel=1e-6)
    torch.testing.assert_close(g1, g0, rtol=1e-6, atol=1e-9)
    for a, b in zip(og1, og0):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    return v0


@pytest.mark.parametrize("cls, labels, regions", CASES, ids=IDS)
def test_loss_and_gradients_equal_the_plain_wrapper(cls, labels, regions):
    plain = make_trainer(cls, labels, regions)._build_loss()
    checkpointed = make_trainer(cls, labels, regions, loss_checkpointing=True)._build_loss()
    assert checkpointed.weight_factors == plain.weight_factors
    assert_same_loss_and_gradients(plain, checkpointed, make_trainer(cls, labels, regions))


@pytest.mark.parametrize("cls", [_CEDiceTrainer, _DWDTrainer], ids=["ce_dice", "dwd_focal"])
def test_the_sum_is_nnunets_own_wrapper_around_the_checkpointed_loss(cls):
    plain = make_trainer(cls, LABELS)._build_loss()
    checkpointed = make_trainer(cls, LABELS, loss_checkpointing=True)._build_loss()
    assert type(plain) is DeepSupervisionWrapper and type(checkpointed) is DeepSupervisionWrapper
    assert type(checkpointed.loss) is CheckpointedLoss and type(checkpointed.loss.loss) is type(plain.loss)


def test_epoch_schedules_change_the_checkpointed_loss():
    """DLKUNet's Dice/CE schedule reaches the loss inside CheckpointedLoss, ELANRes's decay sets nnU-Net's
    weight_factors: at epoch 15 of 20 the checkpointed sum is still the plain one, and no longer epoch 0's."""
    trainers = [make_trainer(_ScheduledTrainer, LABELS, loss_checkpointing=c) for c in (False, True)]
    for t in trainers:
        t.loss = t._build_loss()
    at_start = assert_same_loss_and_gradients(*(t.loss for t in trainers), trainers[0])
    for t in trainers:
        t.current_epoch = 15
        t.on_train_epoch_start()
    plain, checkpointed = (t.loss for t in trainers)
    # sigmoid at epoch 15 of 20: k = 1, s = 1 / (1 + e^-5) = 0.9933071; dice 0.3 + 0.7 s, ce 1 - 0.3 s
    assert checkpointed.loss.loss.weight_dice == pytest.approx(0.3 + 0.7 * 0.9933071)
    assert checkpointed.loss.loss.weight_ce == pytest.approx(1 - 0.3 * 0.9933071)
    assert checkpointed.weight_factors == plain.weight_factors == pytest.approx((1.0, 0.4 * 0.8 ** 3, 0.4 * 0.8 ** 3))
    assert assert_same_loss_and_gradients(plain, checkpointed, trainers[0]) != pytest.approx(at_start.item())


def test_a_zero_weight_term_is_skipped_like_nnunet():
    trainer = make_trainer(_DWDTrainer, LABELS, loss_checkpointing=True)
    wrapped = trainer._build_loss()
    wrapped.weight_factors = (0.5, 0.5, 0.0, 0.0)
    leaf, outputs, targets = _inputs(trainer, 4)
    outputs[3] = outputs[3].detach().fill_(float("nan"))  # would poison the sum if it were evaluated
    assert torch.isfinite(wrapped(outputs, targets))


def test_off_by_default_and_a_list_is_required():
    assert type(make_trainer(_DWDTrainer, LABELS)._build_loss()) is DeepSupervisionWrapper
    wrapped = make_trainer(_DWDTrainer, LABELS, loss_checkpointing=True)._build_loss()
    with pytest.raises(AssertionError, match="tuple or list"):  # nnU-Net's own check
        wrapped(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4))


class _Heads(torch.nn.Module):
    """n heads at input resolution from a 1x1x1 conv: autograd keeps only the conv's input for the network."""

    def __init__(self, n, classes):
        super().__init__()
        self.conv, self.n = torch.nn.Conv3d(1, classes, 1), n

    def forward(self, x):
        y = self.conv(x)
        return [y * (i + 1) for i in range(self.n)]


@pytest.mark.parametrize("cls", [_CEDiceTrainer, _DWDTrainer], ids=["ce_dice", "dwd_focal"])
def test_kept_bytes_drop_to_the_outputs_and_the_target(cls):
    """Checkpointed, the loss keeps exactly its inputs (4 bytes per output element, the one target once);
    each term's recomputation saves what one plain term keeps."""
    b, c, shape = 2, 3, (4, 8, 8)
    voxels = 4 * 8 * 8
    kept = {}
    for checkpointed in (False, True):
        trainer = make_trainer(cls, LABELS, loss_checkpointing=checkpointed)
        loss = trainer._build_loss()
        n = len(loss.weight_factors) - loss.weight_factors.count(0.0)
        network = _Heads(len(loss.weight_factors), c)
        x, target = torch.zeros(b, 1, *shape), torch.zeros(b, 1, *shape)
        network_only = sum(checkpoint_regions(network, x, lambda outputs: None).saved.values())
        root = checkpoint_regions(network, x, lambda outputs: loss(outputs, [target] * len(outputs)))
        kept[checkpointed] = (sum(root.saved.values()) - network_only, root)
    (plain, _), (with_checkpoint, root) = kept[False], kept[True]
    assert network_only == b * 1 * voxels * 4  # the conv's input
    assert with_checkpoint == n * b * c * voxels * 4 + b * voxels * 4
    assert len(root.children) == n and all(sum(r.saved.values()) * n == plain for r in root.children)
    assert plain > 3 * with_checkpoint


@pytest.mark.parametrize("cls", [_CEDiceTrainer, _DWDTrainer], ids=["ce_dice", "dwd_focal"])
def test_the_losses_count_the_same_on_the_meta_device(cls):
    """scripts/loss_saved_bytes.py counts the stock plans on the meta device (no values: the losses skip their
    label-range checks there); at a tiny patch that count equals the CPU's."""
    loss = make_trainer(cls, LABELS)._build_loss()
    counts = []
    for device in ("cpu", "meta"):
        network = _Heads(len(loss.weight_factors), 3).to(device)
        x, target = torch.zeros(2, 1, 4, 8, 8, device=device), torch.zeros(2, 1, 4, 8, 8, device=device)
        counts.append(sum(checkpoint_regions(network, x, lambda o: loss(o, [target] * len(o))).saved.values()))
    assert counts[0] == counts[1] > 0
