"""Loss-weight schedules: pure functions of (epoch, num_epochs), so ``nnUNetv2_train --c`` reproduces them.

- :class:`PhaseDiceCESchedule` -- DLKUNet's phase-based loss (Eq. 10-11): (Dice, CE) weights
  (0.6, 0.4), then (0.7, 0.3) after a boundary (the paper: epoch 200 of 400).
- :class:`SigmoidDiceCESchedule` -- DLKUNet's "dynamic" loss (Eq. 12-13), a sigmoid hand-over between
  the two weights. As printed it moves weight *away* from Dice; the default flips it (see docs/losses.md).
- :class:`DecayingDeepSupervisionSchedule` -- ELANRes-MSCA-UNet's deep-supervision weights
  (Eq. 1-2): 1 on the full-resolution output, alpha = 0.4 * 0.8^(epoch // period) on every other one.
- :class:`PhaseLRScheduler` -- nnU-Net's poly learning rate times a per-phase factor (the DLKUNet
  paper drops its rate from 1e-3 to 1e-5, a factor 0.01, at the phase boundary).

Epochs are nnU-Net's: 0-based, ``0 <= epoch < num_epochs``. Nothing here keeps state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_ext.registry import register

SIGMOID_DIRECTIONS = ("intent", "printed")


def _check_epoch(epoch: int, num_epochs: int) -> None:
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")


def _check_weight_pair(name: str, pair: Tuple[float, float]) -> None:
    if len(pair) != 2 or any(w < 0 for w in pair) or sum(pair) <= 0:
        raise ValueError(f"{name} must be two non-negative (dice, ce) weights, not both 0; got {pair}")


@register("loss")
@dataclass(frozen=True)
class PhaseDiceCESchedule:
    """DLKUNet phase-based loss (Eq. 11): Dice/CE weights (0.6, 0.4), then (0.7, 0.3) after half the epochs."""

    first_phase: Tuple[float, float] = (0.6, 0.4)
    second_phase: Tuple[float, float] = (0.7, 0.3)
    # The paper: epochs [1, 200] vs (200, 400] -> the boundary at half of the training.
    boundary_fraction: float = 0.5

    def __post_init__(self):
        _check_weight_pair("first_phase", self.first_phase)
        _check_weight_pair("second_phase", self.second_phase)
        if not 0.0 <= self.boundary_fraction <= 1.0:
            raise ValueError(f"boundary_fraction must lie in [0, 1], got {self.boundary_fraction}")

    def boundary_epoch(self, num_epochs: int) -> int:
        """First 0-based epoch of the second phase (200 for 400 epochs: paper epochs 1..200 are phase one)."""
        return int(round(self.boundary_fraction * num_epochs))

    def phase(self, epoch: int, num_epochs: int) -> int:
        _check_epoch(epoch, num_epochs)
        return 0 if epoch < self.boundary_epoch(num_epochs) else 1

    def weights(self, epoch: int, num_epochs: int) -> Tuple[float, float]:
        """(Dice weight, CE weight) for 0-based ``epoch``."""
        pair = self.first_phase if self.phase(epoch, num_epochs) == 0 else self.second_phase
        return float(pair[0]), float(pair[1])


@register("loss")
@dataclass(frozen=True)
class SigmoidDiceCESchedule:
    """DLKUNet dynamic loss (Eq. 12-13): a sigmoid moves the Dice/CE weights between (A, 1) and (1, B)."""

    A: float = 0.3
    B: float = 0.7
    # k = steepness / num_epochs (per epoch): 20 gives the paper-scale k = 0.05 for 400 epochs and keeps the
    # end points within 5e-5 of their limits for any training length. ``k`` (per epoch) overrides it.
    steepness: float = 20.0
    k: Optional[float] = None
    midpoint_fraction: float = 0.5
    # "intent": Dice weight rises A -> 1, CE falls 1 -> B (more Dice later, as the text says).
    # "printed": Eq. 12-13 exactly as printed: Dice falls 1 -> A, CE rises B -> 1.
    direction: str = "intent"

    def __post_init__(self):
        if self.direction not in SIGMOID_DIRECTIONS:
            raise ValueError(f"direction {self.direction!r} is unknown; expected one of {SIGMOID_DIRECTIONS}")
        if not (0.0 <= self.A <= 1.0 and 0.0 <= self.B <= 1.0):
            raise ValueError(f"A and B must lie in [0, 1] (they are the weights' far ends); got A={self.A}, B={self.B}")
        if (self.k if self.k is not None else self.steepness) <= 0:
            raise ValueError("the sigmoid slope (k or steepness) must be > 0")
        if not 0.0 <= self.midpoint_fraction <= 1.0:
            raise ValueError(f"midpoint_fraction must lie in [0, 1], got {self.midpoint_fraction}")

    def slope(self, num_epochs: int) -> float:
        return float(self.k) if self.k is not None else self.steepness / num_epochs

    def progress(self, epoch: int, num_epochs: int) -> float:
        """s = 1 / (1 + exp(-k (x - x0))) with x = epoch, x0 = midpoint_fraction * num_epochs: 0 -> 1."""
        _check_epoch(epoch, num_epochs)
        z = -self.slope(num_epochs) * (epoch - self.midpoint_fraction * num_epochs)
        if z > 700:  # exp would overflow; the sigmoid is 0 to double precision there
            return 0.0
        return 1.0 / (1.0 + math.exp(z))

    def weights(self, epoch: int, num_epochs: int) -> Tuple[float, float]:
        """(Dice weight alpha, CE weight beta) for 0-based ``epoch``."""
        s = self.progress(epoch, num_epochs)
        # Eq. 12-13 use g = 1 - s; the intended reading uses g = s (the sign of k flipped).
        g = 1.0 - s if self.direction == "printed" else s
        return float(self.A + (1.0 - self.A) * g), float(1.0 + (self.B - 1.0) * g)


@register("loss")
@dataclass(frozen=True)
class DecayingDeepSupervisionSchedule:
    """ELANRes deep supervision (Eq. 1-2): weight 1 on the final output, alpha = 0.4 x 0.8 per period on the rest."""

    initial_alpha: float = 0.4
    decay: float = 0.8
    # The paper gives no period; 30 epochs is the period of its learning-rate step decay (section 3.1).
    period_epochs: int = 30
    # Eq. 1 does not normalise (the total weight falls from 1 + n alpha towards 1); True rescales to sum 1
    # like nnU-Net's own deep-supervision weights.
    normalize: bool = False

    def __post_init__(self):
        if self.initial_alpha <= 0:
            raise ValueError(f"initial_alpha must be > 0 (a 0 weight breaks DDP's unused-parameter check), "
                             f"got {self.initial_alpha}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must lie in (0, 1], got {self.decay}")
        if int(self.period_epochs) < 1:
            raise ValueError(f"period_epochs must be >= 1, got {self.period_epochs}")

    def alpha(self, epoch: int) -> float:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return float(self.initial_alpha * self.decay ** (epoch // int(self.period_epochs)))

    def weights(self, num_outputs: int, epoch: int) -> np.ndarray:
        """One weight per network output, highest resolution first (nnU-Net's order)."""
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
        weights = np.full(num_outputs, self.alpha(epoch), dtype=np.float64)
        weights[0] = 1.0
        return weights / weights.sum() if self.normalize else weights


class PhaseLRScheduler(PolyLRScheduler):
    """nnU-Net's poly learning rate multiplied by a per-phase factor (a pure function of the epoch)."""

    def __init__(self, optimizer, initial_lr: float, max_steps: int, boundary_epoch: int,
                 phase_factors: Tuple[float, float] = (1.0, 0.01), exponent: float = 0.9):
        if len(phase_factors) != 2 or any(f <= 0 for f in phase_factors):
            raise ValueError(f"phase_factors must be two positive learning-rate factors, got {phase_factors}")
        self.boundary_epoch = int(boundary_epoch)
        self.phase_factors = tuple(float(f) for f in phase_factors)
        super().__init__(optimizer, initial_lr, max_steps, exponent)

    def lr_at(self, step: int) -> float:
        factor = self.phase_factors[0 if step < self.boundary_epoch else 1]
        return factor * self.initial_lr * (1 - step / self.max_steps) ** self.exponent

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        new_lr = self.lr_at(current_step)
        for param_group in self.optimizer.param_groups:
            param_group['lr'] = new_lr
        self._last_lr = [group['lr'] for group in self.optimizer.param_groups]
