"""The losses' DDP path (batch Dice all-gathered with nnU-Net's AllGatherGrad) in 2 real processes (gloo, CPU).

Each rank holds half of one batch, as nnU-Net's DDP splits it. AllGatherGrad needs an initialised process
group, tensors of the same shape on every rank (equal local batches) and every rank to run backward (its
gradient is an all-reduce). With batch Dice, every rank must then get the Dice of the whole batch: the
value a single process computes on the concatenated batch. Per-rank terms (CE, focal) are local means, so
the ranks' mean equals the single-process loss. Gradients: each rank's loss depends on every rank's logits
through the gathered sums and backward sums their contributions, so rank r's logit gradient is
world_size x d(loss)/d(logits_r) for the Dice part plus its local term; divided by world_size (DDP
averages gradients) it equals the single-process gradient of that half.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from network_matrix import trainer_loss

from nnunet_ext.training.base import ExtTrainer
from nnunet_ext_trainers.elanres_trainers import nnUNetTrainerELANResLoss
from nnunet_ext_trainers.es_unet_trainers import nnUNetTrainerDWD

WORLD_SIZE = 2
LOCAL_BATCH = 2
TRAINERS = {"nnunet_default": ExtTrainer, "dwd_focal": nnUNetTrainerDWD, "elanres_family": nnUNetTrainerELANResLoss}
CASES = [(name, regions) for name in TRAINERS for regions in (False, True)]


def full_batch(regions: bool):
    """One batch of WORLD_SIZE x LOCAL_BATCH samples; class sizes differ per sample so batch and per-sample
    Dice differ."""
    generator = torch.Generator().manual_seed(7)
    shape = (WORLD_SIZE * LOCAL_BATCH, 2, 4, 8, 8)
    logits = torch.randn(shape, generator=generator) * 2
    if regions:
        target = (torch.rand(shape, generator=generator) < torch.linspace(0.1, 0.7, shape[0]).view(-1, 1, 1, 1, 1))
        return logits, target.float()
    fraction = torch.linspace(0.05, 0.6, shape[0]).view(-1, 1, 1, 1, 1)
    return logits, (torch.rand((shape[0], 1) + shape[2:], generator=generator) < fraction).long()


def loss_and_dice_term(name: str, regions: bool, ddp: bool):
    loss = trainer_loss(TRAINERS[name], regions, ddp=ddp)
    # the batch-Dice part: nnU-Net's compounds and ours call it ``dc``; the ELANRes sum holds its terms
    dice = loss.dc if hasattr(loss, "dc") else loss.terms["dice"]
    return loss, dice


def evaluate(name: str, regions: bool, ddp: bool, rank: int = 0, world_size: int = 1):
    """(loss, its logit gradient, the Dice term's value) on this rank's part of the batch."""
    logits, target = full_batch(regions)
    part = slice(rank * LOCAL_BATCH, rank * LOCAL_BATCH + LOCAL_BATCH * (WORLD_SIZE // world_size))
    loss, dice = loss_and_dice_term(name, regions, ddp)
    x = logits[part].clone().requires_grad_()
    value = loss(x, target[part])
    value.backward()
    with torch.no_grad():
        probabilities = torch.sigmoid(x) if regions else torch.softmax(x, 1)
        dice_input = x if hasattr(loss, "dc") else probabilities  # the ELANRes terms take probabilities
        dice_value = dice(dice_input, target[part])
    return value.detach(), x.grad, dice_value


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        results = {case: evaluate(*case, ddp=True, rank=rank, world_size=WORLD_SIZE) for case in CASES}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Every case run once in 2 spawned processes; {rank: {case: (loss, grad, dice)}}."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(folder / "rendezvous"), str(folder)), nprocs=WORLD_SIZE, join=True)
    return {r: torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)}


@pytest.mark.parametrize("name, regions", CASES, ids=[f"{n}-{'regions' if r else 'labels'}" for n, r in CASES])
def test_ddp_batch_dice_equals_single_process_on_the_concatenated_batch(ddp_results, name, regions):
    single_loss, single_grad, single_dice = evaluate(name, regions, ddp=False)
    # batch Dice on half the batch differs from the whole batch's (else this test could not fail)
    _, _, half_dice = evaluate(name, regions, ddp=False, rank=0, world_size=WORLD_SIZE)
    assert abs(half_dice.item() - single_dice.item()) > 1e-3, (half_dice, single_dice)
    for rank in range(WORLD_SIZE):
        loss, grad, dice = ddp_results[rank][(name, regions)]
        torch.testing.assert_close(dice, single_dice, rtol=1e-6, atol=1e-7)
        part = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        torch.testing.assert_close(grad / WORLD_SIZE, single_grad[part], rtol=1e-5, atol=1e-8)
    mean_loss = sum(ddp_results[r][(name, regions)][0] for r in range(WORLD_SIZE)) / WORLD_SIZE
    torch.testing.assert_close(mean_loss, single_loss, rtol=1e-6, atol=1e-7)
